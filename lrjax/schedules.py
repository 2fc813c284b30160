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
from collections.abc import Sequence

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
    if not 0 < value < math.inf:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}.")


def _check_unit_interval(name: str, value: float) -> None:
    """Checks ``value`` in (0, 1]: a decay factor that keeps every schedule finite."""
    if not 0 < value <= 1:
        raise ValueError(f"{name} must be in (0, 1], got {value!r}.")


def _check_nonnegative(name: str, value: float) -> None:
    if not 0 <= value < math.inf:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")


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
    """Half-cosine from ``start`` (fraction 0) to ``end`` (fraction 1).

    Written as a weighted sum so that both ends are hit exactly in float32.
    """
    weight = 0.5 * (1.0 + jnp.cos(jnp.pi * fraction))
    return start * weight + end * (1.0 - weight)


def _linear_interpolate(start: jax.Array, end: jax.Array, fraction: jax.Array) -> jax.Array:
    """Straight line from ``start`` (fraction 0) to ``end`` (fraction 1), both ends exact."""
    return start * (1.0 - fraction) + end * fraction


def _stair_exponent(count: jax.typing.ArrayLike, steps: int, staircase: bool) -> jax.Array:
    """``t / steps``, or ``floor(t / steps)`` computed on integers so stairs switch exactly."""
    if staircase:
        return (_integer_count(count) // steps).astype(_float_dtype())
    return _clamped_count(count) / steps


# --------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------
def constant(value: float) -> optax.Schedule:
    """A constant value.

    ``value(t) = value``. Unlike ``optax.constant_schedule`` (which returns the bare
    Python number), the result has the count's shape and the default float dtype.

    Args:
      value: the value, a finite number ``>= 0``.

    Returns:
      An optax schedule ``count -> value``.

    Example:
      >>> optimizer = optax.adam(learning_rate=constant(1e-3))

    References:
      No paper: the baseline every schedule is compared with (optax ``constant_schedule``).
    """
    _check_nonnegative("value", value)

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        return jnp.full(jnp.shape(count), value, _float_dtype())

    return schedule


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
    _check_nonnegative("init_value", init_value)
    step_size = _check_step_count("step_size", step_size)
    _check_unit_interval("gamma", gamma)

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        return init_value * jnp.asarray(gamma, _float_dtype()) ** _stair_exponent(
            count, step_size, staircase=True
        )

    return schedule


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
    _check_nonnegative("init_value", init_value)
    _check_unit_interval("gamma", gamma)
    if len(milestones) == 0:
        raise ValueError("milestones must be a non-empty sequence of steps, got [].")
    milestones = np.sort(
        [_check_step_count("milestones", milestone, minimum=0) for milestone in milestones]
    ).astype(np.int32)

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        # Milestones passed = number of sorted milestones <= t.
        passed = jnp.searchsorted(milestones, _integer_count(count), side="right")
        return init_value * jnp.asarray(gamma, _float_dtype()) ** passed.astype(_float_dtype())

    return schedule


def exponential_decay(
    init_value: float, decay_rate: float, decay_steps: int = 1, staircase: bool = False
) -> optax.Schedule:
    """Exponential decay (Keras ``ExponentialDecay``, optax ``exponential_decay``).

    ``value(t) = init_value * decay_rate ** (t / decay_steps)``; with ``staircase=True`` the
    exponent is ``floor(t / decay_steps)``.

    Args:
      init_value: value at ``t = 0``, ``>= 0``.
      decay_rate: factor per ``decay_steps`` steps, in ``(0, 1]``.
      decay_steps: steps per factor ``decay_rate``, an integer ``>= 1``.
      staircase: decay in discrete jumps every ``decay_steps`` steps.

    Returns:
      An optax schedule ``count -> value``, values in ``[0, init_value]``.

    Example:
      >>> schedule = exponential_decay(0.1, decay_rate=0.5, decay_steps=1000)

    References:
      No single paper: the standard decay of optax ``exponential_decay``, Keras
      ``ExponentialDecay`` and PyTorch ``ExponentialLR``; see Bengio, `Practical Recommendations
      for Gradient-Based Training of Deep Architectures <https://arxiv.org/abs/1206.5533>`_, 2012.
    """
    _check_nonnegative("init_value", init_value)
    _check_unit_interval("decay_rate", decay_rate)
    decay_steps = _check_step_count("decay_steps", decay_steps)
    if staircase:
        # optax floors a float32 quotient, which misplaces stairs once t exceeds 2**24.
        return step_decay(init_value, decay_steps, decay_rate)
    smooth = optax.exponential_decay(init_value, decay_steps, decay_rate)

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        return smooth(_clamped_count(count)).astype(_float_dtype())

    return schedule


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
      staircase: decay in discrete jumps every ``decay_steps`` steps.

    Returns:
      An optax schedule ``count -> value``, values in ``(0, init_value]``.

    Example:
      >>> schedule = inverse_time_decay(0.1, decay_rate=0.5, decay_steps=100)

    References:
      Bottou, `Stochastic Gradient Descent Tricks
      <https://leon.bottou.org/publications/pdf/tricks-2012.pdf>`_, 2012 (the ``1/t`` rate).
    """
    _check_nonnegative("init_value", init_value)
    _check_nonnegative("decay_rate", decay_rate)
    decay_steps = _check_step_count("decay_steps", decay_steps)

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        return init_value / (1.0 + decay_rate * _stair_exponent(count, decay_steps, staircase))

    return schedule


def polynomial_decay(
    init_value: float, end_value: float, total_steps: int, power: float = 1.0
) -> optax.Schedule:
    """Polynomial decay from ``init_value`` to ``end_value`` (optax ``polynomial_schedule``).

    ``value(t) = end_value + (init_value - end_value) * (1 - min(t, T) / T) ** power`` with
    ``T = total_steps``: the value holds ``end_value`` from ``t = T`` on.

    Args:
      init_value: value at ``t = 0``, ``>= 0``.
      end_value: value from ``total_steps`` on, ``>= 0`` (may exceed ``init_value``).
      total_steps: length of the decay, an integer ``>= 1``.
      power: exponent, ``> 0`` (1 is linear).

    Returns:
      An optax schedule ``count -> value``, values between ``init_value`` and ``end_value``.

    Example:
      >>> schedule = polynomial_decay(0.1, 0.0, total_steps=10_000, power=2.0)

    References:
      The "poly" policy of Chen et al., `DeepLab <https://arxiv.org/abs/1606.00915>`_, TPAMI
      2018 (``power=0.9, end_value=0``); optax ``polynomial_schedule``, PyTorch ``PolynomialLR``.
    """
    _check_nonnegative("init_value", init_value)
    _check_nonnegative("end_value", end_value)
    total_steps = _check_step_count("total_steps", total_steps)
    _check_positive("power", power)
    # optax clips the count to [0, total_steps] itself; the float count fixes the dtype.
    decay = optax.polynomial_schedule(init_value, end_value, power, total_steps)

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        return decay(_clamped_count(count)).astype(_float_dtype())

    return schedule


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
    _check_nonnegative("init_value", init_value)
    _check_nonnegative("min_value", min_value)
    total_steps = _check_step_count("total_steps", total_steps)

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        dtype = _float_dtype()
        fraction = jnp.minimum(_clamped_count(count), total_steps) / total_steps
        return _cosine_interpolate(
            jnp.asarray(init_value, dtype), jnp.asarray(min_value, dtype), fraction
        )

    return schedule


def noam(d_model: int, warmup_steps: int, factor: float = 1.0) -> optax.Schedule:
    """The Transformer's schedule: linear warmup, then inverse square-root decay.

    ``value(t) = factor * d_model**-0.5 * min(s**-0.5, s * warmup_steps**-1.5)`` with
    ``s = t + 1``; the peak ``factor * (d_model * warmup_steps)**-0.5`` is at
    ``t + 1 == warmup_steps``.

    Args:
      d_model: model width, ``> 0``.
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
    _check_positive("d_model", d_model)
    warmup_steps = _check_step_count("warmup_steps", warmup_steps)
    _check_positive("factor", factor)
    scale = factor * d_model**-0.5

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        # The float count cannot overflow in `count + 1`, unlike int32.
        s = _clamped_count(count) + 1.0
        return scale * jnp.minimum(jax.lax.rsqrt(s), s * warmup_steps**-1.5)

    return schedule


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
      straight line on a log axis); needs ``init_value > 0`` and ``schedule(0) > 0``;
    - ``mode="constant"``: ``v0`` (He et al.'s constant warmup).

    ``warmup_steps=0`` returns ``schedule`` with negative counts clamped to 0.

    Args:
      schedule: the schedule to warm up into; it sees counts ``>= 0`` only.
      warmup_steps: warmup length, an integer ``>= 0``.
      init_value: value at ``t = 0``, ``>= 0`` (``> 0`` for ``mode="exponential"``).
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
    warmup_steps = _check_step_count("warmup_steps", warmup_steps, minimum=0)
    _check_choice("mode", mode, _WARMUP_MODES)
    if mode == "exponential":
        _check_positive("init_value", init_value)
    else:
        _check_nonnegative("init_value", init_value)

    def warmed_up(count: jax.typing.ArrayLike) -> jax.Array:
        count = jnp.clip(jnp.asarray(count), 0, _MAX_COUNT)  # keeps the caller's dtype
        after = jnp.asarray(schedule(jnp.maximum(count - warmup_steps, 0)), _float_dtype())
        if warmup_steps == 0:
            return jnp.broadcast_to(after, count.shape)
        target = jnp.asarray(schedule(0), _float_dtype())
        fraction = jnp.minimum(count.astype(_float_dtype()), warmup_steps) / warmup_steps
        if mode == "linear":
            ramp = _linear_interpolate(jnp.asarray(init_value, _float_dtype()), target, fraction)
        elif mode == "exponential":
            # Clamping the ratio keeps the unused branch finite if schedule(0) <= 0.
            ratio = jnp.maximum(target / init_value, jnp.finfo(_float_dtype()).tiny)
            ramp = init_value * ratio**fraction
        else:
            ramp = jnp.full(count.shape, init_value, _float_dtype())
        return jnp.where(count < warmup_steps, ramp, after)

    return warmed_up


def schedule_values(schedule: optax.Schedule, num_steps: int) -> np.ndarray:
    """The values of ``schedule`` at counts ``0 .. num_steps - 1``, in one vectorised call.

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
    num_steps = _check_step_count("num_steps", num_steps)
    values = np.asarray(schedule(jnp.arange(num_steps)))
    if not np.issubdtype(values.dtype, np.floating):
        values = values.astype(np.float32)
    # Schedules such as optax.constant_schedule return a scalar whatever the count.
    return np.broadcast_to(values, (num_steps,)).copy()
