"""One compiled-training step, shared by the range test and whole trainings.

A step computes ``g = mean_j grad loss(params, state_j, batch_j, key_j)`` over the
``accumulation_steps`` micro-batches (the state threaded through them in order, micro
key ``j`` = ``fold_in(key, j)``), averages ``loss`` and ``g`` over ``axis_name`` when
given (``pmean``), and applies the optimizer: ``params <- params + tx.update(g)``. The
state (batch statistics, nnx RNG counters) is carried, never optimized.

Three entry points, from low to high level:

* :func:`pure_train_step` ``(tx, loss, carry, batch, key)``: one step of a
  :class:`TrainCarry` for a loss in the pure form of :mod:`lrjax._engine.model`, with any
  optax transformation (the range test builds ``tx`` per curve inside its program);
* :func:`make_model_step`: from a user's ``loss_fn`` and params or nnx/Equinox model,
  the initial carry, a ``step(carry, batch, key)`` ready for ``lax.scan``, a
  deterministic ``evaluate`` and ``merge`` back to a model;
* :func:`make_train_step`: the plain ``(params, opt_state, batch)`` step for a
  stateless ``loss_fn(params, batch)``, for your own loops, ``jit`` or ``jax.pmap``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lrjax._engine.model import PureLoss, PureModel, pure_model

PyTree = Any
LossFn = Callable[..., Any]
OptimizerFactory = Callable[..., optax.GradientTransformation]


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


class TrainCarry(NamedTuple):
    """What a training loop carries from step to step."""

    params: PyTree  # trainable arrays
    opt_state: optax.OptState
    state: PyTree  # threaded, never optimized (None when there is none)


def _check_micro_axis(batch: PyTree, accumulation_steps: int) -> None:
    """With accumulation every batch leaf's leading axis is the micro-batch axis."""
    lengths = {np.shape(x)[0] if np.ndim(x) else None for x in jax.tree.leaves(batch)}
    if lengths != {accumulation_steps}:
        raise ValueError(
            f"accumulation_steps={accumulation_steps}: every batch leaf needs a leading "
            f"micro-batch axis of length {accumulation_steps}, got leading axes "
            f"{sorted(lengths, key=str)} (stack the micro-batches: shape "
            f"({accumulation_steps}, micro_batch, ...)).")


def _loss_and_grads(loss: PureLoss, accumulation_steps: int, params: PyTree, state: PyTree,
                    batch: PyTree, key: Any) -> tuple[jax.Array, PyTree, Any, PyTree]:
    """``(loss, new_state, aux, grads)``; with accumulation, means over the micro axis."""
    grad_fn = jax.value_and_grad(loss, has_aux=True)
    if accumulation_steps == 1:
        (value, (state, aux)), grads = grad_fn(params, state, batch, key)
        return value, state, aux, grads
    _check_micro_axis(batch, accumulation_steps)

    def micro(carry: tuple, xs: tuple) -> tuple[tuple, Any]:
        total, state = carry
        micro_batch, j = xs
        micro_key = None if key is None else jax.random.fold_in(key, j)
        (value, (state, aux)), grads = grad_fn(params, state, micro_batch, micro_key)
        return (jax.tree.map(jnp.add, total, (value, grads)), state), aux

    first = jax.tree.map(lambda x: x[0], batch)
    (value_shape, _), grad_shape = jax.eval_shape(grad_fn, params, state, first, key)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), (value_shape, grad_shape))
    indices = jnp.arange(accumulation_steps, dtype=jnp.uint32)
    ((value_sum, grad_sum), state), auxs = jax.lax.scan(micro, (zeros, state), (batch, indices))
    # Every micro-batch has the same weight, so the mean gradient equals the gradient of
    # the mean loss over the k micro-batches (one big batch for a mean-reduced loss).
    mean = lambda x: x / accumulation_steps  # noqa: E731
    aux = jax.tree.map(lambda a: jnp.mean(a, axis=0), auxs)
    return mean(value_sum), state, aux, jax.tree.map(mean, grad_sum)


def _update(tx: optax.GradientTransformation, grads: PyTree, opt_state: optax.OptState,
            params: PyTree, value: jax.Array) -> tuple[PyTree, optax.OptState]:
    """``tx.update``; a transformation that takes extra arguments also gets ``value=loss``.

    optax's convention (``GradientTransformationExtraArgs``): ``optax.contrib.
    reduce_on_plateau`` reads the loss from ``value``, and ``chain`` and
    ``inject_hyperparams`` hand extra arguments to their inner transforms, which drop
    those they do not take. A plain ``GradientTransformation`` gets none.
    """
    if isinstance(tx, optax.GradientTransformationExtraArgs):
        return tx.update(grads, opt_state, params, value=value)
    return tx.update(grads, opt_state, params)


def pure_train_step(tx: optax.GradientTransformation, loss: PureLoss, carry: TrainCarry,
                    batch: PyTree, key: Any = None, *, accumulation_steps: int = 1,
                    axis_name: str | None = None) -> tuple[TrainCarry, jax.Array, Any]:
    """One optimizer step of ``carry`` on ``batch`` (pure; ``jit``/``vmap``/``scan`` it).

    ``g = mean_j grad loss(params, state, batch[j], fold_in(key, j))`` (``batch`` itself
    when ``accumulation_steps == 1``), ``pmean`` of loss and ``g`` over ``axis_name``,
    then ``params <- optax.apply_updates(params, tx.update(g, opt_state, params))``; an
    optimizer that takes extra arguments (``optax.GradientTransformationExtraArgs``, e.g.
    ``optax.contrib.reduce_on_plateau``) is also given ``value=loss``.

    Args:
        tx: the optimizer.
        loss: ``(params, state, batch, key) -> (loss, (new_state, aux))``, e.g.
            ``pure_model(...).loss``.
        carry: the :class:`TrainCarry` before the step.
        batch: one batch; with accumulation, micro-batches stacked on a leading axis of
            length ``accumulation_steps``.
        key: the step's PRNG key (``None`` for a deterministic loss).
        accumulation_steps: micro-batches averaged per step (static).
        axis_name: a ``pmap``/``shard_map`` axis to average loss and gradient over (the
            state and aux stay per device).

    Returns:
        ``(carry, loss, aux)`` after the step; ``loss`` was evaluated before the update.

    Example:
        >>> import optax, jax.numpy as jnp
        >>> pm = pure_model(lambda p, b: jnp.sum((p - b) ** 2), jnp.zeros(2))
        >>> tx = optax.sgd(0.25)
        >>> carry = TrainCarry(pm.params, tx.init(pm.params), pm.state)
        >>> carry, loss, _ = pure_train_step(tx, pm.loss, carry, jnp.ones(2))
        >>> float(loss), carry.params.tolist()
        (2.0, [0.5, 0.5])

    References:
        Goyal et al., "Accurate, Large Minibatch SGD", 2017 (gradient averaging).
    """
    value, state, aux, grads = _loss_and_grads(loss, accumulation_steps, carry.params,
                                               carry.state, batch, key)
    if axis_name is not None:
        value, grads = jax.lax.pmean((value, grads), axis_name)
    updates, opt_state = _update(tx, grads, carry.opt_state, carry.params, value)
    return TrainCarry(optax.apply_updates(carry.params, updates), opt_state, state), value, aux


class ModelStep(NamedTuple):
    """A compiled-training step for a model; see :func:`make_model_step`."""

    carry: TrainCarry  # the initial carry
    step: Callable[..., tuple[TrainCarry, jax.Array, Any]]  # (carry, batch, key=None)
    evaluate: Callable[[TrainCarry, PyTree], jax.Array] | None  # (carry, batch) -> loss
    merge: Callable[[TrainCarry], Any]  # carry -> model (nnx / Equinox) or params
    model: PureModel


def make_model_step(
    loss_fn: LossFn,
    params: Any,
    optimizer: OptimizerFactory | optax.GradientTransformation,
    learning_rate: optax.ScalarOrSchedule | None = None,
    *,
    state: PyTree = None,
    has_aux: bool = False,
    stochastic: bool = False,
    eval_fn: Callable | None = None,
    accumulation_steps: int = 1,
    axis_name: str | None = None,
) -> ModelStep:
    """A train step for params, linen state, dropout keys, or an nnx / Equinox model.

    The step is :func:`pure_train_step` on the pure form of ``loss_fn`` (see
    :func:`lrjax.pure_model`): ``params`` may be a pytree (``loss_fn(params, batch)``;
    with ``state=``: ``loss_fn(params, state, batch) -> (loss, new_state)``), an
    ``nnx.Module`` or an ``eqx.Module`` (``loss_fn(model, batch)``). With
    ``stochastic=True`` ``loss_fn`` gets ``key=``: pass ``step(carry, batch, key)`` a
    fresh key each step (e.g. ``fold_in(key, step)``). nnx RNG streams live in the
    carry's state and advance every step. The user's params and model are not mutated.

    Args:
        loss_fn: the loss, as above; ``has_aux`` adds aux (``(loss, (new_state, aux))``
            with state).
        params: params pytree or model.
        optimizer: a factory taking ``learning_rate`` (with ``learning_rate``), or a
            ready ``GradientTransformation`` (``learning_rate=None``).
        learning_rate: float or schedule for the factory.
        state: initial threaded state (linen ``batch_stats``, ``eqx.nn.State``).
        has_aux: ``loss_fn`` returns aux.
        stochastic: ``loss_fn`` takes a keyword ``key``.
        eval_fn: deterministic evaluation for ``evaluate`` (default ``loss_fn``; nnx /
            Equinox models in eval/inference mode).
        accumulation_steps: micro-batches per step (leading batch axis).
        axis_name: ``pmap``/``shard_map`` axis to average gradients over.

    Returns:
        A :class:`ModelStep` ``(carry, step, evaluate, merge, model)``.

    Example:
        >>> import optax, jax, jax.numpy as jnp
        >>> def loss_fn(p, s, b):  # a running count as the state
        ...     return jnp.sum((p - b) ** 2), s + 1
        >>> ms = make_model_step(loss_fn, jnp.zeros(2), optax.sgd, 0.25, state=jnp.int32(0))
        >>> carry, losses = jax.lax.scan(lambda c, b: ms.step(c, b)[:2], ms.carry, jnp.ones((3, 2)))
        >>> int(carry.state), losses.round(3).tolist()
        (3, [2.0, 0.5, 0.125])

    References:
        Goyal et al., "Accurate, Large Minibatch SGD", 2017 (gradient averaging).
    """
    _check_int("accumulation_steps", accumulation_steps, 1)
    model = pure_model(loss_fn, params, state=state, has_aux=has_aux, stochastic=stochastic,
                       eval_fn=eval_fn)
    if isinstance(optimizer, optax.GradientTransformation):
        if learning_rate is not None:
            raise ValueError("learning_rate: give it with an optimizer factory, not with a "
                             "ready GradientTransformation.")
        tx = optimizer
    else:
        if learning_rate is None:
            raise ValueError("learning_rate is needed with an optimizer factory.")
        tx = optimizer(learning_rate=learning_rate)
    k = int(accumulation_steps)

    def step(carry: TrainCarry, batch: PyTree, key: Any = None) -> tuple:
        if stochastic and key is None:
            raise ValueError("stochastic=True: pass step(carry, batch, key) a fresh key.")
        return pure_train_step(tx, model.loss, carry, batch, key if stochastic else None,
                               accumulation_steps=k, axis_name=axis_name)

    evaluate = (None if model.evaluate is None else
                lambda carry, batch: model.evaluate(carry.params, carry.state, batch))
    carry = TrainCarry(model.params, tx.init(model.params), model.state)
    return ModelStep(carry=carry, step=step, evaluate=evaluate,
                     merge=lambda carry: model.merge(carry.params, carry.state), model=model)


class TrainStep(NamedTuple):
    """A train step: ``init(params) -> opt_state`` and
    ``step(params, opt_state, batch) -> (params, opt_state, loss, aux)``."""

    init: Callable[[PyTree], optax.OptState]
    step: Callable[[PyTree, optax.OptState, PyTree], tuple[PyTree, optax.OptState, jax.Array, Any]]


def _plain_step(tx: optax.GradientTransformation, loss: PureLoss, accumulation_steps: int,
                axis_name: str | None, params: PyTree, opt_state: optax.OptState,
                batch: PyTree) -> tuple[PyTree, optax.OptState, jax.Array, Any]:
    carry, value, aux = pure_train_step(tx, loss, TrainCarry(params, opt_state, None), batch,
                                        accumulation_steps=accumulation_steps,
                                        axis_name=axis_name)
    return carry.params, carry.opt_state, value, aux


def make_train_step(
    loss_fn: LossFn,
    optimizer: OptimizerFactory,
    learning_rate: optax.ScalarOrSchedule,
    *,
    has_aux: bool = False,
    accumulation_steps: int = 1,
    axis_name: str | None = None,
) -> TrainStep:
    """The range test's train step for a stateless ``loss_fn(params, batch)``.

    One step: ``g = mean_j grad loss_fn(params, batch[j])`` over ``accumulation_steps``
    micro-batches (the batch's leading axis when ``accumulation_steps > 1``), then
    ``g = pmean(g, axis_name)`` when ``axis_name`` is given (the loss is averaged the same
    way; aux is left per device), then the optimizer update. For state, dropout keys or
    nnx / Equinox models use :func:`make_model_step`.

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
        >>> import optax, jax.numpy as jnp
        >>> ts = make_train_step(lambda p, b: jnp.sum((p - b) ** 2), optax.sgd, 0.25)
        >>> params, opt_state, loss, _ = ts.step(jnp.zeros(2), ts.init(jnp.zeros(2)), jnp.ones(2))
        >>> params.tolist(), float(loss)
        ([0.5, 0.5], 2.0)

    References:
        Goyal et al., "Accurate, Large Minibatch SGD", 2017 (gradient averaging).
    """
    _check_int("accumulation_steps", accumulation_steps, 1)
    tx = optimizer(learning_rate=learning_rate)
    loss = pure_model(loss_fn, None, has_aux=has_aux).loss
    step = functools.partial(_plain_step, tx, loss, int(accumulation_steps), axis_name)
    return TrainStep(init=tx.init, step=step)
