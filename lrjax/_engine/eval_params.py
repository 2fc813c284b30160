"""The params a model is evaluated at: schedule-free optimizers evaluate elsewhere than they train.

A schedule-free optimizer (``optax.contrib.schedule_free``, ``schedule_free_sgd``,
``schedule_free_adamw``; Defazio et al. 2024) takes its gradients at an interpolation
``y = b1 x + (1 - b1) z`` of two sequences it keeps; ``y`` is what the params hold
during training, and the model to evaluate is the average ``x``
(``optax.contrib.schedule_free_eval_params``). Every place where lrjax evaluates or keeps
a model (the range test's ``val_data``, ``make_train_fn``'s ``eval_fn``, snapshot members,
SWA's average) goes through :func:`evaluation_params`, which finds the schedule-free
states inside any optimizer state (bare, in an ``optax.chain``, ``inject_hyperparams``,
``MultiSteps``, ``lrjax.swa``, ``optax.partition``) and gives the params unchanged for
every other optimizer. lrjax never rewrites the optimizer.
"""

from __future__ import annotations

from typing import Any

import jax
import optax

PyTree = Any

__all__ = ["evaluation_params"]


def _schedule_free_states(opt_state: optax.OptState) -> list[Any]:
    """The ``ScheduleFreeState`` nodes of ``opt_state``, outermost first."""
    kind = getattr(optax.contrib, "ScheduleFreeState", None)
    if kind is None:  # an optax without schedule-free optimizers
        return []
    nodes = jax.tree.leaves(opt_state, is_leaf=lambda node: isinstance(node, kind))
    return [node for node in nodes if isinstance(node, kind)]


def _is_masked(node: Any) -> bool:
    """An ``optax.masked``/``partition`` placeholder: a param the transformation does not see."""
    return type(node).__name__ == "MaskedNode"


def evaluation_params(opt_state: optax.OptState, params: PyTree) -> PyTree:
    """The params to evaluate the model at, given the optimizer state after training.

    ``x = (y - (1 - b1) z) / b1`` for the params each schedule-free state covers
    (``optax.contrib.schedule_free_eval_params``'s formula, applied leaf by leaf so that a
    schedule-free optimizer over part of the params, through ``optax.partition`` or
    ``optax.masked``, leaves the other params as they are); ``params`` itself when
    ``opt_state`` holds no schedule-free state. Pure: use it under ``jit``/``vmap``.

    Args:
      opt_state: the optimizer state (any pytree of optax states).
      params: the params the optimizer has been updating (``y`` for schedule-free).

    Returns:
      A pytree like ``params``.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> tx = optax.chain(optax.clip(1.0), optax.contrib.schedule_free_sgd(0.1))
      >>> params = {"w": jnp.ones(2)}
      >>> state = tx.init(params)
      >>> updates, state = tx.update({"w": jnp.ones(2)}, state, params)
      >>> x = evaluation_params(state, optax.apply_updates(params, updates))
      >>> [round(v, 6) for v in x["w"].tolist()]
      [0.9, 0.9]

    References:
      Defazio et al., `The Road Less Scheduled <https://arxiv.org/abs/2405.15682>`_,
      NeurIPS 2024.
    """
    for state in _schedule_free_states(opt_state):
        b1 = state.b1

        def at_average(z: Any, y: Any) -> Any:
            if _is_masked(z) or z is None:
                return y
            return ((y - (1.0 - b1) * z) / b1).astype(y.dtype)

        params = jax.tree.map(at_average, state.z, params,
                              is_leaf=lambda node: _is_masked(node) or node is None)
    return params
