"""Learning-rate schedules: decays, cosine annealing, Noam, warmup.

Every factory returns an optax ``Schedule``: a pure function ``count -> value`` that counts
from 0 (as optax does), accepts a Python int, an integer or float array of any shape, and
returns an array of the default float dtype (float32 unless ``jax_enable_x64`` is on).

Counts are clamped to ``[0, 2**31 - 1]`` inside every schedule. ``optax.join_schedules``
feeds a later schedule ``count - boundary`` (negative before the boundary) and
``jnp.where`` evaluates both branches, so clamping keeps every branch finite: a negative
count gives the value at count 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

_MAX_COUNT = 2**31 - 1
# The largest float32 below 2**31: float counts are clipped here before the cast to int32,
# because float32(2**31 - 1) rounds up to 2**31, which int32 cannot hold.
_MAX_FLOAT32_COUNT = 2**31 - 128


# --------------------------------------------------------------------------------------
# Static-argument validation (construction time only; traced values are never checked).
# --------------------------------------------------------------------------------------
def _check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}.")


def _check_nonnegative(name: str, value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}.")


def _check_step_count(name: str, value: int, minimum: int = 1) -> int:
    """Checks that ``value`` is an integral number of steps in ``[minimum, 2**31 - 1]``."""
    if isinstance(value, bool) or not float(value).is_integer():
        raise ValueError(f"{name} must be an integer number of steps, got {value!r}.")
    if not minimum <= value <= _MAX_COUNT:
        raise ValueError(f"{name} must be in [{minimum}, 2**31 - 1], got {value!r}.")
    return int(value)


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}.")


def _check_ordered(low_name: str, low: float, high_name: str, high: float) -> None:
    if not low <= high:
        raise ValueError(f"{low_name} must be <= {high_name}, got {low!r} > {high!r}.")


# --------------------------------------------------------------------------------------
# Count handling and interpolation shared by every schedule.
# --------------------------------------------------------------------------------------
def _float_dtype() -> jnp.dtype:
    """The output dtype of every schedule: float32, or float64 under ``jax_enable_x64``."""
    return jnp.result_type(float)


def _clamped_count(count: jax.typing.ArrayLike) -> jax.Array:
    """The count as a float array clamped to ``[0, 2**31 - 1]`` (no NaN in joined branches)."""
    return jnp.clip(jnp.asarray(count).astype(_float_dtype()), 0, _MAX_COUNT)


def _integer_count(count: jax.typing.ArrayLike) -> jax.Array:
    """The count as int32 clamped to ``[0, 2**31 - 1]``; float counts are floored.

    Staircase schedules work on integers so that switches happen exactly at the
    documented steps, even where float32 cannot represent the count.
    """
    count = jnp.asarray(count)
    if jnp.issubdtype(count.dtype, jnp.floating):
        count = jnp.floor(jnp.clip(count, 0, _MAX_FLOAT32_COUNT))
    else:
        count = jnp.clip(count, 0, _MAX_COUNT)
    return count.astype(jnp.int32)


def _cosine_interpolate(start: jax.Array, end: jax.Array, fraction: jax.Array) -> jax.Array:
    """Half-cosine from ``start`` (fraction 0) to ``end`` (fraction 1)."""
    return end + (start - end) * 0.5 * (1.0 + jnp.cos(jnp.pi * fraction))


def _linear_interpolate(start: jax.Array, end: jax.Array, fraction: jax.Array) -> jax.Array:
    """Straight line from ``start`` (fraction 0) to ``end`` (fraction 1)."""
    return start + (end - start) * fraction
