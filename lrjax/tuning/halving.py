"""Successive halving: stop the worse trials early, continue the rest on device.

All trials train ``r_0`` steps; the best ``1/eta`` of them continue to ``r_1 = eta r_0``,
and so on until ``num_steps`` (Jamieson & Talwalkar 2016; the rungs of Li et al. 2018's
Hyperband brackets). Between rungs the survivors' :class:`~lrjax.tuning.TrialState` s (params,
optimizer state, the model state such as batch statistics and nnx RNG counters, keys and
loss window) stay on the device: they are gathered by index into new batches (re-batched) and trained on from the
step they reached, so a survivor's final metrics equal those of the same trial trained
without stops. The step count is traced, so programs are compiled per batch shape only (a
power of two up to ``batch_size``), plus one for initialisation; :func:`hyperband` runs
brackets of successive halving on the same programs. A train_fn whose ``execution`` is
``"host"`` runs each rung as a host loop over its compiled step program (see
:class:`_Programs`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from lrjax._engine import processes
from lrjax.tuning.driver import (
    check_direction,
    check_int,
    check_method,
    default_batch_size,
    progress_reporter,
    resolve_objective,
    resolve_vectorize,
)
from lrjax.tuning.result import PRUNED, SearchResult, _finite_or_none, make_trial
from lrjax._engine.cache import PROGRAMS, fn_key, weak
from lrjax.tuning.batches import (
    StructureRecorder,
    check_metrics,
    check_mesh,
    host_seed,
    padded_indices,
    recorder_for,
    root_key,
    trial_sharding,
)
from lrjax.tuning.space import (
    HOST_METHODS,
    Space,
    as_arrays,
    check_space,
    quasirandom_params,
    random_params,
    sample_params,
)
from lrjax._engine.execution import run_host_interleaved, vmap_or_map
from lrjax.tuning.train_fn import HostPrograms, TrainFn


def rung_plan(num_trials: int, num_steps: int, reduction_factor: int,
              min_steps: int | None) -> list[tuple[int, int]]:
    """``[(trials, steps), ...]`` per rung: trials shrink by ``eta``, steps grow by ``eta``.

    The number of rungs ``K`` is the largest with ``num_trials // eta**(K-1) >= 1`` and
    ``num_steps / eta**(K-1) >= min_steps`` (default 1); rung ``k`` trains to
    ``round(num_steps / eta**(K-1-k))`` steps and keeps ``num_trials // eta**k`` trials.

    Args:
        num_trials: trials of the first rung, an integer ``>= 1``.
        num_steps: steps of the last rung, an integer ``>= 1``.
        reduction_factor: ``eta``, an integer ``>= 2``.
        min_steps: the least steps of the first rung, a number ``> 0``, or None (1).

    Returns:
        The rungs as ``(trials, steps)`` pairs.

    Example:
        >>> rung_plan(27, 81, 3, None)
        [(27, 3), (9, 9), (3, 27), (1, 81)]
    """
    num_trials = check_int("num_trials", num_trials, 1)
    num_steps = check_int("num_steps", num_steps, 1)
    eta = check_int("reduction_factor", reduction_factor, 2)  # 1 never ends; 2.5 gives floats
    low = 1 if min_steps is None else _positive("min_steps", min_steps)
    rungs = 1
    while num_trials // eta**rungs >= 1 and num_steps / eta**rungs >= low:
        rungs += 1
    plan = [(max(1, num_trials // eta**k), max(1, round(num_steps / eta**(rungs - 1 - k))))
            for k in range(rungs)]
    return plan


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}.")
    return float(value)


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
    vectorize: str = "auto",
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
        objective, direction, key, progress, mesh, grid_points, vectorize: as in
            :func:`search`.

    Returns:
        A :class:`SearchResult`; only trials that reached ``num_steps`` can be best.

    Example:
        >>> import jax.numpy as jnp, optax, lrjax
        >>> data = {"x": jnp.ones((4, 8, 3)), "y": jnp.zeros((4, 8))}
        >>> loss = lambda w, b: jnp.mean((b["x"] @ w - b["y"]) ** 2)
        >>> train_fn = lrjax.make_train_fn(loss, lambda k: jnp.ones(3),
        ...                                lambda h: optax.sgd(h["lr"]), data, num_steps=27)
        >>> result = successive_halving(train_fn, {"lr": lrjax.log_uniform(1e-3, 0.3)},
        ...                             num_trials=9, batch_size=1)
        >>> [t["state"] for t in result.trials].count("complete")
        1

    References:
        Jamieson & Talwalkar, "Non-stochastic Best Arm Identification and Hyperparameter
        Optimization", AISTATS 2016; Li et al., "Hyperband", JMLR 2018.
    """
    space, eta, direction, method, report = _check(
        "successive_halving", train_fn, space, reduction_factor, min_steps, direction, method,
        HOST_METHODS, progress, mesh)
    num_trials = check_int("num_trials", num_trials, 1)
    root = root_key(key)
    params = sample_params(method, space, num_trials, host_seed(root), grid_points)
    plan = rung_plan(len(params), train_fn.num_steps, eta, min_steps)
    batch_size = default_batch_size(batch_size, len(params), False, mesh)
    mesh = check_mesh(mesh, batch_size)
    programs = _programs(train_fn, batch_size, mesh, resolve_vectorize(vectorize, mesh, loop_ok=False))
    numbers = np.arange(len(params))
    trials, name = _run_rungs(programs, space, params, numbers, plan, root, objective,
                              direction, report, len(params))
    return SearchResult(trials, space, name, direction, f"successive_halving/{method}")


def hyperband_brackets(num_steps: int, reduction_factor: int = 3,
                       min_steps: int = 1) -> list[list[tuple[int, int]]]:
    """The rung plans of Hyperband's brackets ``s_max``, ..., ``0`` (Li et al. 2018, Alg. 1).

    ``s_max`` is the largest ``s`` with ``min_steps * eta**s <= num_steps``; bracket ``s``
    starts ``ceil((s_max + 1) / (s + 1) * eta**s)`` trials at ``num_steps / eta**s`` steps.

    Args:
        num_steps: the most steps a trial trains, an integer ``>= 1``.
        reduction_factor: ``eta``, an integer ``>= 2``.
        min_steps: the least steps of a first rung, an integer in ``[1, num_steps]``.

    Returns:
        One :func:`rung_plan` per bracket, the most exploratory first.

    Example:
        >>> [plan[0] for plan in hyperband_brackets(81, 3)]
        [(81, 1), (34, 3), (15, 9), (8, 27), (5, 81)]
    """
    num_steps = check_int("num_steps", num_steps, 1)
    eta = check_int("reduction_factor", reduction_factor, 2)
    min_steps = check_int("min_steps", min_steps, 1)
    if min_steps > num_steps:
        raise ValueError(f"min_steps={min_steps} must be <= num_steps={num_steps}.")
    s_max = 0
    while min_steps * eta ** (s_max + 1) <= num_steps:
        s_max += 1
    brackets = []
    for s in range(s_max, -1, -1):
        num = math.ceil((s_max + 1) / (s + 1) * eta**s)
        brackets.append(rung_plan(num, num_steps, eta, num_steps / eta**s))
    return brackets


def hyperband(
    train_fn: TrainFn,
    space: Space,
    *,
    reduction_factor: int = 3,
    min_steps: int = 1,
    batch_size: int | None = None,
    method: str = "random",
    objective: str | None = None,
    direction: str = "minimize",
    key: Any = 0,
    progress: Any = None,
    mesh: Mesh | None = None,
    vectorize: str = "auto",
) -> SearchResult:
    """Hyperband: successive halving in brackets, from many short trainings to few long ones.

    Bracket ``s`` runs :func:`successive_halving` on its own trials (see
    :func:`hyperband_brackets`); trials are numbered across brackets (their keys are
    ``trial_key(key, number)``, their points the ``number``-th of the method's sequence) and
    record their ``bracket``. All brackets share the population size, so they reuse the
    compiled programs.

    Args:
        train_fn: a :class:`TrainFn` from :func:`make_train_fn`; ``num_steps`` is the most
            steps a trial trains (Hyperband's ``R``).
        space: as in :func:`search`.
        reduction_factor: ``eta >= 2``.
        min_steps: the fewest steps of a rung (Hyperband's ``r``), in ``1..num_steps``.
        batch_size, method, objective, direction, key, progress, mesh, vectorize: as in
            :func:`successive_halving` (``method``: ``"random"`` or ``"quasirandom"``).

    Returns:
        A :class:`SearchResult` of every bracket's trials.

    Example:
        >>> import jax.numpy as jnp, optax, lrjax
        >>> data = {"x": jnp.ones((4, 8, 3)), "y": jnp.zeros((4, 8))}
        >>> loss = lambda w, b: jnp.mean((b["x"] @ w - b["y"]) ** 2)
        >>> train_fn = lrjax.make_train_fn(loss, lambda k: jnp.ones(3),
        ...                                lambda h: optax.sgd(h["lr"]), data, num_steps=4)
        >>> result = hyperband(train_fn, {"lr": lrjax.log_uniform(1e-3, 0.3)}, reduction_factor=2,
        ...                    batch_size=1)
        >>> sorted({t["bracket"] for t in result.trials})
        [0, 1, 2]

    References:
        Li et al., "Hyperband: A Novel Bandit-Based Approach to Hyperparameter
        Optimization", JMLR 2018.
    """
    min_steps = check_int("min_steps", min_steps, 1)
    space, eta, direction, method, report = _check(
        "hyperband", train_fn, space, reduction_factor, min_steps, direction, method,
        ("random", "quasirandom"), progress, mesh)
    root = root_key(key)
    brackets = hyperband_brackets(train_fn.num_steps, eta, min_steps)
    population = max(plan[0][0] for plan in brackets)
    batch_size = default_batch_size(batch_size, population, False, mesh)
    mesh = check_mesh(mesh, batch_size)
    programs = _programs(train_fn, batch_size, mesh, resolve_vectorize(vectorize, mesh, loop_ok=False))
    draw = quasirandom_params if method == "quasirandom" else random_params
    trials, name, offset = [], None, 0
    for bracket, plan in enumerate(brackets):
        num = plan[0][0]
        params = draw(space, num, host_seed(root), start=offset)
        numbers = np.arange(offset, offset + num)
        found, name = _run_rungs(programs, space, params, numbers, plan, root, objective,
                                 direction, None, population)
        trials += [dict(t, bracket=bracket) for t in found]
        offset += num
        if report is not None:
            report(bracket + 1, len(brackets))
    return SearchResult(trials, space, name, direction, f"hyperband/{method}")


def _check(name: str, train_fn: Any, space: Any, reduction_factor: Any, min_steps: Any,
           direction: Any, method: Any, methods: tuple[str, ...], progress: Any,
           mesh: Any) -> tuple:
    """The arguments shared by successive_halving and hyperband, checked."""
    if not isinstance(train_fn, TrainFn):
        raise TypeError(f"{name} needs a train_fn made by lrjax.make_train_fn (its trainings "
                        f"can stop and resume), got {train_fn!r}.")
    space = check_space(space)
    eta = check_int("reduction_factor", reduction_factor, 2)
    if min_steps is not None:
        min_steps = check_int("min_steps", min_steps, 1)
        if min_steps > train_fn.num_steps:
            raise ValueError(f"min_steps={min_steps} must be <= num_steps={train_fn.num_steps}.")
    if mesh is not None and not isinstance(mesh, Mesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh or None, got {mesh!r}.")
    if processes.multiprocess():
        raise NotImplementedError(
            f"{name} does not run across processes (jax.distributed): use lrjax.search, "
            f"whose trials spread over the devices of every process, or run {name} in one "
            "process.")
    return (space, eta, check_direction(direction),
            check_method(method, methods, optuna_ok=False), progress_reporter(progress))


def _run_rungs(programs: _Programs, space: Space, params: list[dict], numbers: np.ndarray,
               plan: list[tuple[int, int]], root: jax.Array, objective: str | None,
               direction: str, report: Any, population: int) -> tuple[list[dict], str]:
    """Run one successive-halving bracket; trial ``numbers[i]`` has ``params[i]``."""
    hparams, states = programs.init(as_arrays(space, params), numbers.astype(np.int32), root,
                                    population)
    alive = np.arange(len(params))  # positions in the population
    records: dict[int, dict] = {}
    history: dict[int, list] = {}
    done_steps = 0
    name = None
    sign = 1.0 if direction == "minimize" else -1.0
    for rung, (_, steps) in enumerate(plan):
        states, metrics = programs.advance(states, hparams, alive, done_steps, steps - done_steps)
        done_steps = steps
        if name is None:
            name = resolve_objective(objective, programs.names, programs.train_fn)
        values = metrics[name]
        last = rung == len(plan) - 1
        keep = len(alive) if last else plan[rung + 1][0]
        finite = np.isfinite(values)
        order = sorted(np.flatnonzero(finite), key=lambda i: (sign * values[i], alive[i]))
        survivors = set(order[:keep])
        for i, position in enumerate(alive):
            number = int(numbers[position])
            trial_metrics = {k: column[i] for k, column in metrics.items()}
            state = None if (last or i in survivors or not finite[i]) else PRUNED
            history.setdefault(number, []).append([steps, _finite_or_none(values[i])])
            records[number] = make_trial(number, params[position], trial_metrics, name, state,
                                         steps=steps, rungs=history[number])
        if report is not None:
            report(rung + 1, len(plan))
        if last:
            break
        # The survivors' states stay where they are on device; the next rung gathers them
        # into new batches by index.
        alive = alive[np.array(sorted(survivors), dtype=np.int64)]
    assert name is not None
    return [records[n] for n in sorted(records)], name


def _programs(train_fn: TrainFn, batch_size: int, mesh: Mesh | None,
              vectorize: str) -> _Programs:
    """The halving programs of ``train_fn`` for this batch size, mesh and vectorize.

    The jitted programs live in :data:`lrjax._engine.PROGRAMS` under a weak key of
    ``train_fn`` (they call it through weak proxies), so a second halving with the same
    train_fn and shapes reuses their executables; nothing is stored on ``train_fn``.
    """
    recorder = recorder_for(train_fn)
    if train_fn.execution == "host":
        batched = vectorize == "vmap"
        make = lambda b: lambda: HostPrograms(train_fn, b, recorder)  # noqa: E731
        population = PROGRAMS.get(("search-host", fn_key(train_fn), True), make(True))
        per_chunk = PROGRAMS.get(("search-host", fn_key(train_fn), batched), make(batched))
        return _Programs(train_fn, batch_size, mesh, recorder, vectorize,
                         (population.init, None), per_chunk)
    jitted = PROGRAMS.get(("successive_halving", fn_key(train_fn), mesh, vectorize),
                          lambda: _compiled_programs(train_fn, mesh, recorder, vectorize))
    return _Programs(train_fn, batch_size, mesh, recorder, vectorize, jitted)


def _compiled_programs(train_fn: TrainFn, mesh: Mesh | None, recorder: StructureRecorder,
                       vectorize: str) -> tuple[Any, Any]:
    """``(init, advance)`` jitted, calling ``train_fn`` through weak proxies (see _Programs)."""
    sharded, _ = trial_sharding(mesh)
    init_one, advance_one = weak(train_fn.init), weak(train_fn.advance)
    evaluate_one = weak(train_fn.evaluate)

    def init(hparams: Mapping, numbers: jax.Array, root: jax.Array) -> Any:
        keys = jax.vmap(lambda n: jax.random.fold_in(root, n))(numbers)
        return vmap_or_map(init_one)(hparams, keys)

    def advance(states: Any, hparams: Mapping, index: jax.Array, valid: jax.Array,
                data: Any, start: jax.Array, num_steps: jax.Array) -> tuple[Any, dict]:
        take = functools.partial(_take, index)
        chunk, chunk_h = jax.tree.map(take, states), jax.tree.map(take, hparams)
        if sharded is not None:
            chunk = jax.lax.with_sharding_constraint(chunk, sharded)

        def one(state: Any, h: Mapping) -> tuple[Any, dict]:
            state = advance_one(state, h, data, start, num_steps)
            return state, recorder.record(evaluate_one(state))

        if vectorize == "map":  # one trial after another (see vectorize in search)
            shapes = jax.eval_shape(lambda st: check_metrics(evaluate_one(st)),
                                    jax.tree.map(lambda x: x[0], chunk))
            skipped = {k: jnp.full(v.shape, jnp.nan, v.dtype) for k, v in shapes.items()}

            def body(args: tuple) -> tuple[Any, dict]:
                state, h, ok = args
                return jax.lax.cond(ok, one, lambda st, _: (st, skipped), state, h)

            new, metrics = jax.lax.map(body, (chunk, chunk_h, valid))
        else:
            new, metrics = vmap_or_map(one)(chunk, chunk_h)
        # Padding rows point past the population, and "drop" discards their writes.
        target = jnp.where(valid, index, jax.tree.leaves(states)[0].shape[0])
        states = jax.tree.map(lambda whole, part: whole.at[target].set(part, mode="drop"),
                              states, new)
        return states, metrics

    return jax.jit(init), jax.jit(advance)


class _Programs:
    """The programs of a halving: vmapped init, and advance + evaluate per batch shape.

    The population's states live on device at their full size; ``advance`` takes the whole
    population, a batch of indices and which of them are real (not padding), gathers those
    trials, trains them ``num_steps`` (a traced count, so rungs of any length reuse the
    program of their batch shape) and scatters the real ones back (padding rows are dropped).
    With ``vectorize="map"`` the trials of a batch run one after another and a padding row
    is skipped by ``lax.cond``, so one batch shape (``batch_size``) serves every rung; with
    ``vmap`` a late rung uses a smaller power-of-two batch instead of computing padding.

    When ``train_fn.execution`` is ``"host"`` (``host`` given, a
    :class:`~lrjax.tuning.train_fn.HostPrograms`), a rung gathers each batch (``"vmap"``) or
    each trial (otherwise) by index, runs its steps as a host loop over the compiled step
    program (the batches' steps interleaved), evaluates and scatters them back.
    """

    def __init__(self, train_fn: TrainFn, batch_size: int, mesh: Mesh | None,
                 recorder: StructureRecorder, vectorize: str, jitted: tuple[Any, Any],
                 host: HostPrograms | None = None) -> None:
        self.train_fn, self.batch_size, self.vectorize = train_fn, batch_size, vectorize
        self.recorder, self.host = recorder, host
        self.sharded, replicated = trial_sharding(mesh)
        self.devices = 1 if mesh is None else mesh.size
        self.data = train_fn.data if replicated is None else jax.device_put(train_fn.data,
                                                                             replicated)
        self._init, self._advance = jitted

    @property
    def names(self) -> tuple[str, ...]:
        assert self.recorder.names is not None
        return self.recorder.names

    def _chunks(self, positions: np.ndarray) -> list[tuple[np.ndarray, int]]:
        """Batches of ``positions``, each padded, with its real length.

        ``map``: always ``batch_size`` (padding costs nothing). ``vmap``: ``batch_size``, or
        the next power of two (a multiple of the mesh's devices) when fewer trials are left,
        so a late rung with few survivors does not pay for a full batch, and the programs
        come in a few batch shapes only.
        """
        size = self.batch_size
        if self.vectorize == "vmap":
            size = min(size, 1 << max(len(positions) - 1, 0).bit_length())
            size = -(-size // self.devices) * self.devices
        out = []
        for s in range(0, len(positions), size):
            part = positions[s:s + size]
            out.append((part[padded_indices(len(part), size)], len(part)))
        return out

    def init(self, hparams: Mapping, numbers: np.ndarray, root: jax.Array,
             population: int) -> Any:
        # Padded to one population size (a multiple of batch_size), so that every bracket
        # reuses the same programs.
        size = -(-population // self.batch_size) * self.batch_size
        index = padded_indices(len(numbers), size)
        hparams = {k: jnp.asarray(v[index]) for k, v in hparams.items()}
        numbers = jnp.asarray(numbers[index])
        if self.sharded is not None:
            hparams, numbers = jax.device_put((hparams, numbers), self.sharded)
        return hparams, self._init(hparams, numbers, root)

    def advance(self, states: Any, hparams: Mapping, alive: np.ndarray, start: int,
                num_steps: int) -> tuple[Any, dict[str, np.ndarray]]:
        if self.host is not None:
            return self._advance_host(states, hparams, alive, start, num_steps)
        outs = []
        for index, num in self._chunks(alive):
            valid = jnp.asarray(np.arange(len(index)) < num)
            states, metrics = self._advance(states, hparams, jnp.asarray(index, jnp.int32),
                                            valid, self.data, jnp.int32(start),
                                            jnp.int32(num_steps))
            outs.append({k: np.asarray(v, np.float64)[:num] for k, v in metrics.items()})
        return states, {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}

    def _advance_host(self, states: Any, hparams: Mapping, alive: np.ndarray, start: int,
                      num_steps: int) -> tuple[Any, dict[str, np.ndarray]]:
        host = self.host
        if host.batched:
            chunks = [(jnp.asarray(index, jnp.int32), jnp.asarray(np.arange(len(index)) < num),
                       num) for index, num in self._chunks(alive)]
        else:  # one trial at a time: no padding
            chunks = [(jnp.int32(i), jnp.bool_(True), 1) for i in alive]
        parts = [host.take(states, index) for index, _, _ in chunks]
        part_h = [host.take(hparams, index) for index, _, _ in chunks]
        parts = run_host_interleaved(host.step, parts, [(h, self.data) for h in part_h], start,
                                     num_steps)
        metrics = [host.evaluate(part) for part in parts]
        for (index, valid, _), part in zip(chunks, parts):
            states = host.put(states, index, valid, part)
        metrics = jax.device_get(metrics)
        if host.batched:
            outs = [{k: np.asarray(v, np.float64)[:num] for k, v in m.items()}
                    for m, (_, _, num) in zip(metrics, chunks)]
        else:
            outs = [{k: np.asarray(v, np.float64)[None] for k, v in m.items()} for m in metrics]
        return states, {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


def _take(index: jax.Array, x: jax.Array) -> jax.Array:
    return x[index]
