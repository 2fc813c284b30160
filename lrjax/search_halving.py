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
from lrjax.search_result import PRUNED, SearchResult, _finite_or_none, make_trial
from lrjax.search_runner import (
    StructureRecorder,
    cache_for,
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
    (see :func:`rung_plan`). Stopped trials are ``"pruned"``; every trial records ``steps``
    (how far it trained) and ``rungs``, its ``[steps, objective]`` after each rung it ran.

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
    programs = _programs(train_fn, batch_size, mesh)
    hparams, states = programs.init(as_arrays(space, params),
                                    np.arange(len(params), dtype=np.int32), root)
    alive = np.arange(len(params))
    records: dict[int, dict] = {}
    history: dict[int, list] = {}
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
            history.setdefault(int(number), []).append([steps, _finite_or_none(values[i])])
            records[int(number)] = make_trial(number, params[number], trial_metrics,
                                              objective_name, state, steps=steps,
                                              rungs=history[int(number)])
        if report is not None:
            report(rung + 1, len(plan))
        if last:
            break
        # The survivors' states stay where they are on device; the next rung gathers them
        # into new batches by index.
        alive = alive[np.array(sorted(survivors), dtype=np.int64)]
    trials = [records[n] for n in sorted(records)]
    return SearchResult(trials, space, objective_name, direction, f"successive_halving/{method}")


def _programs(train_fn: TrainFn, batch_size: int, mesh: Mesh | None) -> _Programs:
    """The halving programs of ``train_fn``, made once per batch size and mesh (cached)."""
    cache = cache_for(train_fn)
    key = ("successive_halving", batch_size, mesh)
    if key not in cache:
        cache[key] = _Programs(train_fn, batch_size, mesh, cache["recorder"])
    return cache[key]


class _Programs:
    """Two compiled programs for a whole halving: vmapped init, and advance + evaluate.

    The population's states live on device at their full size; ``advance`` takes the whole
    population and a batch of indices, gathers those trials, trains them ``num_steps`` (a
    traced count, so every rung reuses the program) and scatters them back. Padding repeats
    the last index, so a padded row writes the same values twice.
    """

    def __init__(self, train_fn: TrainFn, batch_size: int, mesh: Mesh | None,
                 recorder: StructureRecorder) -> None:
        self.train_fn, self.batch_size = train_fn, batch_size
        self.recorder = recorder
        self.sharded, replicated = trial_sharding(mesh)
        self.data = train_fn.data if replicated is None else jax.device_put(train_fn.data,
                                                                             replicated)

        def init(hparams: Mapping, numbers: jax.Array, root: jax.Array) -> Any:
            keys = jax.vmap(lambda n: jax.random.fold_in(root, n))(numbers)
            return jax.vmap(train_fn.init)(hparams, keys)

        def advance(states: Any, hparams: Mapping, index: jax.Array, data: Any,
                    start: jax.Array, num_steps: jax.Array) -> tuple[Any, dict]:
            take = functools.partial(_take, index)
            chunk, chunk_h = jax.tree.map(take, states), jax.tree.map(take, hparams)
            if self.sharded is not None:
                chunk = jax.lax.with_sharding_constraint(chunk, self.sharded)

            def one(state: Any, h: Mapping) -> tuple[Any, dict]:
                state = train_fn.advance(state, h, data, start, num_steps)
                return state, self.recorder.record(train_fn.evaluate(state))

            new, metrics = jax.vmap(one)(chunk, chunk_h)
            states = jax.tree.map(lambda whole, part: whole.at[index].set(part), states, new)
            return states, metrics

        self._init = jax.jit(init)
        self._advance = jax.jit(advance)

    @property
    def names(self) -> tuple[str, ...]:
        assert self.recorder.names is not None
        return self.recorder.names

    def _chunks(self, positions: np.ndarray) -> list[tuple[np.ndarray, int]]:
        """Batches of ``positions``, each padded to ``batch_size``, with its real length."""
        out = []
        for s in range(0, len(positions), self.batch_size):
            part = positions[s:s + self.batch_size]
            out.append((part[padded_indices(len(part), self.batch_size)], len(part)))
        return out

    def init(self, hparams: Mapping, numbers: np.ndarray, root: jax.Array) -> Any:
        # Padded to a multiple of batch_size, so the programs see one population size.
        index = np.concatenate([c for c, _ in self._chunks(np.arange(len(numbers)))])
        hparams = {k: jnp.asarray(v[index]) for k, v in hparams.items()}
        numbers = jnp.asarray(numbers[index])
        if self.sharded is not None:
            hparams, numbers = jax.device_put((hparams, numbers), self.sharded)
        return hparams, self._init(hparams, numbers, root)

    def advance(self, states: Any, hparams: Mapping, alive: np.ndarray, start: int,
                num_steps: int) -> tuple[Any, dict[str, np.ndarray]]:
        outs = []
        for index, num in self._chunks(alive):
            states, metrics = self._advance(states, hparams, jnp.asarray(index, jnp.int32),
                                            self.data, jnp.int32(start), jnp.int32(num_steps))
            outs.append({k: np.asarray(v, np.float64)[:num] for k, v in metrics.items()})
        return states, {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


def _take(index: jax.Array, x: jax.Array) -> jax.Array:
    return x[index]
