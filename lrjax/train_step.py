"""The train step the range test runs, also public as :func:`make_train_step`.

Separate from ``range_test.py`` so the step (loss checks, gradient accumulation, optional
``pmean``, optimizer update) can be read and used on its own, in your own loops, ``jit``
or ``jax.pmap``, without the range test's compiled loop around it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

PyTree = Any
LossFn = Callable[[PyTree, PyTree], Any]
OptimizerFactory = Callable[..., optax.GradientTransformation]


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _checked_loss(loss_fn: LossFn, has_aux: bool) -> Callable[[PyTree, PyTree], tuple[jax.Array, Any]]:
    """``loss_fn`` as ``(params, batch) -> (loss, aux)``, with shape checks at trace time."""

    def loss_and_aux(params: PyTree, batch: PyTree) -> tuple[jax.Array, Any]:
        out = loss_fn(params, batch)
        if has_aux:
            if not (isinstance(out, (tuple, list)) and len(out) == 2):
                raise ValueError("has_aux=True: loss_fn must return a pair (loss, aux).")
            loss, aux = out
        else:
            if isinstance(out, (tuple, list)):
                raise ValueError("loss_fn returned a tuple; pass has_aux=True for (loss, aux).")
            loss, aux = out, None
        loss = jnp.asarray(loss)
        if loss.shape != () or not jnp.issubdtype(loss.dtype, jnp.floating):
            raise ValueError(
                f"loss_fn must return a scalar floating loss, got shape {loss.shape} and "
                f"dtype {loss.dtype}."
            )
        return loss, aux

    return loss_and_aux


def _loss_and_grads(loss_fn: LossFn, has_aux: bool, accumulation_steps: int, params: PyTree,
                    batch: PyTree) -> tuple[jax.Array, Any, PyTree]:
    """Loss, aux and gradient; with accumulation, means over the batch's leading micro axis."""
    grad_fn = jax.value_and_grad(_checked_loss(loss_fn, has_aux), has_aux=True)
    if accumulation_steps == 1:
        (loss, aux), grads = grad_fn(params, batch)
        return loss, aux, grads

    def add_micro_batch(total: tuple, micro_batch: PyTree) -> tuple[tuple, Any]:
        (loss, aux), grads = grad_fn(params, micro_batch)
        return jax.tree.map(jnp.add, total, (loss, grads)), aux

    first = jax.tree.map(lambda x: x[0], batch)
    (loss_shape, _), grad_shape = jax.eval_shape(grad_fn, params, first)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), (loss_shape, grad_shape))
    (loss_sum, grad_sum), auxs = jax.lax.scan(add_micro_batch, zeros, batch)
    # Every micro-batch has the same weight, so the mean gradient equals the gradient of
    # the mean loss over the k micro-batches (one big batch for a mean-reduced loss).
    mean = lambda x: x / accumulation_steps  # noqa: E731
    aux = jax.tree.map(lambda a: jnp.mean(a, axis=0), auxs)
    return mean(loss_sum), aux, jax.tree.map(mean, grad_sum)


def _train_step(tx: optax.GradientTransformation, loss_fn: LossFn, has_aux: bool,
                accumulation_steps: int, axis_name: str | None, params: PyTree,
                opt_state: optax.OptState, batch: PyTree
                ) -> tuple[PyTree, optax.OptState, jax.Array, Any]:
    loss, aux, grads = _loss_and_grads(loss_fn, has_aux, accumulation_steps, params, batch)
    if axis_name is not None:
        loss, grads = jax.lax.pmean((loss, grads), axis_name)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, aux


class TrainStep(NamedTuple):
    """A train step: ``init(params) -> opt_state`` and
    ``step(params, opt_state, batch) -> (params, opt_state, loss, aux)``."""

    init: Callable[[PyTree], optax.OptState]
    step: Callable[[PyTree, optax.OptState, PyTree], tuple[PyTree, optax.OptState, jax.Array, Any]]


def make_train_step(
    loss_fn: LossFn,
    optimizer: OptimizerFactory,
    learning_rate: optax.ScalarOrSchedule,
    *,
    has_aux: bool = False,
    accumulation_steps: int = 1,
    axis_name: str | None = None,
) -> TrainStep:
    """The range test's train step, for use in your own loops, ``jit`` or ``jax.pmap``.

    One step: ``g = mean_j grad loss_fn(params, batch[j])`` over ``accumulation_steps``
    micro-batches (the batch's leading axis when ``accumulation_steps > 1``), then
    ``g = pmean(g, axis_name)`` when ``axis_name`` is given (the loss is averaged the same
    way; aux is left per device), then the optimizer update.

    Args:
        loss_fn: ``(params, batch) -> loss`` or ``(loss, aux)`` with ``has_aux``.
        optimizer: factory taking ``learning_rate`` (e.g. ``optax.adam``).
        learning_rate: float or schedule, e.g. :func:`lr_ramp`.
        has_aux: whether ``loss_fn`` returns ``(loss, aux)``.
        accumulation_steps: micro-batches averaged per step (>= 1).
        axis_name: a ``pmap``/``shard_map`` axis to average gradients over.

    Returns:
        A :class:`TrainStep` ``(init, step)``.

    Example:
        >>> ts = make_train_step(loss_fn, optax.sgd, 0.1, axis_name="d")  # doctest: +SKIP
        >>> params, state, loss, _ = jax.pmap(ts.step, axis_name="d")(params, state, batch)  # doctest: +SKIP

    References:
        Goyal et al., "Accurate, Large Minibatch SGD", 2017 (gradient averaging).
    """
    _check_int("accumulation_steps", accumulation_steps, 1)
    tx = optimizer(learning_rate=learning_rate)
    step = functools.partial(_train_step, tx, loss_fn, has_aux, int(accumulation_steps), axis_name)
    return TrainStep(init=tx.init, step=step)
