"""Decoupled weight decay (Loshchilov & Hutter) and its normalized form.

The block here turns a descent *direction* (Adam's normalised moment, SGD's momentum
buffer, ...) into a parameter *update*, applying weight decay to the parameters the
optimizer was handed, ``theta_{t-1}``, never through the gradient. It serves every
decoupled optimizer in :mod:`lrjax.optim.aliases`, so the two weight-decay conventions
live in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
import jax.numpy as jnp
import optax

from lrjax._engine.checks import check_value

__all__ = [
    "DecoupledWeightDecayState",
    "decoupled_weight_decay",
    "effective_learning_rate",
    "normalized_weight_decay",
]

MaskOrFn = Any | Callable[[optax.Params], Any] | None


def _check_rate(name: str, value: Any, *, low: float = 0.0, **bounds: Any) -> Any:
    """A float hyperparameter that may also be a schedule: None refused, schedules passed.

    A number (Python, numpy, concrete JAX scalar) is checked by :func:`lrjax._engine.checks.check_value`
    (finite, float32-representable, ``>= low``); a traced value or a schedule passes through.

    Args:
      name: the argument's name, quoted in the message.
      value: a number, a JAX scalar (traced or not) or a schedule ``count -> value``.
      low: the smallest allowed value.
      **bounds: further keyword arguments of ``check_value`` (``high``, ``low_open``...).

    Returns:
      ``value`` unchanged.

    Example:
      >>> _check_rate("learning_rate", 1e-3)
      0.001
    """
    if value is None:
        raise TypeError(f"{name} must be a number or a schedule, got None.")
    if callable(value):
        return value
    return check_value(name, value, low=low, **bounds)


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
    weight_decay_norm = check_value("weight_decay_norm", weight_decay_norm, low=0.0)
    check_value("steps_per_period", steps_per_period, low=0.0, low_open=True)
    steps = jnp.asarray(steps_per_period, dtype=jnp.result_type(float))
    return weight_decay_norm * jax.lax.rsqrt(steps)


class DecoupledWeightDecayState(NamedTuple):
    """Step count, and the effective learning rate of the latest update (for logging).

    ``learning_rate`` is the factor on the direction, ``eta_t * alpha_t`` (``alpha_t``
    without a multiplier): after ``update`` the rate that step applied, after ``init`` the
    rate the first step will apply; in the params' widest float dtype (as
    ``optax.inject_hyperparams`` stores its values). Read it with
    :func:`effective_learning_rate`.
    """

    count: jax.Array  # int32 scalar
    learning_rate: jax.Array  # float scalar (the default float dtype)


def _value_at(value: optax.ScalarOrSchedule, count: jax.Array) -> Any:
    return value(count) if callable(value) else value


def _full_decay_mask(mask: MaskOrFn, params: optax.Params) -> Any:
    """A bool per params leaf: ``mask`` resolved (callable) and broadcast (prefix tree)."""
    if mask is None:
        return jax.tree.map(lambda _: True, params)
    prefix = mask(params) if callable(mask) else mask
    for keep in jax.tree.leaves(prefix):
        if not isinstance(keep, (bool, np.bool_)) and getattr(keep, "dtype", None) != np.bool_:
            raise TypeError(f"mask must be a pytree of bools (or a callable returning one), "
                            f"got a leaf {keep!r:.40}.")
    try:
        return jax.tree.map(lambda keep, sub: jax.tree.map(lambda _: keep, sub), prefix, params)
    except ValueError as error:
        raise ValueError(f"mask must have the params' structure or a prefix of it: "
                         f"{str(error).splitlines()[0]}") from None


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
    learning_rate = _check_rate("learning_rate", learning_rate)
    weight_decay = _check_rate("weight_decay", weight_decay)
    if multiplier is not None:
        multiplier = _check_rate("multiplier", multiplier)
    # A literal zero decay skips reading the params altogether.
    no_decay = isinstance(weight_decay, (int, float)) and weight_decay == 0

    def scales(count: jax.Array) -> tuple[Any, Any, jax.Array]:
        """Factors on the direction and on theta, and the effective learning rate."""
        lr = _value_at(learning_rate, count)
        decay = _value_at(weight_decay, count)
        # Both conventions are u = a d + b theta with scalars a, b: one multiply-add per
        # element, no more work than optax.adamw.
        if multiplier is None:
            step_size, decay_scale = lr, lr * decay
        else:
            eta = _value_at(multiplier, count)
            step_size, decay_scale = eta * lr, eta * decay
        return -step_size, -decay_scale, step_size

    def init_fn(params: optax.Params) -> DecoupledWeightDecayState:
        count = jnp.zeros([], jnp.int32)
        # Stored in the params' widest float dtype, as optax.inject_hyperparams does.
        dtype = optax.tree.dtype(params, "highest")
        if not jnp.issubdtype(dtype, jnp.floating):
            dtype = jnp.result_type(float)
        return DecoupledWeightDecayState(count, jnp.asarray(scales(count)[2], dtype))

    def update_fn(
        updates: optax.Updates, state: DecoupledWeightDecayState, params: optax.Params = None
    ) -> tuple[optax.Updates, DecoupledWeightDecayState]:
        if params is None:
            raise ValueError(
                "decoupled_weight_decay needs params: call update(grads, state, params)"
            )
        direction_scale, decay_scale, step_size = scales(state.count)

        def leaf_update(direction: Any, theta: Any, decays: bool) -> jax.Array:
            # Python-float leaves ({"w": 1.0}) work as in optax.
            direction, theta = jnp.asarray(direction), jnp.asarray(theta)
            dtype = jnp.promote_types(direction.dtype, theta.dtype)
            update = jnp.asarray(direction_scale, dtype) * direction
            if decays and not no_decay:
                update = update + jnp.asarray(decay_scale, dtype) * theta
            return update.astype(theta.dtype)

        new_updates = jax.tree.map(leaf_update, updates, params, _full_decay_mask(mask, params))
        new_state = DecoupledWeightDecayState(
            count=optax.safe_increment(state.count),
            learning_rate=jnp.asarray(step_size, state.learning_rate.dtype),
        )
        return new_updates, new_state

    return optax.GradientTransformation(init_fn, update_fn)


def effective_learning_rate(state: optax.OptState) -> jax.Array:
    r"""The effective learning rate in an optimizer state, for logging.

    For the decoupled optimizers (:func:`lrjax.adamw`, :func:`lrjax.sgdw`,
    :func:`lrjax.adamwr`, :func:`lrjax.sgdwr`) this is the factor their last update put
    on the direction, ``eta_t * alpha_t`` (``alpha_t`` without a multiplier): for the
    warm-restart forms, the learning rate times the SGDR multiplier. After ``init`` it is
    the rate of the first step. The state is searched through chains, ``MultiSteps``,
    ``inject_hyperparams`` and other wrappers; a state without a decoupled block but with
    an ``optax.inject_hyperparams`` ``learning_rate`` returns that one (so
    ``optax.inject_hyperparams(lrjax.amsgrad)`` works too).

    Args:
      state: an optimizer state (a pytree), possibly batched by ``vmap``.

    Returns:
      The effective learning rate, a scalar array (batched states give an array).

    Raises:
      ValueError: no learning rate can be read from ``state``, or more than one could.

    Example:
      >>> import lrjax
      >>> opt = lrjax.sgdwr(0.1, period_epochs=1, steps_per_epoch=4, weight_decay_norm=0.0)
      >>> params = {"w": jnp.ones(2)}
      >>> state = opt.init(params)
      >>> for _ in range(3):
      ...     updates, state = opt.update(params, state, params)
      >>> round(float(lrjax.effective_learning_rate(state)), 6)  # 0.1 * (1 + cos(pi * 2 / 4)) / 2
      0.05

    References:
      Loshchilov & Hutter, `Decoupled Weight Decay Regularization
      <https://arxiv.org/abs/1711.05101>`_, ICLR 2019.
    """
    decoupled = _nodes_of_type(state, DecoupledWeightDecayState)
    if len(decoupled) == 1:
        return decoupled[0].learning_rate
    if not decoupled:
        injected = [
            node.hyperparams["learning_rate"]
            for node in _nodes_of_type(state, _INJECT_STATES)
            if "learning_rate" in node.hyperparams
        ]
        if len(injected) == 1:
            return injected[0]
        if not injected:
            raise ValueError(
                "effective_learning_rate found no learning rate in this state: use an lrjax "
                "decoupled optimizer (adamw, sgdw, adamwr, sgdwr) or wrap the optimizer in "
                "optax.inject_hyperparams."
            )
    raise ValueError(
        "effective_learning_rate found several learning rates in this state (e.g. an "
        "optax.multi_transform): read each sub-state's own instead."
    )


# optax.inject_hyperparams returns InjectStatefulHyperparamsState (optax >= 0.2.4), older
# code InjectHyperparamsState; the two are unrelated classes.
_INJECT_STATES = tuple(
    getattr(optax, name)
    for name in ("InjectHyperparamsState", "InjectStatefulHyperparamsState")
    if hasattr(optax, name)
)


def _nodes_of_type(tree: Any, kind: type | tuple[type, ...]) -> list[Any]:
    """The sub-trees of ``tree`` that are instances of ``kind`` (outermost ones)."""
    return [n for n in jax.tree.leaves(tree, is_leaf=lambda n: isinstance(n, kind)) if isinstance(n, kind)]
