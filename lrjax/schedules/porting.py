"""Porting from PyTorch: the schedule and optimizer forms PyTorch users expect.

Four small pieces fill the gaps between ``torch.optim.lr_scheduler`` and optax; everything
else maps onto an lrjax or optax call (see the table of docs/tutorials/porting_pytorch.md):

* :func:`per_epoch`: step any schedule once per epoch, as a per-epoch ``scheduler.step()``;
* :func:`linear_factor`: ``LinearLR``'s factor form (``start_factor`` -> ``end_factor``);
* :func:`chain_schedules`: ``ChainedScheduler``, the product of multiplicative schedules;
* :func:`with_cycled_momentum`: an optimizer whose momentum (``b1`` for Adam) follows a
  schedule, as ``CyclicLR`` / ``OneCycleLR`` with ``cycle_momentum=True`` (their default).

All return optax objects (a schedule, or a ``GradientTransformation``), pure and jittable;
value-like arguments may be traced.

From Hugging Face ``transformers`` and timm (``lr`` the optimizer's base rate; tested
against both, recorded and live: tests/test_wsd.py, tests/test_inverse_sqrt.py):

* ``get_wsd_schedule(opt, num_warmup_steps=W, num_decay_steps=D, num_training_steps=T,
  warmup_type, decay_type, min_lr_ratio=r)`` -> ``lrjax.wsd(lr, T, warmup_steps=W,
  decay_steps=D, warmup=warmup_type, decay=decay_type, min_value=r * lr,
  init_value=r * lr)``; with ``num_stable_steps=S`` instead of ``T``: ``T = W + S + D``;
* ``get_inverse_sqrt_schedule(opt, num_warmup_steps=W, timescale=None)`` ->
  ``lrjax.inverse_sqrt(lr, W, timescale)``;
* timm ``WSDLRScheduler(opt, t_initial, decay_t, lr_min, warmup_t=W, warmup_lr_init,
  decay_fn)`` -> ``lrjax.wsd(lr, W + t_initial, warmup_steps=W, decay_steps=decay_t,
  min_value=lr_min, init_value=warmup_lr_init, decay=decay_fn)``; with
  ``stable_fn="rsqrt", stable_timescale=tau``: ``lrjax.wsd_cooldown(lrjax.inverse_sqrt(lr,
  W, tau), W + t_initial - decay_t, decay_t, decay=decay_fn, min_value=lr_min)``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from lrjax._engine.checks import check_steps, check_value
from lrjax._engine.schedule_math import _float_dtype, _integer_count

__all__ = ["chain_schedules", "linear_factor", "per_epoch", "with_cycled_momentum"]


def per_epoch(schedule: optax.Schedule, steps_per_epoch: int) -> optax.Schedule:
    r"""Make ``schedule`` step once per epoch: its value at ``floor(t / steps_per_epoch)``.

    .. math:: s_{epoch}(t) = s(\lfloor t / n \rfloor)

    PyTorch schedulers are usually stepped once per epoch (``scheduler.step()`` after the
    epoch's batches), so their ``T_max``, ``step_size``, ``milestones`` count epochs and
    the learning rate is constant within an epoch. Wrap the lrjax/optax schedule built with
    the same epoch counts to get exactly that; optax counts optimizer steps.

    Args:
      schedule: any schedule of the epoch index (``count -> value``).
      steps_per_epoch: optimizer steps per epoch ``n``, an integer >= 1.

    Returns:
      A schedule of the optimizer step count; the count is floored division in int32
      (clamped to ``[0, 2**31 - 1]``), so epoch switches are exact.

    Example:
      >>> import lrjax
      >>> sched = per_epoch(lrjax.step_decay(0.1, step_size=30, gamma=0.1), steps_per_epoch=390)
      >>> [round(float(sched(t)), 6) for t in (0, 390 * 30 - 1, 390 * 30)]
      [0.1, 0.1, 0.01]

    References:
      PyTorch, `How to adjust learning rate
      <https://pytorch.org/docs/stable/optim.html#how-to-adjust-learning-rate>`_.
    """
    if not callable(schedule):
        raise TypeError(f"schedule must be a schedule (count -> value), got {schedule!r}.")
    steps_per_epoch = check_steps("steps_per_epoch", steps_per_epoch)

    def epoch_schedule(count: jax.typing.ArrayLike) -> jax.Array:
        return schedule(_integer_count(count) // steps_per_epoch)

    return epoch_schedule


def linear_factor(
    base_value: Any,
    start_factor: Any = 1.0 / 3,
    end_factor: Any = 1.0,
    total_iters: int = 5,
) -> optax.Schedule:
    r"""PyTorch ``LinearLR``: the base value times a factor moving linearly, then held.

    .. math::
        f(t) = s + (e - s) \min(t, T) / T, \qquad value(t) = base \cdot f(t)

    Computed as ``s (1 - w) + e w`` with ``w = min(t, T) / T``, so both ends are exact.

    Args:
      base_value: the optimizer's base learning rate (PyTorch's ``lr``), finite, >= 0.
      start_factor: ``s``, in (0, 1] (PyTorch's range).
      end_factor: ``e``, in [0, 1].
      total_iters: ``T``, steps (or epochs, with :func:`per_epoch`) to reach ``e``, >= 1.

    Returns:
      A schedule ``count -> value`` (default float dtype).

    Example:
      >>> sched = linear_factor(0.1, start_factor=0.25, total_iters=4)  # warm up over 4 steps
      >>> [round(float(sched(t)), 6) for t in range(6)]
      [0.025, 0.04375, 0.0625, 0.08125, 0.1, 0.1]

    References:
      PyTorch, `LinearLR
      <https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.LinearLR.html>`_.
    """
    base_value = check_value("base_value", base_value, low=0.0)
    check_value("start_factor", start_factor, low=0.0, high=1.0, low_open=True)
    check_value("end_factor", end_factor, low=0.0, high=1.0)
    total_iters = check_steps("total_iters", total_iters)

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        steps = jnp.minimum(_integer_count(count), total_iters)
        weight = steps.astype(_float_dtype()) / total_iters
        return base_value * (start_factor * (1.0 - weight) + end_factor * weight)

    return schedule


def chain_schedules(*schedules: optax.Schedule) -> optax.Schedule:
    r"""PyTorch ``ChainedScheduler``: the product of the schedules' values.

    .. math:: value(t) = \prod_i s_i(t)

    PyTorch's chained schedulers each multiply the current learning rate by their own
    factor, so the chain is the product of the factor schedules (for the multiplicative
    schedulers: ``ConstantLR``, ``LinearLR``, ``ExponentialLR``, ``StepLR``,
    ``MultiStepLR``, ``MultiplicativeLR``). Give the base learning rate to one of them
    and write the others as factors (a schedule whose start value is 1, or
    :func:`linear_factor` with ``base_value=1``).

    Args:
      *schedules: one or more schedules (or constants).

    Returns:
      A schedule ``count -> value``.

    Example:
      >>> import lrjax
      >>> sched = chain_schedules(lrjax.exponential_decay(0.1, 0.9),
      ...                         linear_factor(1.0, start_factor=0.5, total_iters=2))
      >>> [round(float(sched(t)), 6) for t in range(4)]
      [0.05, 0.0675, 0.081, 0.0729]

    References:
      PyTorch, `ChainedScheduler
      <https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.ChainedScheduler.html>`_.
    """
    if not schedules:
        raise ValueError("chain_schedules needs at least one schedule.")
    for i, schedule in enumerate(schedules):
        if not callable(schedule):
            check_value(f"schedules[{i}]", schedule)

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        value = jnp.ones(jnp.shape(count), _float_dtype())
        for s in schedules:
            value = value * (s(count) if callable(s) else s)
        return value

    return schedule


# The momentum argument of common factories, by name, in the order tried.
_MOMENTUM_NAMES = ("momentum", "b1", "beta1", "beta")


def with_cycled_momentum(
    factory: Callable[..., optax.GradientTransformation],
    learning_rate: optax.ScalarOrSchedule,
    momentum: optax.ScalarOrSchedule,
    *,
    momentum_name: str | None = None,
    static_args: tuple[str, ...] = (),
    **kwargs: Any,
) -> optax.GradientTransformation:
    r"""An optimizer whose learning rate and momentum (or Adam's ``b1``) follow schedules.

    PyTorch's ``CyclicLR`` and ``OneCycleLR`` cycle the momentum inversely to the learning
    rate by default (``cycle_momentum=True``): the optimizer's ``momentum`` for SGD,
    ``betas[0]`` for Adam/AdamW. This builds
    ``optax.inject_hyperparams(factory)(learning_rate=..., <momentum_name>=momentum, **kwargs)``:
    both schedules are read at the step count before each update, as PyTorch reads them,
    and their current values are in ``state.hyperparams`` (log them from there).

    Args:
      factory: an optimizer factory, e.g. ``optax.sgd``, ``optax.adam``, ``optax.adamw``,
        ``lrjax.sgdw``, ``lrjax.adamw``.
      learning_rate: the learning-rate schedule (e.g. :func:`lrjax.one_cycle`).
      momentum: the momentum schedule (e.g. :func:`lrjax.one_cycle_momentum` or
        :func:`lrjax.cyclic_momentum`), or a constant.
      momentum_name: the factory's momentum argument; by default the first of
        ``momentum``, ``b1``, ``beta1``, ``beta`` that the factory takes.
      static_args: passed to ``optax.inject_hyperparams`` (arguments kept static).
      **kwargs: further arguments of ``factory`` (e.g. ``nesterov=True``,
        ``weight_decay=1e-4``).

    Returns:
      An ``optax.GradientTransformation`` (an ``inject_hyperparams`` one).

    Example:
      >>> import lrjax
      >>> opt = with_cycled_momentum(optax.sgd, lrjax.one_cycle(0.1, 1000),
      ...                            lrjax.one_cycle_momentum(1000))
      >>> state = opt.init({"w": jnp.zeros(3)})
      >>> round(float(state.hyperparams["momentum"]), 6)
      0.95

    References:
      Smith, `A disciplined approach to neural network hyper-parameters: Part 1
      <https://arxiv.org/abs/1803.09820>`_, 2018 (Section 4.5, cyclical momentum).
    """
    if not callable(factory):
        raise TypeError(f"factory must be an optimizer factory, got {factory!r}.")
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # builtins without a signature
        parameters = {}
    if momentum_name is None:
        found = [name for name in _MOMENTUM_NAMES if name in parameters]
        if not found:
            raise ValueError(
                f"{getattr(factory, '__name__', factory)!r} takes none of {_MOMENTUM_NAMES}: "
                "pass momentum_name= (the factory's momentum argument)."
            )
        momentum_name = found[0]
    elif parameters and momentum_name not in parameters:
        raise ValueError(f"momentum_name={momentum_name!r} is not an argument of {factory!r}.")
    if "learning_rate" not in parameters and parameters:
        raise ValueError(f"{factory!r} takes no learning_rate argument.")
    if learning_rate is None or not callable(learning_rate):
        learning_rate = check_value("learning_rate", learning_rate, low=0.0)
    if momentum is None or not callable(momentum):
        momentum = check_value("momentum", momentum, low=0.0)
    return optax.inject_hyperparams(factory, static_args=static_args)(
        learning_rate=learning_rate, **{momentum_name: momentum}, **kwargs
    )
