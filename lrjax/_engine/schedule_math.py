"""The machinery under every lrjax schedule: counts, guarded arithmetic, interpolation.

* **Counts** are clamped to ``[0, 2**31 - 1]`` before anything else, wide integers (int64,
  uint, Python ints beyond int32) *before* any cast, so a huge count clamps instead of
  wrapping, and a joined schedule's unused branch (negative counts) stays finite.
* **Exact under jit**: XLA divides by a constant through a rounded reciprocal and fuses
  ``1 - t / T`` into an inexact multiply-add, so fractions of a phase are measured from the
  nearer end (:func:`_fractions`); every power goes through :func:`_safe_pow` (a fused
  ``pow`` of a base that should be 0 but is a rounding error below it is NaN).
* **One program**: :func:`_compiled` makes each schedule one jitted program per count shape.
* **Checks** shared by the schedule factories (value checks live in :mod:`lrjax._engine.checks`).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lrjax._engine.checks import MAX_COUNT, check_value, concrete_float, is_traced

_MAX_COUNT = MAX_COUNT
# The largest float32 below 2**31: float counts are clipped here before the cast to int32,
# because float32(2**31 - 1) rounds up to 2**31, which int32 cannot hold.
_MAX_FLOAT32_COUNT = 2**31 - 128


# --------------------------------------------------------------------------------------
# Argument validation (construction time; traced values pass through unchecked).
# --------------------------------------------------------------------------------------
def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}.")


def _check_ordered(low_name: str, low: Any, high_name: str, high: Any) -> None:
    """``low <= high`` when both are concrete (a traced pair cannot be compared)."""
    if is_traced(low) or is_traced(high):
        return
    if not concrete_float(low_name, low) <= concrete_float(high_name, high):
        raise ValueError(f"{low_name} must be <= {high_name}, got {low!r} > {high!r}.")


def _check_derived(name: str, value: Any) -> Any:
    """A value computed from arguments (``max_value / div_factor``) must stay finite in float32."""
    return check_value(name, value)


# --------------------------------------------------------------------------------------
# Count handling, interpolation and guarded arithmetic shared by every schedule.
# --------------------------------------------------------------------------------------
def _float_dtype() -> jnp.dtype:
    """The output dtype of every schedule: float32, or float64 under ``jax_enable_x64``."""
    return jnp.result_type(float)


def _host_count(count: Any) -> Any:
    """A concrete non-JAX count (Python int, numpy array, list) made safe to hand to JAX.

    Python ints, int64 and unsigned counts are clipped to ``[0, 2**31 - 1]`` in numpy (or
    Python) *before* any cast to int32, so a count beyond int32 clamps to the largest count
    instead of wrapping or raising ``OverflowError``. JAX arrays pass unchanged (see
    :func:`_count_array` for them).
    """
    if isinstance(count, jax.Array):
        return count
    if isinstance(count, numbers.Integral) and not isinstance(count, (bool, np.bool_)):
        return min(max(int(count), 0), _MAX_COUNT)
    host = np.asarray(count)
    if host.dtype == object or (
        np.issubdtype(host.dtype, np.integer) and not np.can_cast(host.dtype, np.int32)
    ):
        host = np.clip(host, 0, _MAX_COUNT).astype(np.int32)
    return host


def _count_array(count: jax.typing.ArrayLike) -> jax.Array:
    """The count as an int32 or float JAX array; wide integers clamped to ``[0, 2**31 - 1]``.

    Concrete counts go through :func:`_host_count`; a wide JAX integer array (int64 under
    x64, uint32, uint64) is clipped in its own dtype, where the number is still exact.
    """
    count = jnp.asarray(_host_count(count))
    if jnp.issubdtype(count.dtype, jnp.floating):
        return count
    if jnp.issubdtype(count.dtype, jnp.integer) and not jnp.can_cast(count.dtype, jnp.int32):
        count = jnp.clip(count, 0, _MAX_COUNT)
    return count.astype(jnp.int32)


def _compiled(body: optax.Schedule) -> optax.Schedule:
    """The schedule ``body`` as one compiled program per count shape and dtype.

    Called eagerly (logging, plotting, tests), an uncompiled schedule dispatches and
    compiles each of its ~30 operations separately for every new count shape (about 2 s
    for SGDR here); one ``jax.jit`` makes that one compile. Inside a user's ``jit``,
    ``vmap`` or ``grad`` it is inlined as usual, and traced hyperparameters captured by
    ``body`` are closed over as the tracers they are. Concrete counts are made safe for JAX
    first (:func:`_host_count`).
    """
    def guarded(count: jax.Array) -> jax.Array:
        value = body(count)
        if jnp.issubdtype(jnp.result_type(count), jnp.floating):
            # One behaviour for every schedule: a NaN count gives NaN (each branch clamps its
            # count, which would otherwise turn NaN into the first, last or end value).
            value = jnp.where(jnp.isnan(count), jnp.nan, value).astype(value.dtype)
        return value

    compiled = jax.jit(guarded)

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        return compiled(_host_count(count))

    return schedule


def _clamped_count(count: jax.typing.ArrayLike) -> jax.Array:
    """The count as a float array clamped to ``[0, 2**31 - 1]`` (no NaN in joined branches)."""
    return jnp.clip(_count_array(count).astype(_float_dtype()), 0, _MAX_COUNT)


def _integer_count(count: jax.typing.ArrayLike) -> jax.Array:
    """The count as int32 clamped to ``[0, 2**31 - 1]``; float counts are floored.

    Staircase schedules work on integers so that switches happen exactly at the
    documented steps, even where float32 cannot represent the count.
    """
    count = _count_array(count)
    if jnp.issubdtype(count.dtype, jnp.floating):
        # float32 holds no number between 2**31 - 128 and 2**31: clip to the former, then
        # send 2**31 and above to the largest count (float64 holds them all: clip exactly).
        exact = jnp.finfo(count.dtype).nmant >= 31
        below = jnp.floor(jnp.clip(count, 0, _MAX_COUNT if exact else _MAX_FLOAT32_COUNT))
        return jnp.where(count >= _MAX_COUNT, _MAX_COUNT, below.astype(jnp.int32))
    return jnp.clip(count, 0, _MAX_COUNT)


def _search_method(table: np.ndarray) -> str:
    """``jnp.searchsorted``'s method: one comparison per entry for a short table (cheaper to
    compile and run than the default scan), the scan for a long one (bounded memory)."""
    return "compare_all" if len(table) <= 256 else "scan"


def _fractions(elapsed: jax.Array, remaining: jax.Array, span: Any) -> tuple[jax.Array, jax.Array]:
    """``(f, 1 - f)`` with ``f = elapsed / span``, ``elapsed + remaining = span``, each from the nearer end.

    Exactly ``(0, 1)`` at ``elapsed = 0`` and ``(1, 0)`` at ``remaining = 0``, under jit too:
    XLA divides by a constant through a rounded reciprocal, so ``t / span`` may come out one
    ulp below 1 and ``1 - t / span`` (fused into a multiply-add) a few ulps off 0. The small
    one of the pair is a quotient (full relative precision), the large one ``1 -`` it.
    """
    near_start = elapsed <= remaining
    small = jnp.where(near_start, elapsed, remaining) / span
    return jnp.where(near_start, small, 1.0 - small), jnp.where(near_start, 1.0 - small, small)


def _fraction(t: jax.Array, span: Any) -> jax.Array:
    """``t / span`` for ``0 <= t <= span``, exactly 0 at ``t = 0`` and 1 at ``t = span`` (see :func:`_fractions`)."""
    return _fractions(t, span - t, span)[0]


def _safe_pow(base: jax.Array, exponent: jax.Array) -> jax.Array:
    """``base ** exponent`` for ``base >= 0``, ``exponent >= 0``: never NaN, value or gradient.

    ``0 ** 0 = 1`` and ``0 ** p = 0``: the power itself only ever sees a positive base
    (the double ``where`` keeps the gradient of the unused branch finite, too).
    """
    positive = base > 0
    power = jnp.where(positive, base, 1.0) ** exponent
    return jnp.where(positive, power, jnp.where(exponent == 0, 1.0, 0.0).astype(power.dtype))


def _as_float(value: Any) -> jax.Array:
    """A (possibly traced) hyperparameter as a scalar of the default float dtype."""
    return jnp.asarray(value, _float_dtype())


def _cosine_interpolate(
    start: jax.Array, end: jax.Array, fraction: jax.Array, remaining: jax.Array | None = None
) -> jax.Array:
    """Half-cosine from ``start`` (fraction 0) to ``end`` (fraction 1).

    ``start * w + end * (1 - w)`` with ``w = (1 + cos(pi f)) / 2``, computed as
    ``cos(pi f / 2)**2`` for ``f <= 1/2`` and ``sin(pi r / 2)**2`` with ``r = 1 - f`` beyond:
    ``1 + cos(pi f)`` near ``f = 1`` cancels to a few correct digits (a 2% error at the
    last step of a 10,000-step cycle), the sine keeps full relative precision. Pass
    ``remaining = 1 - fraction`` when known exactly (see :func:`_fractions`). Both ends exact.
    """
    remaining = 1.0 - fraction if remaining is None else remaining
    weight = jnp.where(
        fraction <= 0.5, jnp.cos(0.5 * jnp.pi * fraction) ** 2, jnp.sin(0.5 * jnp.pi * remaining) ** 2
    )
    return start * weight + end * (1.0 - weight)


def _linear_interpolate(
    start: jax.Array, end: jax.Array, fraction: jax.Array, remaining: jax.Array | None = None
) -> jax.Array:
    """Straight line from ``start`` (fraction 0) to ``end`` (fraction 1), both ends exact."""
    remaining = 1.0 - fraction if remaining is None else remaining
    return start * remaining + end * fraction


def _stair_exponent(count: jax.typing.ArrayLike, steps: int, staircase: bool) -> jax.Array:
    """``t / steps``, or ``floor(t / steps)`` computed on integers so stairs switch exactly."""
    if staircase:
        return (_integer_count(count) // steps).astype(_float_dtype())
    return _clamped_count(count) / steps
