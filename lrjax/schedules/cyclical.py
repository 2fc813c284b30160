"""Cyclical schedules: SGDR warm restarts, CLR, one-cycle (and their momentum twins).

Same conventions as :mod:`lrjax.schedules`: counts start at 0, are clamped to
``[0, 2**31 - 1]``, values come back in the default float dtype, value-like arguments
(values, ``decay``, ``gamma``, div factors, momenta) may be traced, and shape-defining ones
(periods, ``period_mult``, step sizes, ``pct_start``, modes, flags) are static.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lrjax._engine.checks import check_flag, check_static, check_steps, check_value, is_traced
from lrjax._engine.schedule_math import (
    _MAX_COUNT,
    _as_float,
    _check_choice,
    _check_derived,
    _check_ordered,
    _compiled,
    _cosine_interpolate,
    _float_dtype,
    _fraction,
    _fractions,
    _integer_count,
    _linear_interpolate,
    _safe_pow,
    _search_method,
)

# --------------------------------------------------------------------------------------
# SGDR
# --------------------------------------------------------------------------------------
# The restart table holds one row per cycle that starts below 2**31. It stays small for
# any practical period_mult (31 rows for period 1, period_mult 2), but a period_mult just
# above 1 would need up to 2**31 rows, so it is capped and such arguments are refused.
_MAX_RESTARTS = 2**16
# Boundaries are accumulated in float64. A boundary within this relative distance above an
# integer is taken to be that integer: it absorbs rounding such as 25 + 55 + 121 (period 25,
# period_mult 2.2) summing to 201.00000000000003. The price: a boundary that truly lies less
# than 1e-10 * boundary (under 0.22 steps below 2**31) above an integer restarts one step early.
_BOUNDARY_RTOL = 1e-10


def _check_sgdr_period(period: int, period_mult: float) -> tuple[int, float]:
    period = check_steps("period", period)
    period_mult = check_static("period_mult", period_mult, low=1.0)
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
    return period, period_mult


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
    in float64 at trace time (cached), never by a floating-point logarithm. When the cumulative
    boundary ``period * (1 + m + ... + m**(i-1))`` is fractional, cycle ``i`` starts at its
    ceiling: the first integer step at or after the boundary (a float64 sum within a
    relative 1e-10 above an integer counts as that integer, absorbing rounding). A cycle's
    length is then the number of integer steps in it.

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
      >>> index.tolist(), position.tolist()
      ([0, 1, 1, 2, 2, 2, 2, 3], [0.0, 0.0, 1.0, 0.0, 1.0, 2.0, 3.0, 0.0])
      >>> length.tolist()
      [1.0, 2.0, 2.0, 4.0, 4.0, 4.0, 4.0, 8.0]

    References:
      Loshchilov & Hutter, `SGDR: Stochastic Gradient Descent with Warm Restarts
      <https://arxiv.org/abs/1608.03983>`_, ICLR 2017.
    """
    period, period_mult = _check_sgdr_period(period, period_mult)
    count = _integer_count(count)
    dtype = _float_dtype()
    if period_mult == 1:
        index = count // period
        start = index * period  # <= count, so no int32 overflow
        length = jnp.full(count.shape, period, dtype)
    else:
        starts, lengths = _restart_table(period, period_mult)
        index = jnp.searchsorted(starts, count, side="right", method=_search_method(starts))
        index = index.astype(jnp.int32) - 1
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
      max_value: value at the first restart, ``>= min_value`` (may be traced).
      period: length of the first cycle in steps, an integer ``>= 1`` (static).
      period_mult: growth of the cycle length per restart, a finite float ``>= 1``
        (static); a fractional restart boundary lands on the next integer step.
      min_value: value the cosine anneals towards, ``>= 0`` (may be traced).
      decay: factor applied to the max at each restart, in ``(0, 1]`` (may be traced).

    Returns:
      An optax schedule ``count -> value``, values in ``[min_value, max_value]``.

    Example:
      >>> schedule = sgdr(0.1, period=10, period_mult=2.0)
      >>> optimizer = optax.sgd(learning_rate=schedule, momentum=0.9)

    References:
      Loshchilov & Hutter, `SGDR: Stochastic Gradient Descent with Warm Restarts
      <https://arxiv.org/abs/1608.03983>`_, ICLR 2017.
    """
    check_value("max_value", max_value, low=0.0)
    check_value("min_value", min_value, low=0.0)
    _check_ordered("min_value", min_value, "max_value", max_value)
    period, period_mult = _check_sgdr_period(period, period_mult)
    check_value("decay", decay, low=0.0, high=1.0, low_open=True)

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        index, position, length = sgdr_cycle(count, period, period_mult)
        low = _as_float(min_value)
        decayed = _as_float(max_value) * _safe_pow(_as_float(decay), index.astype(_float_dtype()))
        # position < length: the fraction is exactly 0 at a restart, below 1 inside a cycle.
        fraction, remaining = _fractions(position, length - position, length)
        return _cosine_interpolate(jnp.maximum(decayed, low), low, fraction, remaining)

    return _compiled(schedule)


# --------------------------------------------------------------------------------------
# CLR (Smith's cyclical learning rates)
# --------------------------------------------------------------------------------------
_CLR_MODES = ("triangular", "triangular2", "exp_range")
_CLR_SCALE_MODES = ("cycle", "iterations")


def _clr_fraction(
    step_size_up: int,
    step_size_down: int | None,
    mode: str,
    gamma: float,
    scale_fn: Callable[[jax.Array], jax.Array] | None,
    scale_mode: str,
) -> Callable[[jax.typing.ArrayLike], jax.Array]:
    """Validates CLR's shape arguments; returns ``count -> triangle(t) * scale``.

    ``triangle`` rises from 0 to 1 over ``step_size_up`` steps and falls back over
    ``step_size_down``; ``scale`` is ``scale_fn`` of the cycle number (from 1) or of the
    global count, as in PyTorch's ``CyclicLR``.
    """
    step_size_up = check_steps("step_size_up", step_size_up)
    step_size_down = check_steps(
        "step_size_down", step_size_up if step_size_down is None else step_size_down
    )
    cycle_size = check_steps("step_size_up + step_size_down", step_size_up + step_size_down)
    _check_choice("mode", mode, _CLR_MODES)
    _check_choice("scale_mode", scale_mode, _CLR_SCALE_MODES)
    # gamma > 1 would overflow gamma**t to inf (and 0 * inf = NaN at the cycle's base).
    check_value("gamma", gamma, low=0.0, high=1.0, low_open=True)
    if scale_fn is None:
        if not is_traced(gamma) and gamma != 1.0 and mode != "exp_range":
            raise ValueError(f"gamma is used only by mode='exp_range', got mode={mode!r}.")
        if scale_mode != "cycle":
            raise ValueError("scale_mode applies only to a custom scale_fn; leave it 'cycle'.")
        scale_fn, scale_mode = {
            "triangular": (lambda cycle: jnp.ones_like(cycle), "cycle"),
            "triangular2": (lambda cycle: _safe_pow(jnp.asarray(0.5, cycle.dtype), cycle - 1.0), "cycle"),
            "exp_range": (lambda t: _safe_pow(jnp.asarray(gamma, t.dtype), t), "iterations"),
        }[mode]
    elif not callable(scale_fn):
        raise ValueError(f"scale_fn must be a callable, got {scale_fn!r}.")
    elif mode != "triangular":
        # PyTorch silently ignores `mode` when given a scale_fn; we refuse the ambiguity.
        raise ValueError(f"give either a scale_fn or a mode, not both (got mode={mode!r}).")

    def fraction(count: jax.typing.ArrayLike) -> jax.Array:
        dtype = _float_dtype()
        count = _integer_count(count)
        cycle = count // cycle_size + 1  # integers: exact at every cycle boundary
        position = (count - (cycle - 1) * cycle_size).astype(dtype)
        # Exactly 1 at the peak and 0 at the base under jit (see _fraction).
        triangle = jnp.where(
            position <= step_size_up,
            _fraction(position, step_size_up),
            _fraction(cycle_size - position, step_size_down),
        )
        scale_argument = cycle if scale_mode == "cycle" else count
        return triangle * jnp.asarray(scale_fn(scale_argument.astype(dtype)), dtype)

    return fraction


def cyclic(
    base_value: float,
    max_value: float,
    step_size_up: int,
    step_size_down: int | None = None,
    mode: str = "triangular",
    gamma: float = 1.0,
    scale_fn: Callable[[jax.Array], jax.Array] | None = None,
    scale_mode: str = "cycle",
) -> optax.Schedule:
    """Smith's cyclical learning rate (CLR), equal to PyTorch's ``CyclicLR``.

    With ``u = step_size_up``, ``d = step_size_down``, cycle ``c = floor(t / (u + d)) + 1``
    and ``p = t - (c - 1) * (u + d)``::

        triangle = p / u if p <= u else (u + d - p) / d
        value = base_value + (max_value - base_value) * triangle * scale

    where ``scale`` is ``1`` (``"triangular"``), ``0.5 ** (c - 1)`` (``"triangular2"``,
    halving the amplitude every cycle), ``gamma ** t`` with the global count
    (``"exp_range"``), or ``scale_fn(c)`` / ``scale_fn(t)`` for a custom ``scale_fn`` with
    ``scale_mode="cycle"`` / ``"iterations"``.

    Args:
      base_value: lower bound of the cycle, ``>= 0``.
      max_value: upper bound of the cycle, ``>= base_value``.
      step_size_up: steps from base to max, an integer ``>= 1``.
      step_size_down: steps from max back to base, an integer ``>= 1``; defaults to
        ``step_size_up``.
      mode: ``"triangular"``, ``"triangular2"`` or ``"exp_range"``. With a ``scale_fn``
        leave it at the default: PyTorch silently ignores ``mode`` then, lrjax refuses.
      gamma: ``exp_range``'s factor per step, in ``(0, 1]``; only with ``"exp_range"``.
      scale_fn: optional jnp-traceable function of a float array, returning the amplitude
        scale (finite, typically in ``[0, 1]``); replaces ``mode``.
      scale_mode: what ``scale_fn`` receives: ``"cycle"`` (cycle number from 1) or
        ``"iterations"`` (the count); only with a ``scale_fn``.

    Returns:
      An optax schedule ``count -> value``; values in ``[base_value, max_value]`` for scales
      in ``[0, 1]``.

    Example:
      >>> schedule = cyclic(1e-4, 1e-2, step_size_up=2000, mode="triangular2")
      >>> optimizer = optax.sgd(learning_rate=schedule, momentum=0.9)

    References:
      Smith, `Cyclical Learning Rates for Training Neural Networks
      <https://arxiv.org/abs/1506.01186>`_, WACV 2017.
    """
    fraction = _clr_bounds_and_fraction(
        base_value, max_value, step_size_up, step_size_down, mode, gamma, scale_fn, scale_mode
    )

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        # An interpolation, not base + (max - base) * f: both bounds are then exact.
        return _linear_interpolate(_as_float(base_value), _as_float(max_value), fraction(count))

    return _compiled(schedule)


def _clr_bounds_and_fraction(
    base_value: float, max_value: float, *shape: object
) -> Callable[[jax.typing.ArrayLike], jax.Array]:
    """Checks the two bounds of a CLR cycle, then its shape (see :func:`_clr_fraction`)."""
    check_value("base_value", base_value, low=0.0)
    check_value("max_value", max_value, low=0.0)
    _check_ordered("base_value", base_value, "max_value", max_value)
    return _clr_fraction(*shape)


def cyclic_momentum(
    base_value: float,
    max_value: float,
    step_size_up: int,
    step_size_down: int | None = None,
    mode: str = "triangular",
    gamma: float = 1.0,
    scale_fn: Callable[[jax.Array], jax.Array] | None = None,
    scale_mode: str = "cycle",
) -> optax.Schedule:
    """The momentum cycle that mirrors :func:`cyclic` (PyTorch ``CyclicLR``'s momentum).

    ``value = max_value - (max_value - base_value) * triangle * scale``, with ``triangle``
    and ``scale`` as in :func:`cyclic`: momentum is at ``max_value`` where the learning
    rate is at its base, and at ``base_value`` where the learning rate peaks.

    Args:
      base_value: lowest momentum (at the learning rate's peak), ``>= 0``.
      max_value: highest momentum (at the learning rate's base), ``>= base_value``.
      step_size_up, step_size_down, mode, gamma, scale_fn, scale_mode: as in :func:`cyclic`;
        pass the same ones to keep the two cycles in phase.

    Returns:
      An optax schedule ``count -> momentum``.

    Example:
      >>> lr = cyclic(1e-3, 1e-2, step_size_up=500)
      >>> momentum = cyclic_momentum(0.85, 0.95, step_size_up=500)
      >>> optimizer = optax.inject_hyperparams(optax.sgd)(learning_rate=lr, momentum=momentum)

    References:
      Smith, `A disciplined approach to neural network hyper-parameters: Part 1
      <https://arxiv.org/abs/1803.09820>`_, 2018.
    """
    fraction = _clr_bounds_and_fraction(
        base_value, max_value, step_size_up, step_size_down, mode, gamma, scale_fn, scale_mode
    )

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        # From the top down (not (base + max) - lr), as an interpolation: both ends exact.
        return _linear_interpolate(_as_float(max_value), _as_float(base_value), fraction(count))

    return _compiled(schedule)


# --------------------------------------------------------------------------------------
# One-cycle
# --------------------------------------------------------------------------------------
_ANNEALS = {"cos": _cosine_interpolate, "linear": _linear_interpolate}


def _one_cycle_total_steps(
    total_steps: int | None, epochs: int | None, steps_per_epoch: int | None
) -> int:
    """``total_steps``, or PyTorch ``OneCycleLR``'s ``epochs * steps_per_epoch``."""
    if total_steps is not None:
        if epochs is not None or steps_per_epoch is not None:
            # PyTorch silently ignores epochs/steps_per_epoch then; we refuse the ambiguity.
            raise ValueError("give either total_steps or epochs and steps_per_epoch, not both.")
        return total_steps
    if epochs is None or steps_per_epoch is None:
        raise ValueError("give total_steps, or both epochs and steps_per_epoch.")
    epochs = check_steps("epochs", epochs)
    steps_per_epoch = check_steps("steps_per_epoch", steps_per_epoch)
    return check_steps("epochs * steps_per_epoch", epochs * steps_per_epoch, minimum=2)


def _one_cycle_phase_ends(total_steps: int, pct_start: float, three_phase: bool) -> list[float]:
    """Validates the one-cycle shape; returns each phase's last step (PyTorch's float ends)."""
    total_steps = check_steps("total_steps", total_steps, minimum=2)
    pct_start = check_static("pct_start", pct_start, low=0.0, high=1.0, low_open=True, high_open=True)
    if check_flag("three_phase", three_phase) and not pct_start < 0.5:
        raise ValueError(f"pct_start must be in (0, 0.5) with three_phase=True, got {pct_start!r}.")
    warmup_end = pct_start * total_steps - 1
    if three_phase:
        return [warmup_end, 2 * pct_start * total_steps - 2, total_steps - 1.0]
    return [warmup_end, total_steps - 1.0]


def _piecewise_anneal(
    phase_ends: list[float], knots: list[float], anneal: str
) -> optax.Schedule:
    """Anneals from ``knots[i]`` to ``knots[i + 1]`` over phase ``i``, then holds the last knot.

    Phase ``i`` runs from ``phase_ends[i - 1]`` (0 for the first) to ``phase_ends[i]``; a
    step belongs to the first phase whose end it does not pass (PyTorch ``OneCycleLR``).
    """
    interpolate = _ANNEALS[anneal]
    phase_starts = [0.0, *phase_ends[:-1]]

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        dtype = _float_dtype()
        t = jnp.minimum(_integer_count(count).astype(dtype), phase_ends[-1])
        value = jnp.zeros_like(t)
        for start, end, begin_value, end_value in reversed(
            list(zip(phase_starts, phase_ends, knots[:-1], knots[1:]))
        ):
            # A zero-length phase (pct_start * total_steps == 1) would divide 0 by 0
            # (PyTorch raises there); its only step takes the phase's first value.
            span = end - start if end != start else 1.0
            # Measured from the nearer end: both ends of a phase are hit exactly.
            fraction, remaining = _fractions(t - start, end - t, span)
            in_phase = interpolate(_as_float(begin_value), _as_float(end_value), fraction, remaining)
            value = in_phase if end == phase_ends[-1] else jnp.where(t <= end, in_phase, value)
        return value

    return _compiled(schedule)


def one_cycle(
    max_value: float,
    total_steps: int | None = None,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    anneal: str = "cos",
    three_phase: bool = False,
    *,
    epochs: int | None = None,
    steps_per_epoch: int | None = None,
) -> optax.Schedule:
    """Smith's one-cycle policy, equal to PyTorch's ``OneCycleLR`` for ``t < total_steps``.

    ``initial = max_value / div_factor`` and ``final = initial / final_div_factor``. With
    ``T = total_steps`` and ``a = pct_start * T - 1`` (PyTorch's phase ends):

    - two phases: ``initial -> max_value`` over ``[0, a]``, ``max_value -> final`` over
      ``[a, T - 1]``;
    - ``three_phase=True``: ``initial -> max_value`` over ``[0, a]``, ``max_value -> initial``
      over ``[a, 2a]`` and ``initial -> final`` over ``[2a, T - 1]``;

    each by half-cosine (``anneal="cos"``) or straight line (``"linear"``). The last step
    ``T - 1`` trains at ``final``, which is held afterwards. (optax's
    ``cosine_onecycle_schedule`` places its phases differently and does not match PyTorch.)

    Args:
      max_value: peak value, ``> 0`` (may be traced, as may the two div factors).
      total_steps: length of the cycle, an integer ``>= 2``; or leave it out and give
        ``epochs`` and ``steps_per_epoch`` (PyTorch's form).
      pct_start: fraction of the steps spent rising, in ``(0, 1)`` (``(0, 0.5)`` with
        ``three_phase``); static.
      div_factor: ``max_value / initial``, ``> 0``.
      final_div_factor: ``initial / final``, ``> 0``.
      anneal: ``"cos"`` or ``"linear"``.
      three_phase: use the paper's symmetric rise and fall, then a final annihilation (a
        bool).
      epochs: with ``steps_per_epoch``, sets ``total_steps = epochs * steps_per_epoch``
        (PyTorch ``OneCycleLR(epochs=, steps_per_epoch=)``); not together with
        ``total_steps``.
      steps_per_epoch: optimizer steps per epoch (batches per epoch).

    Returns:
      An optax schedule ``count -> value``, values between the least and the greatest of
      ``initial``, ``max_value`` and ``final`` (``[final, max_value]`` for factors ``>= 1``).

    Example:
      >>> schedule = one_cycle(0.1, total_steps=10_000)
      >>> optimizer = optax.sgd(learning_rate=schedule, momentum=0.9)
      >>> per_epoch = one_cycle(0.1, epochs=10, steps_per_epoch=1000)  # the same schedule

    References:
      Smith & Topin, `Super-Convergence: Very Fast Training of Neural Networks Using Large
      Learning Rates <https://arxiv.org/abs/1708.07120>`_, 2017.
    """
    check_value("max_value", max_value, low=0.0, low_open=True)
    check_value("div_factor", div_factor, low=0.0, low_open=True)
    check_value("final_div_factor", final_div_factor, low=0.0, low_open=True)
    _check_choice("anneal", anneal, tuple(_ANNEALS))
    total_steps = _one_cycle_total_steps(total_steps, epochs, steps_per_epoch)
    phase_ends = _one_cycle_phase_ends(total_steps, pct_start, three_phase)
    # Python floats stay Python (float64) arithmetic; traced values become jnp arithmetic.
    initial = max_value / div_factor
    final = initial / final_div_factor
    if not any(map(is_traced, (max_value, div_factor, final_div_factor))):
        _check_derived("max_value / div_factor", initial)
        _check_derived("max_value / div_factor / final_div_factor", final)
    knots = [initial, max_value, initial, final] if three_phase else [initial, max_value, final]
    return _piecewise_anneal(phase_ends, knots, anneal)


def one_cycle_momentum(
    total_steps: int | None = None,
    pct_start: float = 0.3,
    base_momentum: float = 0.85,
    max_momentum: float = 0.95,
    anneal: str = "cos",
    three_phase: bool = False,
    *,
    epochs: int | None = None,
    steps_per_epoch: int | None = None,
) -> optax.Schedule:
    """The momentum cycle that mirrors :func:`one_cycle` (PyTorch ``OneCycleLR``'s momentum).

    Over the same phases as :func:`one_cycle`: ``max_momentum -> base_momentum`` while the
    learning rate rises, then ``base_momentum -> max_momentum``; with ``three_phase`` the
    last phase holds ``max_momentum``.

    Args:
      total_steps, pct_start, anneal, three_phase, epochs, steps_per_epoch: as in
        :func:`one_cycle`.
      base_momentum: momentum at the learning rate's peak, ``>= 0`` (may be traced).
      max_momentum: momentum at the start and end, ``>= base_momentum`` (may be traced).

    Returns:
      An optax schedule ``count -> momentum`` in ``[base_momentum, max_momentum]``.

    Example:
      >>> lr, momentum = one_cycle(0.1, 10_000), one_cycle_momentum(10_000)
      >>> optimizer = optax.inject_hyperparams(optax.sgd)(learning_rate=lr, momentum=momentum)

    References:
      Smith, `A disciplined approach to neural network hyper-parameters: Part 1
      <https://arxiv.org/abs/1803.09820>`_, 2018.
    """
    check_value("base_momentum", base_momentum, low=0.0)
    check_value("max_momentum", max_momentum, low=0.0)
    _check_ordered("base_momentum", base_momentum, "max_momentum", max_momentum)
    _check_choice("anneal", anneal, tuple(_ANNEALS))
    total_steps = _one_cycle_total_steps(total_steps, epochs, steps_per_epoch)
    phase_ends = _one_cycle_phase_ends(total_steps, pct_start, three_phase)
    knots = [max_momentum, base_momentum, max_momentum]
    if three_phase:
        knots.append(max_momentum)
    return _piecewise_anneal(phase_ends, knots, anneal)
