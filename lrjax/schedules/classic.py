"""Learning-rate schedules: decays, cosine annealing, Noam, warmup.

Every factory returns an optax ``Schedule``: a pure function ``count -> value`` that counts
from 0 (as optax does), accepts a Python int, an integer or float array of any shape, and
returns an array of the default float dtype (float32 unless ``jax_enable_x64`` is on).

**Hyperparameters are data.** Value-like arguments (initial/end/min values, ``gamma``,
``decay_rate``, ``factor``, ...) may be JAX values, traced or not: they are checked when
concrete and passed through when traced, so ``jax.vmap``/``jax.grad``/``jax.jit`` over them
and ``optax.inject_hyperparams`` factories work. Shape-defining arguments (step counts,
milestones, modes, flags) are static and validated at construction.

Counts are clamped to ``[0, 2**31 - 1]`` inside every schedule, wide integers (int64,
uint, Python ints beyond int32) before any cast, so a huge count clamps instead of
wrapping. ``optax.join_schedules`` feeds a later schedule ``count - boundary`` (negative
before the boundary) and ``jnp.where`` evaluates both branches, so clamping keeps every
branch finite: a negative count gives the value at count 0.

Exact under ``jit``: XLA divides by a constant through a rounded reciprocal and fuses
``1 - t / T`` into an inexact multiply-add, so fractions of a phase are measured from the
nearer end, and every power is guarded (a fused ``pow`` of a base that should be 0 but is a
rounding error below it is NaN); the machinery lives in :mod:`lrjax._engine.schedule_math`.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lrjax._engine.checks import check_flag, check_steps, check_value, concrete_float, is_traced
from lrjax._engine.schedule_math import (
    _MAX_COUNT,
    _as_float,
    _check_choice,
    _check_derived,
    _clamped_count,
    _compiled,
    _cosine_interpolate,
    _count_array,
    _float_dtype,
    _fractions,
    _integer_count,
    _linear_interpolate,
    _safe_pow,
    _search_method,
    _stair_exponent,
)


# --------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------
def constant(value: float) -> optax.Schedule:
    """A constant value.

    ``value(t) = value``. Unlike ``optax.constant_schedule`` (which returns the bare
    Python number), the result has the count's shape and the default float dtype.

    Args:
      value: the value, a finite number ``>= 0`` (may be traced).

    Returns:
      An optax schedule ``count -> value``.

    Example:
      >>> optimizer = optax.adam(learning_rate=constant(1e-3))

    References:
      No paper: the baseline every schedule is compared with (optax ``constant_schedule``).
    """
    check_value("value", value, low=0.0)

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        return jnp.broadcast_to(_as_float(value), jnp.shape(count))

    return _compiled(schedule)


def step_decay(init_value: float, step_size: int, gamma: float = 0.1) -> optax.Schedule:
    """Multiplies the value by ``gamma`` every ``step_size`` steps (PyTorch ``StepLR``).

    ``value(t) = init_value * gamma ** floor(t / step_size)``, with the floor taken on
    integers so the switch happens exactly at every multiple of ``step_size``.

    Args:
      init_value: value for ``t < step_size``, ``>= 0``.
      step_size: steps between decays, an integer ``>= 1``.
      gamma: factor per decay, in ``(0, 1]``.

    Returns:
      An optax schedule ``count -> value``, values in ``[0, init_value]``.

    Example:
      >>> schedule = step_decay(0.1, step_size=30)  # 0.1, then 0.01 from t = 30, ...

    References:
      He et al., `Deep Residual Learning for Image Recognition
      <https://arxiv.org/abs/1512.03385>`_, CVPR 2016 (the divide-by-10 schedule).
    """
    check_value("init_value", init_value, low=0.0)
    step_size = check_steps("step_size", step_size)
    check_value("gamma", gamma, low=0.0, high=1.0, low_open=True)

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        exponent = _stair_exponent(count, step_size, staircase=True)
        return _as_float(init_value) * _safe_pow(_as_float(gamma), exponent)

    return _compiled(schedule)


def multistep_decay(
    init_value: float, milestones: Sequence[int], gamma: float = 0.1
) -> optax.Schedule:
    """Multiplies the value by ``gamma`` at each milestone (PyTorch ``MultiStepLR``).

    ``value(t) = init_value * gamma ** #{m in milestones : m <= t}``. A milestone listed
    twice counts twice; the order of ``milestones`` does not matter.

    Args:
      init_value: value before the first milestone, ``>= 0``.
      milestones: non-empty sequence of integer steps in ``[0, 2**31 - 1]``.
      gamma: factor per milestone, in ``(0, 1]``.

    Returns:
      An optax schedule ``count -> value``, values in ``[0, init_value]``.

    Example:
      >>> schedule = multistep_decay(0.1, milestones=[30, 80])  # .1, .01 from 30, .001 from 80

    References:
      He et al., `Deep Residual Learning for Image Recognition
      <https://arxiv.org/abs/1512.03385>`_, CVPR 2016.
    """
    check_value("init_value", init_value, low=0.0)
    check_value("gamma", gamma, low=0.0, high=1.0, low_open=True)
    if isinstance(milestones, (str, bytes)) or not isinstance(milestones, (Sequence, np.ndarray)):
        raise ValueError(f"milestones must be a non-empty sequence of steps, got {milestones!r}.")
    if len(milestones) == 0:
        raise ValueError("milestones must be a non-empty sequence of steps, got [].")
    milestones = np.sort(
        [check_steps("milestones", milestone, minimum=0) for milestone in milestones]
    ).astype(np.int32)

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        # Milestones passed = number of sorted milestones <= t.
        count = _integer_count(count)
        passed = jnp.searchsorted(milestones, count, side="right", method=_search_method(milestones))
        return _as_float(init_value) * _safe_pow(_as_float(gamma), passed.astype(_float_dtype()))

    return _compiled(schedule)


def exponential_decay(
    init_value: float, decay_rate: float, decay_steps: int = 1, staircase: bool = False
) -> optax.Schedule:
    """Exponential decay (Keras ``ExponentialDecay``, optax ``exponential_decay``).

    ``value(t) = init_value * decay_rate ** (t / decay_steps)``; with ``staircase=True`` the
    exponent is ``floor(t / decay_steps)``.

    Not built on ``optax.exponential_decay``: it branches in Python on ``decay_rate``
    (``if decay_rate == 0``), which a traced rate cannot pass.

    Args:
      init_value: value at ``t = 0``, ``>= 0``.
      decay_rate: factor per ``decay_steps`` steps, in ``(0, 1]``.
      decay_steps: steps per factor ``decay_rate``, an integer ``>= 1``.
      staircase: decay in discrete jumps every ``decay_steps`` steps (a bool).

    Returns:
      An optax schedule ``count -> value``, values in ``[0, init_value]``.

    Example:
      >>> schedule = exponential_decay(0.1, decay_rate=0.5, decay_steps=1000)

    References:
      No single paper: the standard decay of optax ``exponential_decay``, Keras
      ``ExponentialDecay`` and PyTorch ``ExponentialLR``; see Bengio, `Practical Recommendations
      for Gradient-Based Training of Deep Architectures <https://arxiv.org/abs/1206.5533>`_, 2012.
    """
    check_value("init_value", init_value, low=0.0)
    check_value("decay_rate", decay_rate, low=0.0, high=1.0, low_open=True)
    decay_steps = check_steps("decay_steps", decay_steps)
    if check_flag("staircase", staircase):
        # A float32 quotient, floored, misplaces stairs once t exceeds 2**24.
        return step_decay(init_value, decay_steps, decay_rate)

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        exponent = _stair_exponent(count, decay_steps, staircase=False)
        return _as_float(init_value) * _safe_pow(_as_float(decay_rate), exponent)

    return _compiled(schedule)


def inverse_time_decay(
    init_value: float, decay_rate: float, decay_steps: int = 1, staircase: bool = False
) -> optax.Schedule:
    """Inverse-time decay (Keras ``InverseTimeDecay``).

    ``value(t) = init_value / (1 + decay_rate * t / decay_steps)``; with ``staircase=True``
    the ratio ``t / decay_steps`` is floored. optax has no such schedule.

    Args:
      init_value: value at ``t = 0``, ``>= 0``.
      decay_rate: finite rate ``>= 0``.
      decay_steps: steps per unit of ``t``, an integer ``>= 1``.
      staircase: decay in discrete jumps every ``decay_steps`` steps (a bool).

    Returns:
      An optax schedule ``count -> value``, values in ``[0, init_value]``.

    Example:
      >>> schedule = inverse_time_decay(0.1, decay_rate=0.5, decay_steps=100)

    References:
      Bottou, `Stochastic Gradient Descent Tricks
      <https://leon.bottou.org/publications/pdf/tricks-2012.pdf>`_, 2012 (the ``1/t`` rate).
    """
    check_value("init_value", init_value, low=0.0)
    check_value("decay_rate", decay_rate, low=0.0)
    decay_steps = check_steps("decay_steps", decay_steps)
    staircase = check_flag("staircase", staircase)

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        # decay_rate >= 0 keeps the denominator >= 1; a huge one overflows to inf, giving 0.
        ratio = _stair_exponent(count, decay_steps, staircase)
        return _as_float(init_value) / (1.0 + _as_float(decay_rate) * ratio)

    return _compiled(schedule)


def polynomial_decay(
    init_value: float, end_value: float, total_steps: int, power: float = 1.0
) -> optax.Schedule:
    """Polynomial decay from ``init_value`` to ``end_value`` (optax ``polynomial_schedule``).

    ``value(t) = end_value + (init_value - end_value) * (1 - min(t, T) / T) ** power`` with
    ``T = total_steps``: the value holds ``end_value`` from ``t = T`` on, exactly, under
    ``jit`` too. (Not built on ``optax.polynomial_schedule``: under ``jit`` XLA evaluates its
    ``1 - t / T`` a rounding error away from 0 at ``t = T``, and the power of that is NaN for
    ``power=0.9`` or ``1.5e-6`` instead of 0 for ``power=0.5``.)

    Args:
      init_value: value at ``t = 0``, ``>= 0``.
      end_value: value from ``total_steps`` on, ``>= 0`` (may exceed ``init_value``).
      total_steps: length of the decay, an integer ``>= 1``.
      power: exponent, ``> 0`` (1 is linear); a value, may be traced.

    Returns:
      An optax schedule ``count -> value``, values between ``init_value`` and ``end_value``.

    Example:
      >>> schedule = polynomial_decay(0.1, 0.0, total_steps=10_000, power=2.0)

    References:
      The "poly" policy of Chen et al., `DeepLab <https://arxiv.org/abs/1606.00915>`_, TPAMI
      2018 (``power=0.9, end_value=0``); optax ``polynomial_schedule``, PyTorch ``PolynomialLR``.
    """
    check_value("init_value", init_value, low=0.0)
    check_value("end_value", end_value, low=0.0)
    total_steps = check_steps("total_steps", total_steps)
    check_value("power", power, low=0.0, low_open=True)

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        # (T - min(t, T)) / T is exactly 0 from t = T on (1 - t / T is not, under jit).
        remaining = (total_steps - jnp.minimum(_clamped_count(count), total_steps)) / total_steps
        end = _as_float(end_value)
        return end + (_as_float(init_value) - end) * _safe_pow(remaining, _as_float(power))

    return _compiled(schedule)


def cosine_annealing(init_value: float, total_steps: int, min_value: float = 0.0) -> optax.Schedule:
    """Half-cosine from ``init_value`` to ``min_value`` (PyTorch ``CosineAnnealingLR``).

    ``value(t) = min_value + (init_value - min_value) * (1 + cos(pi * min(t, T) / T)) / 2``
    with ``T = total_steps``: the value holds ``min_value`` from ``t = T`` on.
    (Not built on ``optax.cosine_decay_schedule``: it writes the floor as a fraction
    ``alpha`` of ``init_value``, which cannot express ``init_value = 0``.)

    Args:
      init_value: value at ``t = 0``, ``>= 0``.
      total_steps: length of the anneal, an integer ``>= 1``.
      min_value: value from ``total_steps`` on, ``>= 0``.

    Returns:
      An optax schedule ``count -> value``, values between ``init_value`` and ``min_value``.

    Example:
      >>> schedule = cosine_annealing(0.1, total_steps=10_000, min_value=1e-4)

    References:
      Loshchilov & Hutter, `SGDR: Stochastic Gradient Descent with Warm Restarts
      <https://arxiv.org/abs/1608.03983>`_, ICLR 2017.
    """
    check_value("init_value", init_value, low=0.0)
    check_value("min_value", min_value, low=0.0)
    total_steps = check_steps("total_steps", total_steps)

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        t = jnp.minimum(_clamped_count(count), total_steps)
        fraction, remaining = _fractions(t, total_steps - t, total_steps)
        return _cosine_interpolate(_as_float(init_value), _as_float(min_value), fraction, remaining)

    return _compiled(schedule)


def noam(d_model: int, warmup_steps: int, factor: float = 1.0) -> optax.Schedule:
    """The Transformer's schedule: linear warmup, then inverse square-root decay.

    ``value(t) = factor * d_model**-0.5 * min(s**-0.5, s * warmup_steps**-1.5)`` with
    ``s = t + 1``; the peak ``factor * (d_model * warmup_steps)**-0.5`` is at
    ``t + 1 == warmup_steps``.

    Args:
      d_model: model width, ``> 0`` (only a scale: may be traced, like ``factor``).
      warmup_steps: steps of linear warmup, an integer ``>= 1``.
      factor: overall scale, ``> 0``.

    Returns:
      An optax schedule ``count -> value``, values in ``(0, peak]``.

    Example:
      >>> schedule = noam(d_model=512, warmup_steps=4000)

    References:
      Vaswani et al., `Attention Is All You Need <https://arxiv.org/abs/1706.03762>`_,
      NeurIPS 2017, eq. (3).
    """
    check_value("d_model", d_model, low=0.0, low_open=True)
    warmup_steps = check_steps("warmup_steps", warmup_steps)
    check_value("factor", factor, low=0.0, low_open=True)
    if not (is_traced(d_model) or is_traced(factor)):
        # The peak (at most the scale) must be a float32 number, too.
        scale = concrete_float("factor", factor) * concrete_float("d_model", d_model) ** -0.5
        _check_derived("factor * d_model**-0.5", scale)

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        scale = _as_float(factor) * jax.lax.rsqrt(_as_float(d_model))
        # The float count cannot overflow in `count + 1`, unlike int32; s >= 1.
        s = _clamped_count(count) + 1.0
        return scale * jnp.minimum(jax.lax.rsqrt(s), s * warmup_steps**-1.5)

    return _compiled(schedule)


_WARMUP_MODES = ("linear", "exponential", "constant")


def warmup(
    schedule: optax.Schedule,
    warmup_steps: int,
    init_value: float = 0.0,
    mode: str = "linear",
) -> optax.Schedule:
    """Prepends a warmup to ``schedule``.

    With ``W = warmup_steps``, ``v0 = init_value``, ``v1 = schedule(0)`` and ``f = t / W``:

    - ``t >= W``: ``schedule(t - W)``;
    - ``mode="linear"``: ``v0 + (v1 - v0) * f`` (Goyal et al.'s gradual warmup);
    - ``mode="exponential"``: ``v0 * (v1 / v0) ** f``, the geometric interpolation (a
      straight line on a log axis), computed as ``exp((1 - f) log v0 + f log v1)`` so no
      ratio overflows; needs ``init_value > 0`` (``schedule(0) = 0`` gives 0 after ``t = 0``);
    - ``mode="constant"``: ``v0`` (He et al.'s constant warmup).

    ``warmup_steps=0`` returns ``schedule`` with negative counts clamped to 0.

    Args:
      schedule: the schedule to warm up into; it sees counts ``>= 0`` only.
      warmup_steps: warmup length, an integer ``>= 0``.
      init_value: value at ``t = 0``, ``>= 0`` (``> 0`` for ``mode="exponential"``); may be
        traced.
      mode: ``"linear"``, ``"exponential"`` or ``"constant"``.

    Returns:
      An optax schedule ``count -> value``.

    Example:
      >>> schedule = warmup(cosine_annealing(0.1, 10_000), warmup_steps=500)

    References:
      Goyal et al., `Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour
      <https://arxiv.org/abs/1706.02677>`_, 2017; He et al., `Deep Residual Learning for
      Image Recognition <https://arxiv.org/abs/1512.03385>`_, CVPR 2016.
    """
    if not callable(schedule):
        raise ValueError(f"schedule must be a callable count -> value, got {schedule!r}.")
    warmup_steps = check_steps("warmup_steps", warmup_steps, minimum=0)
    _check_choice("mode", mode, _WARMUP_MODES)
    check_value("init_value", init_value, low=0.0, low_open=mode == "exponential")

    def warmed_up(count: jax.typing.ArrayLike) -> jax.Array:
        count = jnp.clip(_count_array(count), 0, _MAX_COUNT)  # int32 or the caller's float
        after = jnp.asarray(schedule(jnp.maximum(count - warmup_steps, 0)), _float_dtype())
        if warmup_steps == 0:
            return jnp.broadcast_to(after, count.shape)
        target = jnp.asarray(schedule(0), _float_dtype())
        init = _as_float(init_value)
        t = jnp.minimum(count.astype(_float_dtype()), warmup_steps)
        fraction, remaining = _fractions(t, warmup_steps - t, warmup_steps)
        if mode == "linear":
            ramp = _linear_interpolate(init, target, fraction, remaining)
        elif mode == "exponential":
            # Logs of positive numbers only (double where: finite gradients too); a target
            # of 0 is the geometric limit: init at t = 0, then 0.
            positive = (init > 0) & (target > 0)
            log_init = jnp.log(jnp.where(positive, init, 1.0))
            log_target = jnp.log(jnp.where(positive, target, 1.0))
            geometric = jnp.exp(log_init + fraction * (log_target - log_init))
            ramp = jnp.where(positive, geometric, jnp.where(fraction == 0, init, 0.0))
        else:
            ramp = jnp.broadcast_to(init, count.shape)
        return jnp.where(count < warmup_steps, ramp, after)

    return _compiled(warmed_up)


def schedule_values(schedule: optax.Schedule, num_steps: int) -> np.ndarray:
    """The values of ``schedule`` at counts ``0`` to ``num_steps - 1``, in one vectorised call.

    Args:
      schedule: any optax schedule that accepts an array of counts.
      num_steps: number of counts, an integer ``>= 1``.

    Returns:
      A float numpy array of shape ``(num_steps,)``.

    Example:
      >>> schedule_values(step_decay(1.0, step_size=2, gamma=0.5), 5)
      array([1.  , 1.  , 0.5 , 0.5 , 0.25], dtype=float32)

    References:
      None: a utility (one vectorised call of the schedule on ``arange(num_steps)``).
    """
    if not callable(schedule):
        raise TypeError(f"schedule must be a callable count -> value, got {schedule!r:.60}.")
    num_steps = check_steps("num_steps", num_steps)
    values = np.asarray(schedule(jnp.arange(num_steps)))
    if not np.issubdtype(values.dtype, np.floating):
        values = values.astype(np.float32)
    # Schedules such as optax.constant_schedule return a scalar whatever the count.
    return np.broadcast_to(values, (num_steps,)).copy()
