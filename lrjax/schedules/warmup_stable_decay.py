"""Warmup-stable-decay (WSD): a constant rate with a short cooldown that can start anywhere.

Large-model training since 2024 holds the learning rate at its peak for most of the run and
anneals it only over a short final *cooldown*. Because nothing before the cooldown depends
on the run's length, one long constant-rate run can be cooled down from any checkpoint
(:func:`wsd_cooldown`), giving a trained model per budget for the price of the cooldowns
(Hägele et al. 2024, who found the ``1 - sqrt`` cooldown best, and Hu et al. 2024).

* :func:`wsd`: warmup, stable phase at the peak, cooldown over the last steps;
* :func:`wsd_cooldown`: a cooldown applied to any schedule (or constant) from a given step.

Both are optax schedules with lrjax's guarantees (see :mod:`lrjax.schedules`): counts from
0, float32 out, counts clamped to ``[0, 2**31 - 1]``, both ends of every phase exact under
``jit``, value-like arguments (``peak_value``, ``min_value``, ``init_value``) usable as
traced values (``vmap``/``grad``/``jit``, ``optax.inject_hyperparams``).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import optax

from lrjax._engine.checks import check_static, check_steps, check_value
from lrjax._engine.schedule_math import (
    _MAX_COUNT,
    _as_float,
    _check_choice,
    _check_ordered,
    _compiled,
    _count_array,
    _cosine_interpolate,
    _float_dtype,
    _fractions,
)

__all__ = ["wsd", "wsd_cooldown"]

_SHAPES = ("1-sqrt", "linear", "cosine")


def _away_from_peak(shape: str, peak: jax.Array, low: jax.Array, away: jax.Array,
                    near: jax.Array) -> jax.Array:
    """The value a fraction ``away`` of a phase from the peak end (``near = 1 - away``).

    ``peak`` at ``away = 0``, ``low`` at ``away = 1``, both exactly, in between:

    * ``"linear"``: ``peak - (peak - low) * away``;
    * ``"cosine"``: ``low + (peak - low) * (1 + cos(pi * away)) / 2``;
    * ``"1-sqrt"``: ``peak - (peak - low) * sqrt(away)``. Its weight on the peak,
      ``1 - sqrt(away)``, is computed as ``near / (1 + sqrt(away))``: the subtraction loses
      all relative precision next to the low end, the quotient none.

    The cooldown runs away from the peak forwards in time, the warmup backwards
    (``away = 1 - t / warmup_steps``), so each shape's warmup is its cooldown mirrored,
    as in Hugging Face's ``get_wsd_schedule``.
    """
    if shape == "cosine":
        return _cosine_interpolate(peak, low, away, near)
    if shape == "linear":
        return peak * near + low * away
    root = jnp.sqrt(away)
    return peak * (near / (1.0 + root)) + low * root


def _cooldown_steps(total_steps: int, decay_steps: Any, decay_fraction: Any) -> int:
    """The cooldown length: ``decay_steps``, or ``decay_fraction`` of ``total_steps`` rounded."""
    if decay_steps is not None:
        return check_steps("decay_steps", decay_steps, maximum=total_steps)
    fraction = check_static("decay_fraction", decay_fraction, low=0.0, high=1.0, low_open=True)
    # Rounded half up (not Python's half-to-even), at least one step.
    return max(1, min(math.floor(fraction * total_steps + 0.5), total_steps))


def wsd(
    peak_value: float,
    total_steps: int,
    *,
    warmup_steps: int = 0,
    decay_steps: int | None = None,
    decay_fraction: float | None = None,
    decay: str = "1-sqrt",
    min_value: float = 0.0,
    warmup: str = "linear",
    init_value: float = 0.0,
) -> optax.Schedule:
    r"""Warmup-stable-decay: warm up to ``peak_value``, hold it, cool down over the last steps.

    With ``T = total_steps``, ``W = warmup_steps``, ``D`` the cooldown length and
    ``C = T - D`` the step where the cooldown starts:

    .. math::
        value(t) = \begin{cases}
          v_0 + (p - v_0) \, g(t / W) & 0 \le t < W \quad \text{(warmup)} \\
          p & W \le t < C \quad \text{(stable)} \\
          m + (p - m) \, f(s), \; s = (t - C) / D & C \le t < T \quad \text{(cooldown)} \\
          m & t \ge T
        \end{cases}

    with ``p = peak_value``, ``m = min_value``, ``v_0 = init_value``, and the cooldown shape
    ``f``: ``"1-sqrt"`` ``1 - sqrt(s)`` (Hägele et al.'s best), ``"linear"`` ``1 - s``,
    ``"cosine"`` ``(1 + cos(pi s)) / 2``. The warmup shape ``g(x) = f_w(1 - x)`` is the same
    family mirrored in time (``"linear"`` ``x``, ``"cosine"`` ``(1 - cos(pi x)) / 2``,
    ``"1-sqrt"`` ``1 - sqrt(1 - x)``).

    **Conventions.** Hugging Face ``get_wsd_schedule`` and timm's ``WSDLRScheduler`` agree
    on the cooldown, and lrjax follows them: its first step ``t = C`` is still at the peak,
    and the value reaches ``min_value`` at ``t = T``, as optax's and lrjax's cosine decays
    reach their end value at ``t = total_steps``. So the last step of a ``T``-step training
    (``t = T - 1``) trains at ``f((D - 1) / D)``: with a short cooldown (``D = 5``,
    ``"1-sqrt"``) that is 11% of the peak, not the minimum; keep ``D`` long (the paper's
    20%) or train ``T + 1`` steps. Where they differ:

    * the warmup's place: Hugging Face counts it inside ``num_training_steps``, as here;
      timm's always precedes ``t_initial``, so its ``(warmup_t, t_initial, decay_t)`` is
      ``wsd(lr, warmup_t + t_initial, warmup_steps=warmup_t, decay_steps=decay_t)``;
    * the warmup's start: Hugging Face starts from ``min_lr_ratio * lr``, timm from
      ``warmup_lr_init`` (default 0). lrjax starts from ``init_value``, default 0 as in
      timm and the paper (a warmup exists to start small, whatever the floor of the
      cooldown): pass ``init_value=min_value`` for Hugging Face's numbers;
    * the warmup's shape: timm's is linear; Hugging Face's ``warmup_type`` has the three
      shapes here;
    * a fractional cooldown: timm's factory (``--decay-epochs 0.2``) takes a fraction of the
      post-warmup length, ``decay_fraction`` a fraction of ``total_steps`` (the paper's "20%
      of the steps"); both round to whole steps;
    * extras: Hugging Face's ``num_cycles`` for the cosine (its default 0.5 is
      ``"cosine"`` here); timm's ``power`` and ``exp`` cooldowns (not here) and its
      ``rsqrt`` stable phase, which is :func:`wsd_cooldown` over :func:`lrjax.inverse_sqrt`
      (tested equal).

    Args:
      peak_value: the stable rate ``p``, ``>= 0`` (may be traced).
      total_steps: ``T``, the length of the whole schedule, an integer ``>= 1``.
      warmup_steps: ``W``, an integer in ``[0, T - D]``.
      decay_steps: ``D``, the cooldown length, an integer in ``[1, T - W]``. Give it or
        ``decay_fraction``, not both.
      decay_fraction: the cooldown as a fraction of ``total_steps``, in ``(0, 1]``;
        ``D = round(decay_fraction * T)``, at least 1. Default ``0.2`` when
        ``decay_steps`` is not given (Hägele et al.: a 20% ``1-sqrt`` cooldown matches or
        beats a cosine schedule of the same length).
      decay: the cooldown shape, ``"1-sqrt"``, ``"linear"`` or ``"cosine"``.
      min_value: ``m``, the value at the end of the cooldown and after it, in
        ``[0, peak_value]`` (may be traced).
      warmup: the warmup shape, ``"linear"``, ``"cosine"`` or ``"1-sqrt"``.
      init_value: ``v_0``, the value at ``t = 0`` when ``W > 0``, ``>= 0`` (may be traced).

    Returns:
      An optax schedule ``count -> value``.

    Raises:
      ValueError: a static argument out of its range (named in the message), both
        ``decay_steps`` and ``decay_fraction`` given, or
        ``warmup_steps + decay_steps > total_steps``.

    Example:
      >>> schedule = wsd(3e-4, total_steps=10_000, warmup_steps=500)  # 1-sqrt, last 20%
      >>> [round(float(schedule(t)), 7) for t in (0, 250, 500, 8_000, 9_000, 10_000)]
      [0.0, 0.00015, 0.0003, 0.0003, 8.79e-05, 0.0]

    References:
      Hägele et al., `Scaling Laws and Compute-Optimal Training Beyond Fixed Training
      Durations <https://arxiv.org/abs/2405.18392>`_, NeurIPS 2024 (the ``1 - sqrt``
      cooldown, eq. in Section 3); Hu et al., `MiniCPM <https://arxiv.org/abs/2404.06395>`_,
      2024 (the WSD schedule).
    """
    total_steps = check_steps("total_steps", total_steps)
    if decay_steps is not None and decay_fraction is not None:
        raise ValueError(
            f"give decay_steps or decay_fraction, not both (got decay_steps={decay_steps!r}, "
            f"decay_fraction={decay_fraction!r}).")
    decay_steps = _cooldown_steps(total_steps, decay_steps,
                                  0.2 if decay_fraction is None else decay_fraction)
    warmup_steps = check_steps("warmup_steps", warmup_steps, minimum=0, maximum=total_steps)
    if warmup_steps + decay_steps > total_steps:
        raise ValueError(
            f"warmup_steps + decay_steps must be <= total_steps={total_steps}, got "
            f"{warmup_steps} + {decay_steps}.")
    _check_choice("decay", decay, _SHAPES)
    _check_choice("warmup", warmup, _SHAPES)
    check_value("peak_value", peak_value, low=0.0)
    check_value("min_value", min_value, low=0.0)
    check_value("init_value", init_value, low=0.0)
    _check_ordered("min_value", min_value, "peak_value", peak_value)
    return _compiled(_cooldown_body(_warmup_body(peak_value, warmup_steps, warmup, init_value),
                                    total_steps - decay_steps, decay_steps, decay, min_value))


def _warmup_body(peak_value: Any, warmup_steps: int, shape: str, init_value: Any) -> optax.Schedule:
    """``init_value`` rising to ``peak_value`` over ``warmup_steps``, then ``peak_value``."""

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        count = jnp.clip(_count_array(count), 0, _MAX_COUNT)
        peak = jnp.broadcast_to(_as_float(peak_value), count.shape)
        if warmup_steps == 0:
            return peak
        w = jnp.minimum(count, warmup_steps).astype(_float_dtype())
        # Measured from the peak end: the warmup is the cooldown shape run backwards.
        near, away = _fractions(w, warmup_steps - w, warmup_steps)
        return _away_from_peak(shape, peak, _as_float(init_value), away, near)

    return schedule


def _cooldown_body(schedule: Any, start_step: int, decay_steps: int, shape: str,
                   min_value: Any) -> optax.Schedule:
    """``schedule`` until ``start_step``, then cooled to ``min_value`` over ``decay_steps``."""

    def cooled(count: jax.typing.ArrayLike) -> jax.Array:
        count = jnp.clip(_count_array(count), 0, _MAX_COUNT)  # int32 or the caller's float
        base = (jnp.asarray(schedule(count), _float_dtype()) if callable(schedule)
                else _as_float(schedule))
        base = jnp.broadcast_to(base, count.shape)
        low = _as_float(min_value)
        # Steps into the cooldown, subtracted in the count's own dtype (int32 is exact where
        # float32 is not, past 2**24), then progress from both ends (exact 0 and 1 under jit).
        elapsed = jnp.clip(count - start_step, 0, decay_steps).astype(_float_dtype())
        away, near = _fractions(elapsed, decay_steps - elapsed, decay_steps)
        # In the cooldown a running value below the floor is lifted to it (as timm does),
        # so the cooldown never climbs; before it the running schedule is left as it is.
        cooled = _away_from_peak(shape, jnp.maximum(base, low), low, away, near)
        return jnp.where(count < start_step, base, cooled)

    return cooled


def wsd_cooldown(
    schedule_or_value: optax.ScalarOrSchedule,
    start_step: int,
    decay_steps: int,
    decay: str = "1-sqrt",
    min_value: float = 0.0,
) -> optax.Schedule:
    r"""Cool down a running training from ``start_step``: the WSD cooldown on any schedule.

    With ``b(t)`` the schedule's value (or the constant), ``S = start_step`` and
    ``D = decay_steps``:

    .. math::
        value(t) = \begin{cases}
          b(t) & t < S \\
          m + (b(t) - m) \, f((t - S) / D) & S \le t < S + D \\
          m & t \ge S + D
        \end{cases}

    with the cooldown shapes ``f`` of :func:`wsd`. For a constant ``b`` this is exactly the
    cooldown of :func:`wsd` (``wsd(p, T, decay_steps=D)`` equals
    ``wsd_cooldown(p, T - D, D)``); for a decaying schedule (e.g.
    :func:`lrjax.inverse_sqrt`) the cooldown multiplies it, as in big_vision's "rsqrt with
    cooldown" and timm's ``WSDLRScheduler(stable_fn="rsqrt")`` (tested equal). From ``S``
    on, a running value below ``m`` counts as ``m`` (the cooldown never climbs), as in
    timm; before ``S`` the running schedule is left as it is (timm also lifts it to its
    ``lr_min`` from the end of its warmup).

    The point of WSD: train once at a constant rate (or warmup + constant) and, from any
    saved step ``S``, branch off a cooldown of ``D`` steps: the optimizer's count keeps
    running, so restore the checkpoint's optimizer state and swap in this schedule
    (e.g. through ``optax.inject_hyperparams`` or by rebuilding the optimizer with the same
    state structure).

    Args:
      schedule_or_value: the running schedule ``b`` (a callable ``count -> value``) or a
        constant rate ``>= 0`` (may be traced).
      start_step: ``S``, the count at which the cooldown starts, an integer ``>= 0``.
      decay_steps: ``D``, the cooldown length, an integer ``>= 1`` with
        ``S + D <= 2**31 - 1``.
      decay: the shape, ``"1-sqrt"``, ``"linear"`` or ``"cosine"``.
      min_value: ``m``, the value at the end of the cooldown, ``>= 0`` and at most the
        running value (may be traced).

    Returns:
      An optax schedule ``count -> value``.

    Example:
      >>> running = 1e-3                           # a constant-rate run, checkpointed at 40k
      >>> schedule = wsd_cooldown(running, start_step=40_000, decay_steps=8_000)
      >>> [round(float(schedule(t)), 7) for t in (39_999, 40_000, 44_000, 48_000)]
      [0.001, 0.001, 0.0002929, 0.0]

    References:
      Hägele et al., `Scaling Laws and Compute-Optimal Training Beyond Fixed Training
      Durations <https://arxiv.org/abs/2405.18392>`_, NeurIPS 2024 (cooldowns from one
      constant-rate run); Zhai et al., `Scaling Vision Transformers
      <https://arxiv.org/abs/2106.04560>`_, CVPR 2022 (rsqrt with a linear cooldown).
    """
    start_step = check_steps("start_step", start_step, minimum=0)
    decay_steps = check_steps("decay_steps", decay_steps, maximum=_MAX_COUNT - start_step)
    _check_choice("decay", decay, _SHAPES)
    check_value("min_value", min_value, low=0.0)
    if not callable(schedule_or_value):
        check_value("schedule_or_value", schedule_or_value, low=0.0)
        _check_ordered("min_value", min_value, "schedule_or_value", schedule_or_value)
    return _compiled(_cooldown_body(schedule_or_value, start_step, decay_steps, decay, min_value))
