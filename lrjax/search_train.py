"""The standard ``train_fn`` of a search: :func:`make_train_fn`.

A whole training is one ``lax.scan`` over steps, so ``jax.vmap`` turns it into a batch of
trainings. The hyperparameters arrive as traced scalars and go to ``optimizer_fn(hparams)``,
which builds the optimizer (and its schedules) from them inside the compiled program.

The training is also available in pieces (``init``, ``advance``, ``evaluate``) so that
successive halving can stop after some steps, keep the survivors' params and optimizer
state on device and continue them later (:mod:`lrjax.search_halving`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

PyTree = Any
Metrics = dict[str, jax.Array]


class TrialState(NamedTuple):
    """One trial's training in progress: what successive halving carries between rungs."""

    params: PyTree
    opt_state: PyTree
    data_key: jax.Array  # fixes this trial's order of the batches
    losses: jax.Array  # the last ``loss_window`` training losses (a ring buffer, NaN unfilled)


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


class TrainFn:
    """``train_fn(hparams, key) -> metrics``: a whole training, built by :func:`make_train_fn`.

    Calling it trains ``num_steps`` steps. :func:`lrjax.search` recognises it and passes
    ``data`` as an argument of the compiled program (not a constant baked into it).
    """

    def __init__(self, loss_fn: Callable, init_fn: Callable, optimizer_fn: Callable,
                 data: PyTree, num_steps: int, eval_fn: Callable | None, loss_window: int,
                 shuffle: bool, num_seeds: int = 1) -> None:
        self.loss_fn, self.init_fn, self.optimizer_fn = loss_fn, init_fn, optimizer_fn
        self.data, self.num_steps, self.eval_fn = data, num_steps, eval_fn
        self.loss_window, self.shuffle, self.num_seeds = loss_window, shuffle, num_seeds
        self.num_batches = int(jax.tree.leaves(data)[0].shape[0])
        self.default_objective = "eval_loss" if eval_fn is not None else "train_loss"

    # With num_seeds > 1 a trial is num_seeds trainings: every leaf of its TrialState has a
    # leading seed axis, and init / advance / evaluate vmap the one-seed pieces over it, so
    # successive halving carries and re-batches the seeds of a trial together.

    def init(self, hparams: Mapping[str, jax.Array], key: jax.Array) -> TrialState:
        """The trial's state before its first step: ``init_fn(key)`` and the optimizer's state.

        With ``num_seeds > 1``: one state per key of ``jax.random.split(key, num_seeds)``,
        stacked on a leading seed axis.
        """
        # One seed uses the key itself, so that num_seeds=1 is bit-for-bit as before.
        keys = key if self.num_seeds == 1 else jax.random.split(key, self.num_seeds)
        return self._per_seed(lambda k: self._init_one(hparams, k), keys)

    def _per_seed(self, one: Callable, tree: Any) -> Any:
        """``one(tree)`` for one seed, else ``one`` vmapped over ``tree``'s leading seed axis."""
        return one(tree) if self.num_seeds == 1 else jax.vmap(one)(tree)

    def _init_one(self, hparams: Mapping[str, jax.Array], key: jax.Array) -> TrialState:
        init_key, data_key = jax.random.split(key)
        params = self.init_fn(init_key)
        opt_state = self.optimizer_fn(hparams).init(params)
        losses = jnp.full((self.loss_window,), jnp.nan, jnp.float32)
        return TrialState(params, opt_state, data_key, losses)

    def advance(self, state: TrialState, hparams: Mapping[str, jax.Array], data: PyTree,
                start: jax.Array, num_steps: int | jax.Array) -> TrialState:
        """Train ``num_steps`` more steps from global step ``start``; both may be traced.

        A traced ``num_steps`` makes the loop a ``while_loop``, so one compiled program serves
        rungs of any length; a Python int makes it a ``scan``. Both do the same arithmetic.
        """
        return self._per_seed(lambda st: self._advance_one(st, hparams, data, start, num_steps),
                              state)

    def _advance_one(self, state: TrialState, hparams: Mapping[str, jax.Array], data: PyTree,
                     start: jax.Array, num_steps: int | jax.Array) -> TrialState:
        tx = self.optimizer_fn(hparams)
        if self.shuffle:
            order = jax.random.permutation(state.data_key, self.num_batches)
        else:
            order = jnp.arange(self.num_batches)
        start = jnp.asarray(start, jnp.int32)

        def step(i: jax.Array, carry: tuple) -> tuple:
            params, opt_state, window = carry
            t = start + i
            batch = jax.tree.map(lambda x: x[order[t % self.num_batches]], data)
            loss, grads = jax.value_and_grad(self.loss_fn)(params, batch)
            updates, opt_state = tx.update(grads, opt_state, params)
            # A ring buffer indexed by the global step: the last loss_window losses in any
            # split of the steps into rungs.
            window = window.at[t % self.loss_window].set(loss.astype(jnp.float32))
            return optax.apply_updates(params, updates), opt_state, window

        carry = (state.params, state.opt_state, state.losses)
        params, opt_state, window = jax.lax.fori_loop(0, num_steps, step, carry)
        return TrialState(params, opt_state, state.data_key, window)

    def evaluate(self, state: TrialState) -> Metrics:
        """``train_loss`` (mean of the last ``loss_window`` step losses) and ``eval_fn``'s metrics.

        With ``num_seeds > 1``: each metric's mean over the seeds (NaN if any seed's is NaN).
        """
        metrics = self._per_seed(self._evaluate_one, state)
        if self.num_seeds == 1:
            return metrics
        return {name: jnp.mean(value, axis=0) for name, value in metrics.items()}

    def _evaluate_one(self, state: TrialState) -> Metrics:
        metrics = {"train_loss": jnp.nanmean(state.losses)}
        if self.eval_fn is not None:
            out = self.eval_fn(state.params)
            if isinstance(out, Mapping):
                metrics.update(out)
            else:
                metrics["eval_loss"] = out
        return metrics

    def call_with_data(self, hparams: Mapping[str, jax.Array], key: jax.Array,
                       data: PyTree) -> Metrics:
        """The whole training on ``data`` (an argument, so ``jit`` does not embed it)."""
        state = self.init(hparams, key)
        return self.evaluate(self.advance(state, hparams, data, 0, self.num_steps))

    def __call__(self, hparams: Mapping[str, jax.Array], key: jax.Array) -> Metrics:
        return self.call_with_data(hparams, key, self.data)


def make_train_fn(
    loss_fn: Callable[[PyTree, PyTree], jax.Array],
    init_fn: Callable[[jax.Array], PyTree],
    optimizer_fn: Callable[[Mapping[str, jax.Array]], optax.GradientTransformation],
    data: PyTree,
    *,
    num_steps: int,
    eval_fn: Callable[[PyTree], Any] | None = None,
    loss_window: int = 10,
    shuffle: bool = True,
    num_seeds: int = 1,
) -> TrainFn:
    """Build the ``train_fn(hparams, key) -> metrics`` of :func:`lrjax.search` for a model.

    A trial splits its key into an init key and a data key: ``params = init_fn(init_key)``,
    ``tx = optimizer_fn(hparams)``, then ``num_steps`` steps
    ``params <- params + tx.update(grad loss_fn(params, batch_t))`` in one compiled loop, with
    ``batch_t = data[order[t mod B]]`` for a permutation ``order`` of the ``B`` stacked batches
    drawn from the data key (the identity when ``shuffle=False``).

    Args:
        loss_fn: ``loss_fn(params, batch) -> scalar loss``.
        init_fn: ``init_fn(key) -> params``, so each trial has its own initialisation.
        optimizer_fn: ``optimizer_fn(hparams) -> optax.GradientTransformation``; ``hparams`` is
            a dict of traced scalars, so build schedules from them with traceable factories
            (optax's, or lrjax's where they accept traced values).
        data: a pytree of arrays whose leading axis indexes ``B >= 1`` batches (e.g.
            :func:`lrjax.digits.stacked_batches`).
        num_steps: steps per trial, >= 1 (static).
        eval_fn: optional ``eval_fn(params) -> scalar`` (reported as ``eval_loss``) or a dict
            of scalars, evaluated on the final params (e.g. a validation loss).
        loss_window: ``train_loss`` is the mean of the last ``loss_window`` step losses.
        shuffle: draw each trial's batch order from its key.
        num_seeds: trainings per trial, >= 1 (static). With ``S > 1`` a trial splits its key
            into ``S`` keys (``jax.random.split(key, S)``), trains one model from each (its own
            init and batch order) vmapped in the same compiled program, and reports each
            metric's mean over the ``S`` trainings: an estimate of the hyperparameters'
            *expected* metric rather than one training's, whose held-out loss can vary by tens
            of percent from seed to seed. The search's trial keys then fix the seed sets; give
            every trial the same key (common random numbers) to compare hyperparameters on the
            same seeds. A trial fails (NaN) if any of its trainings does. Costs ``S`` times the
            compute of one training. ``1`` (the default) trains once from the trial's key.

    Returns:
        A :class:`TrainFn`; its metrics are ``{"train_loss", ...eval_fn's}`` (means over the
        seeds when ``num_seeds > 1``), and its default objective is ``eval_loss`` with a
        scalar ``eval_fn``, else ``train_loss``.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> data = {"x": jnp.ones((4, 8, 3)), "y": jnp.zeros((4, 8))}
        >>> loss = lambda w, b: jnp.mean((b["x"] @ w - b["y"]) ** 2)
        >>> train_fn = make_train_fn(loss, lambda k: jnp.ones(3), lambda h: optax.sgd(h["lr"]),
        ...                          data, num_steps=20)
        >>> float(train_fn({"lr": jnp.float32(0.1)}, jax.random.key(0))["train_loss"]) < 1e-3
        True
        >>> averaged = make_train_fn(loss, lambda k: jax.random.normal(k, (3,)),
        ...                          lambda h: optax.sgd(h["lr"]), data, num_steps=20, num_seeds=4)
        >>> averaged({"lr": jnp.float32(0.1)}, jax.random.key(0))["train_loss"].shape  # 4 inits
        ()

    References:
        Bergstra & Bengio, "Random Search for Hyper-Parameter Optimization", JMLR 2012.
        Bouthillier et al., "Accounting for Variance in Machine Learning Benchmarks", MLSys 2021
        (seed-to-seed variance of a training and averaging over seeds).
    """
    for name, fn in (("loss_fn", loss_fn), ("init_fn", init_fn), ("optimizer_fn", optimizer_fn)):
        if not callable(fn):
            raise TypeError(f"{name} must be callable, got {fn!r}.")
    if eval_fn is not None and not callable(eval_fn):
        raise TypeError(f"eval_fn must be callable or None, got {eval_fn!r}.")
    num_steps = _check_int("num_steps", num_steps, 1)
    loss_window = _check_int("loss_window", loss_window, 1)
    num_seeds = _check_int("num_seeds", num_seeds, 1)
    if not isinstance(shuffle, bool):
        raise TypeError(f"shuffle must be a bool, got {shuffle!r}.")
    leaves = jax.tree.leaves(data)
    if not leaves:
        raise ValueError("data is empty: give a pytree of arrays with a leading batch axis.")
    sizes = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in leaves}
    if None in sizes or len(sizes) != 1 or 0 in sizes:
        raise ValueError(
            "data's leaves must all have the same leading (batch) axis of length >= 1, got "
            f"shapes {[np.shape(leaf) for leaf in leaves]}."
        )
    data = jax.tree.map(jnp.asarray, data)
    return TrainFn(loss_fn, init_fn, optimizer_fn, data, num_steps, eval_fn, loss_window, shuffle,
                   num_seeds)
