"""Cyclical schedules: SGDR warm restarts, CLR, one-cycle (and their momentum twins).

Same conventions as :mod:`lrjax.schedules`: counts start at 0, are clamped to
``[0, 2**31 - 1]``, and values come back in the default float dtype.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lrjax.schedules import (
    _MAX_COUNT,
    _check_nonnegative,
    _check_ordered,
    _check_positive,
    _check_step_count,
    _cosine_interpolate,
    _float_dtype,
    _integer_count,
)

# --------------------------------------------------------------------------------------
# SGDR
# --------------------------------------------------------------------------------------
# The restart table holds one row per cycle that starts below 2**31. It stays small for
# any practical period_mult (31 rows for period 1, period_mult 2), but a period_mult just
# above 1 would need up to 2**31 rows, so it is capped and such arguments are refused.
_MAX_RESTARTS = 2**16
# Boundaries are accumulated in float64. A boundary within this relative distance above an
# integer is taken to be that integer: it absorbs rounding such as 10 * 1.1 = 11.000000000000002
# (tight enough that the error is below one step for every boundary below 2**31 / 10).
_BOUNDARY_RTOL = 1e-10


def _check_sgdr_period(period: int, period_mult: float) -> int:
    period = _check_step_count("period", period)
    if not period_mult >= 1:
        raise ValueError(f"period_mult must be >= 1, got {period_mult!r}.")
    if period_mult > 1:
        cycles_below_max = math.log1p(_MAX_COUNT * (period_mult - 1) / period) / math.log(
            period_mult
        )
        if cycles_below_max > _MAX_RESTARTS:
            raise ValueError(
                f"period_mult={period_mult!r} with period={period} gives about "
                f"{cycles_below_max:.0f} restarts below 2**31; at most {_MAX_RESTARTS} are "
                "supported: use period_mult=1.0 (fixed cycles) or a period_mult further from 1."
            )
    return period


@functools.lru_cache(maxsize=128)
def _restart_table(period: int, period_mult: float) -> tuple[np.ndarray, np.ndarray]:
    """Start step and length (in steps) of every cycle that starts in ``[0, 2**31 - 1]``.

    Cycle ``i`` nominally ends at ``B_{i+1} = period * (1 + m + ... + m**i)``; the restart
    happens at the first integer step at or after it, ``ceil(B_{i+1})``.
    """
    starts, lengths = [0], []
    nominal_end, nominal_length = 0.0, float(period)
    while True:
        nominal_end += nominal_length
        next_start = max(math.ceil(nominal_end * (1 - _BOUNDARY_RTOL)), starts[-1] + 1)
        lengths.append(next_start - starts[-1])
        if next_start > _MAX_COUNT:
            break
        starts.append(next_start)
        nominal_length *= period_mult
    return np.asarray(starts, np.int32), np.asarray(lengths, np.float64)


def sgdr_cycle(
    count: jax.typing.ArrayLike, period: int, period_mult: float = 1.0
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Locates ``count`` in SGDR's sequence of warm-restart cycles.

    Cycle ``i`` lasts ``period * period_mult**i`` steps. Restarts are found exactly, by
    integer arithmetic (``period_mult == 1``) or by searching a table of restart steps built
    in float64 at trace time, never by a floating-point logarithm. When the cumulative
    boundary ``period * (1 + m + ... + m**(i-1))`` is fractional, cycle ``i`` starts at its
    ceiling: the first integer step at or after the boundary. A cycle's length is then the
    number of integer steps in it.

    Args:
      count: step count(s), any shape; clamped to ``[0, 2**31 - 1]``, floats floored.
      period: length of the first cycle in steps, an integer in ``[1, 2**31 - 1]``.
      period_mult: growth factor of the cycle length, ``>= 1``. Values so close to 1 that
        more than 65,536 cycles start below ``2**31`` raise ``ValueError``.

    Returns:
      ``(index, position, length)``: the cycle index ``i`` (int32), the steps since the
      cycle started, and the cycle's length in steps (both in the default float dtype),
      each with the shape of ``count``.

    Example:
      >>> index, position, length = sgdr_cycle(jnp.arange(8), period=1, period_mult=2.0)
      >>> index.tolist(), position.tolist(), length.tolist()
      ([0, 1, 1, 2, 2, 2, 2, 3], [0.0, 0.0, 1.0, 0.0, 1.0, 2.0, 3.0, 0.0], [1.0, 2.0, 2.0, 4.0, 4.0, 4.0, 4.0, 8.0])

    References:
      Loshchilov & Hutter, `SGDR: Stochastic Gradient Descent with Warm Restarts
      <https://arxiv.org/abs/1608.03983>`_, ICLR 2017.
    """
    period = _check_sgdr_period(period, period_mult)
    count = _integer_count(count)
    dtype = _float_dtype()
    if period_mult == 1:
        index = count // period
        start = index * period  # <= count, so no int32 overflow
        length = jnp.full(count.shape, period, dtype)
    else:
        starts, lengths = _restart_table(period, float(period_mult))
        index = jnp.searchsorted(starts, count, side="right").astype(jnp.int32) - 1
        start = jnp.asarray(starts)[index]
        length = jnp.asarray(lengths, dtype)[index]
    return index, (count - start).astype(dtype), length


def sgdr(
    max_value: float,
    period: int,
    period_mult: float = 1.0,
    min_value: float = 0.0,
    decay: float = 1.0,
) -> optax.Schedule:
    """Cosine annealing with warm restarts (SGDR).

    Within cycle ``i`` (see :func:`sgdr_cycle`), at ``position`` steps of ``length``::

        max_i = max(max_value * decay**i, min_value)
        value = min_value + (max_i - min_value) * (1 + cos(pi * position / length)) / 2

    The value equals the cycle's max at every restart step; the max shrinks by ``decay`` at
    each restart while ``min_value`` stays (a max decayed below ``min_value`` is held at it).
    With ``period=1, period_mult=2, max_value=0.5`` the first steps are
    ``.5, .5, .25, .5, .4268, .25, .0732, .5`` (PyTorch's ``CosineAnnealingWarmRestarts``,
    whose float logarithm misplaces restarts such as ``period_mult=3, t=121``; this does not).

    Args:
      max_value: value at the first restart, ``>= min_value``.
      period: length of the first cycle in steps, an integer ``>= 1``.
      period_mult: growth of the cycle length per restart, a float ``>= 1``; a fractional
        restart boundary lands on the next integer step.
      min_value: value the cosine anneals towards, ``>= 0``.
      decay: factor applied to the max at each restart, in ``(0, 1]``.

    Returns:
      An optax schedule ``count -> value``, values in ``[min_value, max_value]``.

    Example:
      >>> schedule = sgdr(0.1, period=10, period_mult=2.0)
      >>> optimizer = optax.sgd(learning_rate=schedule, momentum=0.9)

    References:
      Loshchilov & Hutter, `SGDR: Stochastic Gradient Descent with Warm Restarts
      <https://arxiv.org/abs/1608.03983>`_, ICLR 2017.
    """
    _check_nonnegative("min_value", min_value)
    _check_ordered("min_value", min_value, "max_value", max_value)
    _check_sgdr_period(period, period_mult)
    _check_positive("decay", decay)
    if not decay <= 1:
        raise ValueError(f"decay must be in (0, 1], got {decay!r}.")

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        index, position, length = sgdr_cycle(count, period, period_mult)
        dtype = _float_dtype()
        cycle_max = jnp.maximum(max_value * jnp.asarray(decay, dtype) ** index, min_value)
        return _cosine_interpolate(cycle_max, jnp.asarray(min_value, dtype), position / length)

    return schedule
