"""Hyperparameter search as one compiled program: :func:`search`.

Trials run ``batch_size`` at a time on a vmapped axis of one executable (compiled once per
batch shape, reused by every batch), so a search pays one compile instead of one per trial.
Grid, random and quasi-random search run on the host with numpy/scipy; Bayesian methods
(``tpe``, ``gp``, any Optuna sampler) and ``storage=`` go through an Optuna study: ask a
batch, run it, tell the results. The pieces live in ``tuning/space.py`` (space, host
samplers), ``tuning/batches.py`` (the compiled batch), ``tuning/optuna_bridge.py`` (the bridge),
``tuning/train_fn.py`` (:func:`make_train_fn`), ``tuning/halving.py`` (successive halving) and
``tuning/result.py`` (:class:`SearchResult`).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from lrjax.tuning import optuna_bridge as search_optuna
from lrjax._engine.checks import MAX_COUNT
from lrjax.tuning.result import SearchResult, make_trial
from lrjax._engine import processes
from lrjax.tuning.batches import BatchRunner, check_mesh, host_seed, root_key, trial_data
from lrjax.tuning.space import (
    HOST_METHODS,
    HostPoints,
    Space,
    as_arrays,
    center,
    check_space,
    sample_params,
)
from lrjax.tuning.train_fn import TrainFn

METHODS = (*HOST_METHODS, *search_optuna.OPTUNA_METHODS)
DEFAULT_ADAPTIVE_BATCH = 8  # Bayesian methods learn between batches: keep batches small
Progress = Callable[[int, int], Any]


def check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def check_direction(direction: Any) -> str:
    if direction not in ("minimize", "maximize"):
        raise ValueError(f"direction must be 'minimize' or 'maximize', got {direction!r}.")
    return direction


def check_method(method: Any, allowed: tuple[str, ...] = METHODS, optuna_ok: bool = True) -> Any:
    if isinstance(method, str):
        if method not in allowed:
            raise ValueError(f"method must be one of {list(allowed)}"
                             + (" or an optuna.samplers.BaseSampler" if optuna_ok else "")
                             + f", got {method!r}.")
        return method
    if optuna_ok and search_optuna.is_optuna_sampler(method):
        return method
    raise ValueError(f"method must be one of {list(allowed)}"
                     + (" or an optuna.samplers.BaseSampler" if optuna_ok else "")
                     + f", got {method!r}.")


def progress_reporter(progress: Any) -> Progress | None:
    """None, a callable ``progress(done, total)``, or True for a line on stderr per batch."""
    if progress is None or progress is False:
        return None
    if progress is True:
        def report(done: int, total: int) -> None:
            if not processes.is_first():  # one line per batch, not one per process
                return
            sys.stderr.write(f"\rlrjax search: {done}/{total} trials")
            sys.stderr.write("\n" if done >= total else "")
            sys.stderr.flush()

        return report
    if not callable(progress):
        raise TypeError(f"progress must be None, True or a callable (done, total), got {progress!r}.")
    return progress


def resolve_objective(objective: Any, names: tuple[str, ...], train_fn: Any) -> str:
    """The metric to optimize: ``objective``, or the only / the train_fn's default metric."""
    if objective is None:
        default = getattr(train_fn, "default_objective", None)
        if default in names:
            return default
        if len(names) == 1:
            return names[0]
        raise ValueError(f"train_fn returns several metrics {list(names)}: name the one to "
                         "optimize with objective=.")
    if objective not in names:
        raise ValueError(f"objective={objective!r} is not a metric of train_fn; it returns "
                         f"{list(names)}.")
    return objective


def fn_and_args(train_fn: Any) -> tuple[Callable, tuple]:
    """One trial as ``fn(hparams, key, *args)``; a :class:`TrainFn`'s data becomes an argument."""
    if isinstance(train_fn, TrainFn):
        return train_fn.call_with_data, (trial_data(train_fn),)
    if not callable(train_fn):
        raise TypeError(f"train_fn must be a function (hparams, key) -> metrics, got {train_fn!r}.")
    return train_fn, ()


def resolve_vectorize(vectorize: Any, mesh: Mesh | None, loop_ok: bool = True) -> str:
    """The way a batch runs: ``vectorize`` checked, ``"auto"`` resolved for this backend.

    ``loop_ok=False`` (successive halving, whose rungs are single programs) resolves
    ``"auto"`` to ``"map"`` on a CPU and refuses ``"loop"``.
    """
    allowed = ("auto", "vmap", "map", "loop") if loop_ok else ("auto", "vmap", "map")
    if vectorize not in allowed:
        raise ValueError(f"vectorize must be one of {allowed}, got {vectorize!r}.")
    if vectorize in ("map", "loop") and mesh is not None:
        where = ("the devices of every process (jax.distributed)" if processes.multiprocess()
                 else "a mesh")
        raise ValueError(f"vectorize={vectorize!r} runs trials one after another: it cannot "
                         f"shard them over {where}; use vectorize='vmap' (or 'auto').")
    if vectorize == "auto":
        if mesh is None and jax.default_backend() == "cpu":
            return "loop" if loop_ok else "map"
        return "vmap"
    return vectorize


def default_batch_size(batch_size: Any, num_trials: int, adaptive: bool, mesh: Mesh | None,
                       vectorize: str = "vmap") -> int:
    """``batch_size`` checked, or the default: every trial for host methods; for adaptive
    (Bayesian) ones 8, or 1 when trials run one at a time anyway (``"loop"``), so that the
    sampler learns from every trial before proposing the next at no cost in speed."""
    if batch_size is None:
        if not adaptive:
            batch_size = num_trials
        else:
            batch_size = 1 if vectorize == "loop" else min(num_trials, DEFAULT_ADAPTIVE_BATCH)
        if mesh is not None:  # round up to fill every device
            batch_size = -(-batch_size // mesh.size) * mesh.size
        return batch_size
    batch_size = check_int("batch_size", batch_size, 1)
    return batch_size if mesh is not None else min(batch_size, num_trials)


def search(
    train_fn: Callable[[Mapping[str, Any], Any], Any],
    space: Space,
    *,
    num_trials: int,
    batch_size: int | None = None,
    method: Any = "random",
    objective: str | None = None,
    direction: str = "minimize",
    key: Any = 0,
    storage: Any = None,
    study_name: str | None = None,
    progress: Any = None,
    mesh: Mesh | None = None,
    grid_points: int | None = None,
    vectorize: str = "auto",
) -> SearchResult:
    """Search hyperparameters, ``batch_size`` trials at a time in one compiled program.

    Trial ``i`` runs ``train_fn(hparams_i, fold_in(key, i))``; ``vmap(train_fn)`` is compiled
    once (for the batch shape) and called for every batch, a short last batch padded (on a
    CPU, the single-trial program by default: see ``vectorize``).
    The objective of a trial is ``metrics[objective]``; a NaN/inf objective marks the trial
    failed (Optuna's FAIL): it is recorded, never the best, and the search goes on.

    Args:
        train_fn: ``train_fn(hparams, key) -> metrics``, a pure JAX function (a whole
            training); ``hparams`` is a dict of traced scalars, ``metrics`` a scalar or a
            dict of scalars. :func:`make_train_fn` builds one.
        space: name -> :func:`uniform`, :func:`log_uniform` or :func:`choice`.
        num_trials: trials to run (>= 1). ``grid`` runs its whole grid, the largest with at
            most ``num_trials`` points (``grid_points`` per float axis if given). With
            ``storage``, the total of the study, shared by every process using it.
        batch_size: trials per compiled call (default: all of them for host methods; for
            Bayesian ones, which learn between batches, 8, or 1 with ``vectorize="loop"``,
            the CPU default, where trials run one at a time anyway); with ``mesh`` a
            multiple of its size.
        method: ``"grid"``, ``"random"``, ``"quasirandom"`` (scrambled Sobol, scipy),
            ``"tpe"`` (Optuna TPE, constant liar), ``"gp"`` (Optuna GPSampler, needs torch) or
            an ``optuna.samplers.BaseSampler``.
        objective: the metric to optimize when ``train_fn`` returns a dict (default: its only
            metric, or ``make_train_fn``'s ``eval_loss``/``train_loss``).
        direction: ``"minimize"`` or ``"maximize"``.
        key: int seed or JAX key: the trials' keys and the samplers' seeds come from it.
            Trial ``n``'s key, and its point for grid/random/quasirandom, depend only on
            ``key`` and ``n``; with ``storage``, ``tpe``/``gp`` are also seeded by the process
            id and the study's size, so that processes sharing a study (and resumed runs)
            draw different points.
        storage: an Optuna storage URL (``"sqlite:///search.db"``, ``"postgresql://..."``),
            a journal file path, or an Optuna storage: the study persists, a rerun resumes
            it, and processes sharing it split the trials.
        study_name: the study's name in ``storage`` (default ``"lrjax-search"``).
        progress: ``progress(done, total)`` called after each batch, or True for stderr lines.
        mesh: a ``jax.sharding.Mesh``; the trial axis of each batch is split over its devices.
        grid_points: points per float axis of ``method="grid"``.
        vectorize: how a batch runs: ``"vmap"`` (a batch of trainings in one program,
            what fills an accelerator), ``"map"`` (``lax.map``: one trial after another,
            still one compiled call per batch), ``"loop"`` (one compiled single-trial
            program called for each trial; never recompiled) or ``"auto"``: ``"loop"`` on a
            CPU backend without ``mesh``, where XLA takes about twice as long to compile the
            vmapped program and runs it no faster, and the single-trial program compiles
            fastest (``benchmarks/search.py``), else ``"vmap"``. A :func:`make_train_fn`
            training whose ``execution`` is ``"host"`` (convolutions on a CPU, by default)
            runs as a Python loop over a compiled step program instead of one program per
            trial: vmapped over the batch with ``"vmap"``, one trial per program (the
            trials' steps interleaved) with ``"map"`` and ``"loop"``.

    Returns:
        A :class:`SearchResult` (``study`` set when Optuna ran).

    Example:
        >>> from lrjax import log_uniform
        >>> def train_fn(hparams, key):  # final loss of 20 GD steps on (w - 3)^2
        ...     w = 0.0
        ...     for _ in range(20):
        ...         w = w - hparams["lr"] * 2 * (w - 3.0)
        ...     return (w - 3.0) ** 2
        >>> result = search(train_fn, {"lr": log_uniform(1e-3, 1.0)}, num_trials=16,
        ...                 method="quasirandom")
        >>> result.best_value < 1e-6
        True

    References:
        Bergstra & Bengio, "Random Search for Hyper-Parameter Optimization", JMLR 2012;
        Bergstra et al., "Algorithms for Hyper-Parameter Optimization", NeurIPS 2011 (TPE);
        Akiba et al., "Optuna: A Next-generation Hyperparameter Optimization Framework", KDD 2019.
    """
    space = check_space(space)
    num_trials = check_int("num_trials", num_trials, 1)
    if num_trials > MAX_COUNT:
        raise ValueError(f"num_trials must be in [1, 2**31 - 1] (trial numbers are int32), got "
                         f"{num_trials}.")
    direction = check_direction(direction)
    method = check_method(method)
    fn, args = fn_and_args(train_fn)
    report = progress_reporter(progress)
    if grid_points is not None and method != "grid":
        raise ValueError("grid_points is only for method='grid'.")
    processes.on_first(search_optuna.check_storage, storage, study_name, space=space,
                       direction=direction, objective=objective)  # process 0's storage
    root = root_key(key)
    seed = host_seed(root)
    use_optuna = storage is not None or not isinstance(method, str) \
        or method in search_optuna.OPTUNA_METHODS
    host_method = isinstance(method, str) and method in HOST_METHODS
    host_trials = None
    if method == "grid" or not use_optuna:
        # Drawn on process 0; every process gets the same points.
        host_trials = processes.on_first(sample_params, method, space, num_trials, seed,
                                         grid_points)
        if method == "grid" and len(host_trials) < num_trials:
            warnings.warn(f"method='grid' runs {len(host_trials)} trials (the largest full grid "
                          f"within num_trials={num_trials}).", stacklevel=2)
        num_trials = len(host_trials)
    sampler = None
    if use_optuna:  # fail before compiling when Optuna is missing
        points = HostPoints(method, space, seed, host_trials) if host_method else None
        sampler = search_optuna.make_sampler(method, space, seed, points)
    if mesh is not None and not isinstance(mesh, Mesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh or None, got {mesh!r}.")
    if mesh is None and processes.multiprocess():  # trials over every process's devices
        mesh = processes.all_devices_mesh("trials")
    adaptive = not host_method
    vectorize = resolve_vectorize(vectorize, mesh)
    batch_size = default_batch_size(batch_size, num_trials, adaptive, mesh, vectorize)
    mesh = check_mesh(mesh, batch_size)
    runner = BatchRunner(fn, args, batch_size, root, mesh, owner=train_fn, vectorize=vectorize)
    runner.compile(as_arrays(space, [center(space)] * batch_size), np.zeros(batch_size, np.int32))
    objective = resolve_objective(objective, runner.names, train_fn)
    method_name = method if isinstance(method, str) else type(method).__name__
    if sampler is None:
        trials = _run_host(runner, space, host_trials, objective, report)
        result = SearchResult(trials, space, objective, direction, method_name)
    else:
        # Only process 0 opens the study, asks and tells (jax.distributed); the others get
        # its answers (processes.on_first) and have no study.
        opened: dict[str, Any] = {}

        def open_study() -> None:
            study = opened["study"] = search_optuna.open_study(
                storage, study_name, direction, sampler, space=space, objective=objective)
            if storage is not None and method in search_optuna.OPTUNA_METHODS:
                # Processes sharing a study, and a resumed run, must not draw the startup
                # points already drawn: seed from the key, the process and the trials there.
                resumed = jax.random.fold_in(root, len(study.get_trials(deepcopy=False)))
                study.sampler = search_optuna.make_sampler(
                    method, space, host_seed(jax.random.fold_in(resumed, os.getpid())))

        processes.on_first(open_study)
        study = opened.get("study")
        _run_study(runner, study, space, num_trials, batch_size, objective, report)
        rows = processes.on_first(lambda: search_optuna.study_trials(study, objective))
        trials = [make_trial(n, p, m, objective, state) for n, p, m, state in rows]
        result = SearchResult(trials, space, objective, direction, method_name, study)
    if result.best_trial is None:
        warnings.warn(f"no trial finished with a finite {objective!r}: every trial failed.",
                      stacklevel=2)
    return result


def _run_host(runner: BatchRunner, space: Space, params: list[dict], objective: str,
              report: Progress | None) -> list[dict]:
    trials: list[dict] = []
    for start in range(0, len(params), runner.batch_size):
        chunk = params[start:start + runner.batch_size]
        numbers = np.arange(start, start + len(chunk), dtype=np.int32)
        metrics = runner(as_arrays(space, chunk), numbers)
        for i, (number, hparams) in enumerate(zip(numbers, chunk)):
            values = {name: column[i] for name, column in metrics.items()}
            trials.append(make_trial(number, hparams, values, objective))
        if report is not None:
            report(len(trials), len(params))
    return trials


def _run_study(runner: BatchRunner, study: Any, space: Space, num_trials: int, batch_size: int,
               objective: str, report: Progress | None) -> None:
    # ``study`` exists on process 0 only (jax.distributed): it asks and tells there, and
    # the points and counts reach every process through processes.on_first.
    asked: list = []

    def ask() -> list:
        asked[:] = search_optuna.ask_batch(study, space, batch_size, num_trials)
        return [[t.number, t.params] for t in asked]

    def tell(metrics: dict[str, np.ndarray]) -> int:
        search_optuna.tell_batch(study, asked, metrics, objective)
        if report is None:
            return 0
        return sum(1 for t in search_optuna.counted_trials(study) if t.state.is_finished())

    while True:
        batch = processes.on_first(ask)
        if not batch:
            return
        try:
            metrics = runner(as_arrays(space, [params for _, params in batch]),
                             np.array([number for number, _ in batch], np.int32))
        except BaseException:  # Ctrl-C or an error: nothing half-told, the points queued again
            if study is not None:
                search_optuna.close_interrupted(study, asked)
            raise
        done = processes.on_first(tell, metrics)
        if report is not None:
            report(min(done, num_trials), num_trials)
