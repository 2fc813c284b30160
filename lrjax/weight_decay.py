"""Decoupled weight decay (Loshchilov & Hutter) and its normalized form.

The block here turns a descent *direction* (Adam's normalised moment, SGD's momentum
buffer, ...) into a parameter *update*, applying weight decay to the parameters the
optimizer was handed, ``theta_{t-1}``, never through the gradient. It serves every
decoupled optimizer in :mod:`lrjax.optimizers`, so the two weight-decay conventions
live in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = [
    "DecoupledWeightDecayState",
    "decoupled_weight_decay",
    "normalized_weight_decay",
]

MaskOrFn = Any | Callable[[optax.Params], Any] | None


def _check_hyperparameter(
    name: str, value: Any, allowed: str, is_allowed: Callable[[float], bool]
) -> None:
    """Raise ``ValueError`` when a concrete Python number breaks its allowed range.

    Schedules and arrays pass unchecked: under ``optax.inject_hyperparams`` the
    factories receive (possibly traced) arrays, and traced values cannot be tested.

    Args:
      name: the argument's name, quoted in the message.
      value: the argument.
      allowed: the allowed range in words, e.g. ``"in [0, 1)"``.
      is_allowed: predicate on the number; written so that NaN fails it.

    Returns:
      None.

    Example:
      >>> _check_hyperparameter("eps", 1e-8, ">= 0", lambda v: v >= 0)
    """
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if is_number and not is_allowed(value):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")


def normalized_weight_decay(
    weight_decay_norm: float | jax.Array, steps_per_period: int | jax.Array
) -> jax.Array:
    r"""Weight decay normalized by the number of steps in a (restart) period.

    .. math:: \lambda = \lambda_{norm} \sqrt{b / (B T)} = \lambda_{norm} / \sqrt{S}

    where ``b`` is the batch size, ``B`` the training-set size, ``T`` the period in
    epochs, so ``S = B T / b`` is the period's length in steps. Normalizing makes a
    good ``lambda_norm`` transfer across budgets and batch sizes.

    Args:
      weight_decay_norm: the normalized weight decay ``lambda_norm`` (>= 0).
      steps_per_period: ``S``, steps in the period (> 0); may be a traced array, e.g.
        the length of the current SGDR cycle.

    Returns:
      ``lambda`` as a scalar array (float32 unless x64 is on).

    Example:
      >>> float(normalized_weight_decay(0.05, 10_000))  # doctest: +ELLIPSIS
      0.0005...

    References:
      Loshchilov & Hutter, `Decoupled Weight Decay Regularization
      <https://arxiv.org/abs/1711.05101>`_, ICLR 2019, Appendix B.1.
    """
    _check_hyperparameter("weight_decay_norm", weight_decay_norm, ">= 0", lambda v: v >= 0)
    _check_hyperparameter("steps_per_period", steps_per_period, "> 0", lambda v: v > 0)
    steps = jnp.asarray(steps_per_period, dtype=jnp.result_type(float))
    return weight_decay_norm * jax.lax.rsqrt(steps)


class DecoupledWeightDecayState(NamedTuple):
    """Step count, at which the learning-rate, decay and multiplier schedules are read."""

    count: jax.Array  # int32 scalar


def _value_at(value: optax.ScalarOrSchedule, count: jax.Array) -> Any:
    return value(count) if callable(value) else value


def _full_decay_mask(mask: MaskOrFn, params: optax.Params) -> Any:
    """A bool per params leaf: ``mask`` resolved (callable) and broadcast (prefix tree)."""
    if mask is None:
        return jax.tree.map(lambda _: True, params)
    prefix = mask(params) if callable(mask) else mask
    return jax.tree.map(lambda keep, sub: jax.tree.map(lambda _: keep, sub), prefix, params)


def decoupled_weight_decay(
    learning_rate: optax.ScalarOrSchedule,
    weight_decay: optax.ScalarOrSchedule,
    *,
    multiplier: optax.ScalarOrSchedule | None = None,
    mask: MaskOrFn = None,
) -> optax.GradientTransformation:
    r"""Turn a descent direction ``d_t`` into an update with decoupled weight decay.

    With ``multiplier=None`` (optax / PyTorch convention: the decay scales with the
    learning rate ``alpha_t``):

    .. math:: u_t = -\alpha_t \, (d_t + \lambda_t \theta_{t-1})

    With a multiplier ``eta_t`` (the paper's schedule multiplier; the decay no longer
    depends on the learning rate):

    .. math:: u_t = -\eta_t \, (\alpha_t d_t + \lambda_t \theta_{t-1})

    ``theta_{t-1}`` are the ``params`` passed to ``update``. Leaves whose ``mask`` is
    False get no decay (but are still scaled). Updates have the params' dtypes.

    Args:
      learning_rate: ``alpha``, a float or a schedule of the step count.
      weight_decay: ``lambda`` (>= 0), a float or a schedule.
      multiplier: ``eta``, a float or a schedule; ``None`` picks the optax convention.
      mask: as in optax: a pytree of bools with the params' structure (or a prefix of
        it), or a callable returning one from the params; True means decay.

    Returns:
      An ``optax.GradientTransformation``; its ``update`` needs ``params``.

    Example:
      >>> import optax
      >>> opt = optax.chain(optax.trace(0.9), decoupled_weight_decay(0.1, 1e-4))

    References:
      Loshchilov & Hutter, `Decoupled Weight Decay Regularization
      <https://arxiv.org/abs/1711.05101>`_, ICLR 2019, Algorithms 1 and 2.
    """
    _check_hyperparameter("weight_decay", weight_decay, ">= 0", lambda v: v >= 0)
    _check_hyperparameter("multiplier", multiplier, ">= 0", lambda v: v >= 0)
    # A literal zero decay skips reading the params altogether.
    no_decay = isinstance(weight_decay, (int, float)) and weight_decay == 0

    def init_fn(params: optax.Params) -> DecoupledWeightDecayState:
        del params
        return DecoupledWeightDecayState(count=jnp.zeros([], jnp.int32))

    def update_fn(
        updates: optax.Updates, state: DecoupledWeightDecayState, params: optax.Params = None
    ) -> tuple[optax.Updates, DecoupledWeightDecayState]:
        if params is None:
            raise ValueError(
                "decoupled_weight_decay needs params: call update(grads, state, params)"
            )
        lr = _value_at(learning_rate, state.count)
        decay = _value_at(weight_decay, state.count)
        # Both conventions are u = a d + b theta with scalars a, b: one multiply-add per
        # element, no more work than optax.adamw.
        if multiplier is None:
            direction_scale, decay_scale = -lr, -lr * decay
        else:
            eta = _value_at(multiplier, state.count)
            direction_scale, decay_scale = -eta * lr, -eta * decay

        def leaf_update(direction: jax.Array, theta: jax.Array, decays: bool) -> jax.Array:
            dtype = jnp.promote_types(direction.dtype, theta.dtype)
            update = jnp.asarray(direction_scale, dtype) * direction
            if decays and not no_decay:
                update = update + jnp.asarray(decay_scale, dtype) * theta
            return update.astype(theta.dtype)

        new_updates = jax.tree.map(leaf_update, updates, params, _full_decay_mask(mask, params))
        return new_updates, DecoupledWeightDecayState(count=optax.safe_increment(state.count))

    return optax.GradientTransformation(init_fn, update_fn)
