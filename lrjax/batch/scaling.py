"""Batch size and learning rate: SGD's noise scale, scaling rules, batch growth for decay.

Smith et al. (2018) read SGD as a stochastic differential equation whose noise scale is
``g = lr * (N / B - 1) / (1 - m)`` (``N`` training examples, batch ``B``, momentum ``m``):
what matters for the optimizer's noise is the ratio ``lr / B``, so dividing the learning
rate by ``f`` and multiplying the batch by ``f`` train alike, the second with ``f`` times
fewer parameter updates. This module turns that into tools:

* :func:`noise_scale`, its inverse :func:`batch_size_for_noise_scale`, and
  :func:`rescale_batch_size` (the batch that keeps ``g`` when lr or momentum change);
* scaling rules when the batch changes: :func:`scale_learning_rate` (linear, Goyal et al.
  2017; square root) and :func:`scale_adam` (Malladi et al. 2022, Adam's square-root rule);
* :func:`batch_size_schedule`: any learning-rate schedule turned into batch growth, as an
  ``optax.MultiSteps`` accumulation schedule plus the learning rate to use with it.

Value-like arguments (rates, momenta, sizes, kappa) may be JAX values, traced or not: they
are checked when concrete and passed through when traced, so ``jit``/``vmap``/``grad``
over them work. The measured noise of real gradients is :mod:`lrjax.batch.gradient_noise`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lrjax._engine.checks import check_steps, check_value, concrete_float, is_traced
from lrjax._engine.schedule_math import _integer_count

__all__ = [
    "BatchSizePlan",
    "batch_size_for_noise_scale",
    "batch_size_plan",
    "batch_size_schedule",
    "noise_scale",
    "rescale_batch_size",
    "scale_adam",
    "scale_learning_rate",
]

# A decay factor within this relative distance below a whole number counts as reaching it:
# gamma**n in float32 is a few ulps (~1e-7 relative) off, and 0.1 / 0.01 must give 10, not 9.
_FACTOR_RTOL = 1e-5
_SCALING_RULES = ("linear", "sqrt")


def _check_momentum(name: str, momentum: Any) -> Any:
    return check_value(name, momentum, low=0.0, high=1.0, high_open=True)


def _check_batch(name: str, batch_size: Any, dataset_size: Any = None) -> Any:
    """A batch size >= 1 (and <= dataset_size when both are concrete)."""
    check_value(name, batch_size, low=1.0)
    size, batch = concrete_float("dataset_size", dataset_size), concrete_float(name, batch_size)
    if dataset_size is not None and size is not None and batch is not None and batch > size:
        raise ValueError(f"{name} must be <= dataset_size ({size:g}), got {batch:g}.")
    return batch_size


def noise_scale(
    learning_rate: Any, dataset_size: Any, batch_size: Any, momentum: Any = 0.0
) -> jax.Array:
    """The noise scale of SGD with momentum (Smith et al. 2018).

    ``g = learning_rate * (dataset_size / batch_size - 1) / (1 - momentum)``, about
    ``lr N / (B (1 - m))`` when ``B << N``. Two runs with the same ``g`` see the same
    gradient noise; a run's ``g`` falls as the learning rate decays or the batch grows.

    Args:
      learning_rate: the learning rate, ``>= 0``.
      dataset_size: ``N``, the number of training examples, ``>= 1``.
      batch_size: ``B``, in ``[1, dataset_size]``.
      momentum: the heavy-ball momentum ``m``, in ``[0, 1)``.

    Returns:
      ``g`` as a float32 (or the inputs' float) scalar; arrays broadcast.

    Example:
      >>> g = noise_scale(0.1, dataset_size=50_000, batch_size=128, momentum=0.9)
      >>> float(g)  # doctest: +ELLIPSIS
      389.6...

    References:
      Smith, Kindermans, Ying & Le, `Don't Decay the Learning Rate, Increase the Batch Size
      <https://arxiv.org/abs/1711.00489>`_, ICLR 2018, eq. 1 and section 4.
    """
    check_value("learning_rate", learning_rate, low=0.0)
    check_value("dataset_size", dataset_size, low=1.0)
    _check_batch("batch_size", batch_size, dataset_size)
    _check_momentum("momentum", momentum)
    lr, n, b, m = (
        jnp.asarray(v, jnp.result_type(float))
        for v in (learning_rate, dataset_size, batch_size, momentum)
    )
    return lr * (n / b - 1.0) / (1.0 - m)


def batch_size_for_noise_scale(
    noise: Any, learning_rate: Any, dataset_size: Any, momentum: Any = 0.0
) -> jax.Array:
    """The batch size at which SGD has noise scale ``noise``: the inverse of :func:`noise_scale`.

    ``B = N / (1 + g (1 - m) / lr)``, solving ``g = lr (N / B - 1) / (1 - m)`` for ``B``. The
    result is a real number: round it (or take whole micro-batches) as the data allows.

    Args:
      noise: the target noise scale ``g``, ``>= 0``.
      learning_rate: the learning rate, ``> 0``.
      dataset_size: ``N``, ``>= 1``.
      momentum: in ``[0, 1)``.

    Returns:
      ``B`` in ``(0, N]`` as a float scalar.

    Example:
      >>> g = noise_scale(0.1, 50_000, 128)
      >>> round(float(batch_size_for_noise_scale(g, 0.1, 50_000)))
      128

    References:
      Smith, Kindermans, Ying & Le, `Don't Decay the Learning Rate, Increase the Batch Size
      <https://arxiv.org/abs/1711.00489>`_, ICLR 2018.
    """
    check_value("noise", noise, low=0.0)
    check_value("learning_rate", learning_rate, low=0.0, low_open=True)
    check_value("dataset_size", dataset_size, low=1.0)
    _check_momentum("momentum", momentum)
    g, lr, n, m = (
        jnp.asarray(v, jnp.result_type(float))
        for v in (noise, learning_rate, dataset_size, momentum)
    )
    return n / (1.0 + g * (1.0 - m) / lr)


def rescale_batch_size(
    batch_size: Any,
    dataset_size: Any,
    learning_rate: Any,
    new_learning_rate: Any,
    momentum: Any = 0.0,
    new_momentum: Any = None,
) -> jax.Array:
    """The batch size that keeps SGD's noise scale when the learning rate or momentum change.

    ``B' = batch_size_for_noise_scale(noise_scale(lr, N, B, m), lr', N, m')``: for ``B << N``
    about ``B * (lr' / lr) * (1 - m) / (1 - m')``. Raising momentum from 0.9 to 0.98 with the
    same rate needs a 5x batch (Smith et al. 2018, section 5.2).

    Args:
      batch_size: the current batch size ``B``, in ``[1, N]``.
      dataset_size: ``N``, ``>= 1``.
      learning_rate: the current learning rate, ``>= 0``.
      new_learning_rate: the new learning rate, ``> 0``.
      momentum: the current momentum, in ``[0, 1)``.
      new_momentum: the new momentum (default: ``momentum``), in ``[0, 1)``.

    Returns:
      ``B'`` as a float scalar (not rounded).

    Example:
      >>> round(float(rescale_batch_size(128, 50_000, 0.1, 0.4)))  # 4x the rate: ~4x the batch
      508

    References:
      Smith, Kindermans, Ying & Le, `Don't Decay the Learning Rate, Increase the Batch Size
      <https://arxiv.org/abs/1711.00489>`_, ICLR 2018.
    """
    check_value("new_learning_rate", new_learning_rate, low=0.0, low_open=True)
    if new_momentum is not None:
        _check_momentum("new_momentum", new_momentum)
    new_momentum = momentum if new_momentum is None else new_momentum
    noise = noise_scale(learning_rate, dataset_size, batch_size, momentum)
    return batch_size_for_noise_scale(noise, new_learning_rate, dataset_size, new_momentum)


def scale_learning_rate(
    learning_rate: Any, batch_size: Any, base_batch_size: Any, rule: str = "linear"
) -> Any:
    """The learning rate for ``batch_size``, given one tuned at ``base_batch_size``.

    ``rule="linear"``: ``lr * B / B0`` (Goyal et al. 2017; keeps SGD's noise scale, the
    ``lr / B`` ratio). Use it with a warmup: Goyal et al. ramp linearly from ``lr`` to the
    scaled rate over the first 5 epochs (``lrjax.warmup(schedule, warmup_steps,
    init_value=lr)``), because the large rate diverges while the network changes fast.
    ``rule="sqrt"``: ``lr * sqrt(B / B0)`` (keeps the gradient noise's variance per step;
    the rule for Adam-like optimizers, see :func:`scale_adam`).

    Args:
      learning_rate: the rate at ``base_batch_size``, ``>= 0``, a float or an optax schedule
        (then a schedule is returned).
      batch_size: the new batch size, ``>= 1``.
      base_batch_size: the batch size ``learning_rate`` was tuned at, ``>= 1``.
      rule: ``"linear"`` or ``"sqrt"``.

    Returns:
      The scaled learning rate (a schedule when ``learning_rate`` is one).

    Example:
      >>> round(float(scale_learning_rate(0.1, batch_size=8192, base_batch_size=256)), 6)
      3.2

    References:
      Goyal et al., `Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour
      <https://arxiv.org/abs/1706.02677>`_, 2017 (linear rule, gradual warmup);
      Krizhevsky, `One weird trick for parallelizing convolutional neural networks
      <https://arxiv.org/abs/1404.5997>`_, 2014 (square-root rule).
    """
    if not isinstance(rule, str) or rule not in _SCALING_RULES:
        raise ValueError(f"rule must be one of {_SCALING_RULES}, got {rule!r}.")
    check_value("batch_size", batch_size, low=1.0)
    check_value("base_batch_size", base_batch_size, low=1.0)
    ratio = jnp.asarray(batch_size, jnp.result_type(float)) / jnp.asarray(
        base_batch_size, jnp.result_type(float)
    )
    factor = ratio if rule == "linear" else jnp.sqrt(ratio)
    if callable(learning_rate):
        return lambda count: learning_rate(count) * factor
    learning_rate = check_value("learning_rate", learning_rate, low=0.0)
    return learning_rate * factor


def scale_adam(
    kappa: Any, learning_rate: Any, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8
) -> dict[str, Any]:
    """Adam's hyperparameters for a batch ``kappa`` times larger (Malladi et al. 2022).

    The square-root scaling rule keeps Adam's SDE approximation when the batch grows by
    ``kappa``: ``lr * sqrt(kappa)``, ``1 - kappa (1 - b1)``, ``1 - kappa (1 - b2)``,
    ``eps / sqrt(kappa)``. The betas stay valid only while ``kappa (1 - b) < 1``: a
    concrete ``kappa`` that makes a beta negative is refused.

    Args:
      kappa: the batch size ratio ``B / B0``, ``> 0`` (``< 1`` shrinks the batch).
      learning_rate: Adam's rate at the base batch, ``>= 0``.
      b1: first-moment decay at the base batch, in ``[0, 1)``.
      b2: second-moment decay at the base batch, in ``[0, 1)``.
      eps: Adam's epsilon at the base batch, ``>= 0``.

    Returns:
      ``{"learning_rate", "b1", "b2", "eps"}``, ready for ``optax.adam(**...)``.

    Example:
      >>> hp = scale_adam(4.0, 1e-3)
      >>> round(float(hp["learning_rate"]), 6), round(float(hp["b1"]), 6), round(float(hp["b2"]), 6)
      (0.002, 0.6, 0.996)

    References:
      Malladi, Lyu, Panigrahi & Arora, `On the SDEs and Scaling Rules for Adaptive Gradient
      Algorithms <https://arxiv.org/abs/2205.10287>`_, NeurIPS 2022, Definition 4.2.
    """
    check_value("kappa", kappa, low=0.0, low_open=True)
    learning_rate = check_value("learning_rate", learning_rate, low=0.0)
    for name, beta in (("b1", b1), ("b2", b2)):
        check_value(name, beta, low=0.0, high=1.0, high_open=True)
    eps = check_value("eps", eps, low=0.0)
    k = concrete_float("kappa", kappa)
    for name, beta in (("b1", b1), ("b2", b2)):
        value = concrete_float(name, beta)
        if k is not None and value is not None and 1.0 - k * (1.0 - value) < 0.0:
            raise ValueError(
                f"kappa must be <= 1 / (1 - {name}) = {1.0 / (1.0 - value):g} so that the scaled "
                f"{name} = 1 - kappa (1 - {name}) stays in [0, 1), got kappa={k:g}."
            )
        if k is not None and value is not None and not np.float32(1.0 - k * (1.0 - value)) < 1:
            raise ValueError(
                f"kappa={k:g} makes the scaled {name} = 1 - kappa (1 - {name}) = "
                f"{1.0 - k * (1.0 - value)!r}, which is 1.0 in float32: Adam would never move "
                f"(its {'first' if name == 'b1' else 'second'} moment never forgets); use a "
                f"kappa >= {float(np.finfo(np.float32).epsneg) / (1.0 - value):.3g}.")
    root = jnp.sqrt(jnp.asarray(kappa, jnp.result_type(float)))
    return {
        "learning_rate": learning_rate * root,
        "b1": 1.0 - kappa * (1.0 - b1),
        "b2": 1.0 - kappa * (1.0 - b2),
        "eps": eps / root,
    }


class BatchSizePlan(NamedTuple):
    """A batch-growth plan, one row per optimizer update (host numpy arrays).

    Attributes:
      micro_step: ``(U,)`` int, the base-batch step (micro-batch index) each update starts at.
      accumulation: ``(U,)`` int, micro-batches per update (its batch is this times the base).
      learning_rate: ``(U,)`` float32, the rate of each update.
      num_steps: the base-batch steps (micro-batches) the plan covers.
    """

    micro_step: np.ndarray
    accumulation: np.ndarray
    learning_rate: np.ndarray
    num_steps: int

    @property
    def num_updates(self) -> int:
        """The number of parameter updates: what the batch growth saves."""
        return len(self.accumulation)


def _check_batch_sizes(base_batch_size: Any, max_batch_size: Any) -> int:
    base = check_steps("base_batch_size", base_batch_size)
    top = check_steps("max_batch_size", max_batch_size)
    if top < base:
        raise ValueError(f"max_batch_size must be >= base_batch_size ({base}), got {top}.")
    return top // base


def _accumulation(reference: jax.Array, value: jax.Array, max_accumulation: int) -> jax.Array:
    """Whole micro-batches ``clip(floor(reference / value), 1, max_accumulation)``, as int32."""
    tiny = jnp.finfo(jnp.result_type(value)).tiny
    factor = reference / jnp.maximum(value, tiny) * (1.0 + _FACTOR_RTOL)
    # Clip before the cast: reference / tiny may be inf, and inf -> int32 is undefined.
    return jnp.floor(jnp.clip(factor, 1.0, float(max_accumulation))).astype(jnp.int32)


def _concrete_or_none(schedule: optax.Schedule) -> Any:
    """``schedule(0)`` when it evaluates to a concrete scalar, else None (traced values)."""
    try:
        value = schedule(0)
    except Exception:  # noqa: BLE001  a schedule that cannot run eagerly: nothing to check
        return None
    return None if is_traced(value) or np.size(value) != 1 else value


def batch_size_schedule(
    lr_schedule: optax.Schedule,
    base_batch_size: int,
    max_batch_size: int,
    *,
    num_steps: int | None = None,
    reference_value: Any = None,
) -> tuple[optax.Schedule, optax.Schedule]:
    """Increase the batch size instead of decaying the learning rate (Smith et al. 2018).

    Wherever ``lr_schedule`` would have fallen by a factor ``f = lr(0) / lr(t)``, the batch
    grows by ``f`` instead, in whole micro-batches of ``base_batch_size``:
    ``k = clip(floor(f), 1, K)`` with ``K = max_batch_size // base_batch_size``, and the rate
    becomes ``lr(t) * k``, so ``rate / batch = lr(t) / base_batch_size`` follows the original
    schedule's decay *exactly*. ``floor`` (not ``round``) keeps the rate at or below
    ``lr(0)``, the rate the user found stable; ``round`` would train at up to 1.33 ``lr(0)``
    (at ``f = 1.5``). Once the batch reaches ``K`` micro-batches, the rate decays instead.

    **How the schedules count.** ``optax.MultiSteps(opt, every_k_schedule)`` evaluates
    ``every_k_schedule`` at its ``gradient_step`` (the number of parameter updates done),
    and the wrapped optimizer's own count (the one its learning-rate schedule sees) also
    advances once per *update*, never per micro-batch. But ``lr_schedule`` is written in
    base-batch steps (data seen). So:

    * with ``num_steps`` (the original schedule's length in base-batch steps), both returned
      schedules take the **update count**: pass them as ``optax.MultiSteps(opt(lr), acc)``,
      feed one base batch per call, and the run sees the same data, with the batch growing
      at the same epochs the rate would have decayed. Values are tabulated on the host
      (:func:`batch_size_plan`); past the end they hold the last update's values.
    * without it, both take the **base-batch step** ``t`` (data seen / base batch), for a
      loop that counts micro-batches itself; do not hand these to ``MultiSteps``, which
      would stretch the schedule: update ``u`` starts at micro-batch ``sum_{j<u} k_j``,
      not ``u``.

    Args:
      lr_schedule: the learning-rate schedule at ``base_batch_size`` (non-increasing; a
        rate above ``reference_value`` keeps the base batch).
      base_batch_size: the micro-batch, an integer ``>= 1``.
      max_batch_size: the largest batch, ``>= base_batch_size``; batches are whole
        multiples of the base, so the largest is ``K * base_batch_size``.
      num_steps: base-batch steps of the original schedule; switches the returned schedules
        to the update count (for ``optax.MultiSteps``).
      reference_value: the rate the factor is measured from (default ``lr_schedule(0)``;
        with ``num_steps``, the running peak ``max_{s <= t} lr(s)``, so a warmup keeps the
        base batch). Without ``num_steps``, an ``lr_schedule(0)`` of 0 (a warmup from 0) is
        refused: the batch would never grow.

    Returns:
      ``(lr_schedule, accumulation_schedule)``: the rate (float32) and micro-batches per
      update (int32, ``>= 1``), both ``count -> value``.

    Example:
      >>> lr, acc = batch_size_schedule(optax.piecewise_constant_schedule(0.1, {30: 0.2}),
      ...                               base_batch_size=32, max_batch_size=256, num_steps=60)
      >>> opt = optax.MultiSteps(optax.sgd(lr, momentum=0.9), every_k_schedule=acc)
      >>> [int(acc(u)) for u in (0, 29, 30, 31)], round(float(lr(30)), 3)
      ([1, 1, 5, 5], 0.1)

    References:
      Smith, Kindermans, Ying & Le, `Don't Decay the Learning Rate, Increase the Batch Size
      <https://arxiv.org/abs/1711.00489>`_, ICLR 2018.
    """
    max_accumulation = _check_batch_sizes(base_batch_size, max_batch_size)
    if not callable(lr_schedule):
        raise TypeError(f"lr_schedule must be a schedule (count -> rate), got {lr_schedule!r}.")
    if reference_value is not None:
        check_value("reference_value", reference_value, low=0.0)
    if num_steps is None and reference_value is None:
        first = _concrete_or_none(lr_schedule)
        first = None if first is None else concrete_float("lr_schedule(0)", first)
        if first is not None and not first > 0:
            raise ValueError(
                f"lr_schedule(0) = {first:g}: the batch grows by lr(0) / lr(t), so from a rate "
                "of 0 (a warmup from 0) it would never grow. Pass reference_value= (the peak "
                "rate the decay is measured from) or num_steps= (the plan then measures each "
                "fall from the running peak).")
    if num_steps is not None:
        plan = batch_size_plan(
            lr_schedule, base_batch_size, max_batch_size, num_steps, reference_value=reference_value
        )
        rates = jnp.asarray(plan.learning_rate, jnp.float32)
        accumulation = jnp.asarray(plan.accumulation, jnp.int32)
        last = plan.num_updates - 1

        def _row(count: jax.typing.ArrayLike) -> jax.Array:
            # Clamped as every schedule clamps its count (no wrap of uint32 or int64 counts).
            return jnp.minimum(_integer_count(count), last)

        return (lambda count: rates[_row(count)]), (lambda count: accumulation[_row(count)])

    def _reference() -> jax.Array:
        return jnp.asarray(
            lr_schedule(0) if reference_value is None else reference_value, jnp.float32
        )

    def rate(count: jax.typing.ArrayLike) -> jax.Array:
        value = jnp.asarray(lr_schedule(count), jnp.float32)
        return value * _accumulation(_reference(), value, max_accumulation).astype(jnp.float32)

    def accumulation_schedule(count: jax.typing.ArrayLike) -> jax.Array:
        value = jnp.asarray(lr_schedule(count), jnp.float32)
        return _accumulation(_reference(), value, max_accumulation)

    return rate, accumulation_schedule


def batch_size_plan(
    lr_schedule: optax.Schedule,
    base_batch_size: int,
    max_batch_size: int,
    num_steps: int,
    *,
    reference_value: Any = None,
) -> BatchSizePlan:
    """The update-by-update plan behind :func:`batch_size_schedule` (host numpy).

    Walks the original schedule's ``num_steps`` base-batch steps: update ``u`` starts at
    micro-batch ``s_u`` (``s_0 = 0``, ``s_{u+1} = s_u + k_u``), accumulates
    ``k_u = clip(floor(peak(s_u) / lr(s_u)), 1, max_batch_size // base_batch_size)``, with
    ``peak(s) = max_{r <= s} lr(r)`` the running peak (``lr(0)`` for a decaying schedule; a
    warmup keeps the base batch)
    micro-batches and trains at ``lr(s_u) * k_u``. The last update takes the micro-batches
    that are left (fewer than ``k`` when ``k`` does not divide them), so the plan covers
    exactly ``num_steps`` micro-batches, each once.

    Args:
      lr_schedule: the learning-rate schedule at ``base_batch_size``; must be concrete
        (evaluated here, on the host).
      base_batch_size: the micro-batch, an integer ``>= 1``.
      max_batch_size: the largest batch, ``>= base_batch_size``.
      num_steps: base-batch steps to cover, ``>= 1``.
      reference_value: the rate the decay factor is measured from (default: the running
        peak ``peak(s)``).

    Returns:
      A :class:`BatchSizePlan`; ``plan.num_updates`` is the number of parameter updates.

    Example:
      >>> plan = batch_size_plan(lambda t: 0.1 * 0.1 ** (t // 50), 32, 1024, num_steps=150)
      >>> plan.num_updates  # 50 updates of 32, 5 of 320, then 1024 and the 576 left (rate / 10)
      57
      >>> plan.accumulation[-3:].tolist(), int(plan.accumulation.sum())
      ([10, 32, 18], 150)

    References:
      Smith, Kindermans, Ying & Le, `Don't Decay the Learning Rate, Increase the Batch Size
      <https://arxiv.org/abs/1711.00489>`_, ICLR 2018.
    """
    if not callable(lr_schedule):
        raise TypeError(f"lr_schedule must be a schedule (count -> rate), got {lr_schedule!r}.")
    max_accumulation = _check_batch_sizes(base_batch_size, max_batch_size)
    num_steps = check_steps("num_steps", num_steps)
    values = np.asarray(
        jax.jit(jax.vmap(lr_schedule))(jnp.arange(num_steps, dtype=jnp.int32)), np.float32
    )
    if values.shape != (num_steps,):
        raise ValueError(
            f"lr_schedule must return a scalar per count, got shape {values.shape[1:]}."
        )
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError("lr_schedule must give finite rates >= 0 over the num_steps steps.")
    if reference_value is None:
        # The fall is measured from the running peak: max_{s <= t} lr(s) / lr(t), which is
        # lr(0) / lr(t) for a decaying schedule and 1 during a warmup (a warmup from 0 has
        # lr(0) = 0 and would otherwise never grow the batch).
        reference = np.maximum.accumulate(values)
    else:
        if is_traced(reference_value):
            raise TypeError("reference_value must be concrete for batch_size_plan (a host table).")
        reference = np.float32(check_value("reference_value", reference_value, low=0.0))
    all_k = np.asarray(_accumulation(jnp.asarray(reference, jnp.float32), jnp.asarray(values),
                                     max_accumulation))
    starts, ks = [], []
    step = 0
    while step < num_steps:  # host loop over updates: at most num_steps rows
        starts.append(step)
        # The last update takes what is left, so the plan ends exactly at num_steps (its
        # rate still compensates: lr / batch stays exact).
        ks.append(min(int(all_k[step]), num_steps - step))
        step += ks[-1]
    starts_arr, ks_arr = np.asarray(starts, np.int64), np.asarray(ks, np.int64)
    rates = (values[starts_arr] * ks_arr.astype(np.float32)).astype(np.float32)
    return BatchSizePlan(starts_arr, ks_arr, rates, num_steps)
