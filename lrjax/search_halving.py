"""Successive halving: stop the worse trials early, continue the rest on device.

All trials train ``r_0`` steps; the best ``1/eta`` of them continue to ``r_1 = eta r_0``,
and so on until ``num_steps`` (Jamieson & Talwalkar 2016; the rungs of Li et al. 2018's
Hyperband brackets). Between rungs the survivors' params and optimizer states stay on the
device: they are gathered by index into new batches (re-batched) and trained on from the
step they reached, so a survivor's final metrics equal those of the same trial trained
without stops. One program is compiled per rung length (plus one for initialisation).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from lrjax.search import (
    check_direction,
    check_int,
    check_method,
    default_batch_size,
    progress_reporter,
    resolve_objective,
)
from lrjax.search_result import PRUNED, SearchResult, make_trial
from lrjax.search_runner import (
    StructureRecorder,
    check_mesh,
    host_seed,
    padded_indices,
    root_key,
    trial_sharding,
)
from lrjax.search_space import HOST_METHODS, Space, as_arrays, check_space, sample_params
from lrjax.search_train import TrainFn


def rung_plan(num_trials: int, num_steps: int, reduction_factor: int,
              min_steps: int | None) -> list[tuple[int, int]]:
    """``[(trials, steps), ...]`` per rung: trials shrink by ``eta``, steps grow by ``eta``.

    The number of rungs ``K`` is the largest with ``num_trials // eta**(K-1) >= 1`` and
    ``num_steps / eta**(K-1) >= min_steps`` (default 1); rung ``k`` trains to
    ``round(num_steps / eta**(K-1-k))`` steps and keeps ``num_trials // eta**k`` trials.

    Example:
        >>> rung_plan(27, 81, 3, None)
        [(27, 3), (9, 9), (3, 27), (1, 81)]
    """
    eta, low = reduction_factor, min_steps or 1
    rungs = 1
    while num_trials // eta**rungs >= 1 and num_steps / eta**rungs >= low:
        rungs += 1
    plan = [(max(1, num_trials // eta**k), max(1, round(num_steps / eta**(rungs - 1 - k))))
            for k in range(rungs)]
    return plan


def successive_halving(
    train_fn: TrainFn,
    space: Space,
    *,
    num_trials: int,
    reduction_factor: int = 3,
    min_steps: int | None = None,
    batch_size: int | None = None,
    method: str = "random",
    objective: str | None = None,
    direction: str = "minimize",
    key: Any = 0,
    progress: Any = None,
    mesh: Mesh | None = None,
    grid_points: int | None = None,
) -> SearchResult:
    """Search with successive halving: many short trainings, the best continued on device.

    Rung ``k`` keeps the best ``n // eta**k`` trials (by the objective after that rung's
    steps; NaN/inf trials fail and are dropped first) and trains them on to the next rung
    (see :func:`rung_plan`). Stopped trials are ``"pruned"`` with the steps they reached.

    Args:
        train_fn: a :class:`TrainFn` from :func:`make_train_fn` (its trainings can stop and
            resume); ``num_steps`` is the last rung's steps.
        space: as in :func:`search`.
        num_trials: trials of the first rung (>= 1); ``grid`` takes its whole grid.
        reduction_factor: ``eta >= 2``, the factor between rungs.
        min_steps: the least steps of the first rung (default 1).
        batch_size: trials per compiled call (default: a rung's trials at once, at most
            ``num_trials``).
        method: ``"grid"``, ``"random"`` or ``"quasirandom"``.
        objective, direction, key, progress, mesh, grid_points: as in :func:`search`.

    Returns:
        A :class:`SearchResult`; only trials that reached ``num_steps`` can be best.

    Example:
        >>> import jax.numpy as jnp, optax, lrjax
        >>> data = {"x": jnp.ones((4, 8, 3)), "y": jnp.zeros((4, 8))}
        >>> loss = lambda w, b: jnp.mean((b["x"] @ w - b["y"]) ** 2)
        >>> train_fn = lrjax.make_train_fn(loss, lambda k: jnp.ones(3),
        ...                                lambda h: optax.sgd(h["lr"]), data, num_steps=27)
        >>> result = successive_halving(train_fn, {"lr": lrjax.log_uniform(1e-3, 0.3)},
        ...                             num_trials=9)
        >>> [t["state"] for t in result.trials].count("complete")
        1

    References:
        Jamieson & Talwalkar, "Non-stochastic Best Arm Identification and Hyperparameter
        Optimization", AISTATS 2016; Li et al., "Hyperband", JMLR 2018.
    """
    if not isinstance(train_fn, TrainFn):
        raise TypeError("successive_halving needs a train_fn made by lrjax.make_train_fn (its "
                        f"trainings can stop and resume), got {train_fn!r}.")
    space = check_space(space)
    num_trials = check_int("num_trials", num_trials, 1)
    eta = check_int("reduction_factor", reduction_factor, 2)
    if min_steps is not None:
        min_steps = check_int("min_steps", min_steps, 1)
        if min_steps > train_fn.num_steps:
            raise ValueError(f"min_steps={min_steps} must be <= num_steps={train_fn.num_steps}.")
    direction = check_direction(direction)
    method = check_method(method, HOST_METHODS, optuna_ok=False)
    report = progress_reporter(progress)
    if mesh is not None and not isinstance(mesh, Mesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh or None, got {mesh!r}.")
    root = root_key(key)
    params = sample_params(method, space, num_trials, host_seed(root), grid_points)
    plan = rung_plan(len(params), train_fn.num_steps, eta, min_steps)
    batch_size = default_batch_size(batch_size, len(params), False, mesh)
    mesh = check_mesh(mesh, batch_size)
    programs = _Programs(train_fn, batch_size, mesh)
    hparams = {k: jnp.asarray(v) for k, v in as_arrays(space, params).items()}
    numbers = jnp.arange(len(params), dtype=jnp.int32)
    states = programs.init(hparams, numbers, root)
    alive = np.arange(len(params))
    records: dict[int, dict] = {}
    done_steps = 0
    objective_name = None
    for rung, (_, steps) in enumerate(plan):
        states, metrics = programs.advance(states, hparams, alive, done_steps, steps - done_steps)
        done_steps = steps
        if objective_name is None:
            objective_name = resolve_objective(objective, programs.names, train_fn)
        values = metrics[objective_name]
        last = rung == len(plan) - 1
        keep = len(alive) if last else plan[rung + 1][0]
        sign = 1.0 if direction == "minimize" else -1.0
        finite = np.isfinite(values)
        order = sorted(np.flatnonzero(finite), key=lambda i: (sign * values[i], alive[i]))
        survivors = set(order[:keep])
        for i, number in enumerate(alive):
            trial_metrics = {name: column[i] for name, column in metrics.items()}
            state = None if (last or i in survivors or not finite[i]) else PRUNED
            records[int(number)] = make_trial(number, params[number], trial_metrics,
                                              objective_name, state, steps=steps)
        if report is not None:
            report(rung + 1, len(plan))
        if last:
            break
        positions = np.array(sorted(survivors), dtype=np.int64)
        states = jax.tree.map(lambda x: x[jnp.asarray(positions)], states)  # stays on device
        alive = alive[positions]
    trials = [records[n] for n in sorted(records)]
    return SearchResult(trials, space, objective_name, direction, f"successive_halving/{method}")


class _Programs:
    """The compiled pieces: vmapped init, and advance + evaluate per rung length."""

    def __init__(self, train_fn: TrainFn, batch_size: int, mesh: Mesh | None) -> None:
        self.train_fn, self.batch_size = train_fn, batch_size
        self.recorder = StructureRecorder()
        self.sharded, replicated = trial_sharding(mesh)
        self.data = train_fn.data if replicated is None else jax.device_put(train_fn.data,
                                                                             replicated)

        def init(hparams: Mapping, numbers: jax.Array, root: jax.Array) -> Any:
            keys = jax.vmap(lambda n: jax.random.fold_in(root, n))(numbers)
            return jax.vmap(train_fn.init)(hparams, keys)

        def advance(states: Any, hparams: Mapping, data: Any, start: jax.Array,
                    num_steps: int) -> tuple[Any, dict]:
            def one(state: Any, h: Mapping) -> tuple[Any, dict]:
                state = train_fn.advance(state, h, data, start, num_steps)
                return state, self.recorder.record(train_fn.evaluate(state))

            return jax.vmap(one)(states, hparams)

        self._init = jax.jit(init)
        self._advance = jax.jit(advance, static_argnums=4)

    @property
    def names(self) -> tuple[str, ...]:
        assert self.recorder.names is not None
        return self.recorder.names

    def _place(self, tree: Any) -> Any:
        return tree if self.sharded is None else jax.device_put(tree, self.sharded)

    def _chunks(self, num: int) -> list[np.ndarray]:
        return [padded_indices(min(self.batch_size, num - s), self.batch_size) + s
                for s in range(0, num, self.batch_size)]

    def init(self, hparams: Mapping, numbers: jax.Array, root: jax.Array) -> Any:
        parts = []
        for index in self._chunks(len(numbers)):
            take = functools.partial(_take, jnp.asarray(index))
            parts.append(self._init(self._place(jax.tree.map(take, hparams)),
                                    self._place(take(numbers)), root))
        return _concat(parts, len(numbers), self.batch_size)

    def advance(self, states: Any, hparams: Mapping, alive: np.ndarray, start: int,
                num_steps: int) -> tuple[Any, dict[str, np.ndarray]]:
        parts, outs = [], []
        for index in self._chunks(len(alive)):
            take = functools.partial(_take, jnp.asarray(index))
            chunk_h = {k: v[jnp.asarray(alive[index])] for k, v in hparams.items()}
            new, metrics = self._advance(self._place(jax.tree.map(take, states)),
                                         self._place(chunk_h), self.data,
                                         jnp.int32(start), num_steps)
            parts.append(new)
            outs.append(metrics)
        metrics = {name: np.concatenate([np.asarray(o[name], np.float64) for o in outs])
                   for name in outs[0]}
        keep = _kept(len(alive), self.batch_size)
        return _concat(parts, len(alive), self.batch_size), {k: v[keep] for k, v in metrics.items()}


def _take(index: jax.Array, x: jax.Array) -> jax.Array:
    return x[index]


def _kept(num: int, batch_size: int) -> np.ndarray:
    """Positions of the real (unpadded) rows when chunks of ``batch_size`` are concatenated."""
    rows = [np.arange(s, s + min(batch_size, num - s)) for s in range(0, num, batch_size)]
    padded_starts = [i * batch_size for i in range(len(rows))]
    return np.concatenate([np.arange(len(r)) + p for r, p in zip(rows, padded_starts)])


def _concat(parts: list, num: int, batch_size: int) -> Any:
    keep = jnp.asarray(_kept(num, batch_size))
    if len(parts) == 1:
        return jax.tree.map(lambda x: x[keep], parts[0])
    return jax.tree.map(lambda *xs: jnp.concatenate(xs)[keep], *parts)

