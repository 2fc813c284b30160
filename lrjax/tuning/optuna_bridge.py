"""The Optuna bridge: samplers, storage, and asking/telling batches of trials.

Optuna is optional (``pip install 'lrjax[search]'``) and imported only here, only when a
search needs it (a Bayesian method, an Optuna sampler or ``storage=``). A batch is asked
from the study, run as one compiled program and told back; with TPE, the trials of a batch
are asked with the constant liar (running trials count as bad), so they spread out.

The trial budget ``num_trials`` counts the study's trials, across processes and resumed
runs: before each ask a process counts the finished and running trials, and a
trial that a concurrent ask pushed past the budget is closed unused. Trials interrupted by
Ctrl-C are closed and their parameters queued again, so a resumed search runs them. The
trials of a worker that died outright are failed by the others and run again
(:mod:`lrjax.tuning.storage`): they do not count, so a study ends with ``num_trials``
finished trials.
"""

from __future__ import annotations

import importlib
import math
import os
import sys
import time
import warnings
from collections.abc import Mapping
from typing import Any

from lrjax.tuning import storage as storage_module
from lrjax.tuning.space import HOST_METHODS, SEARCH_EXTRA, Choice, Dimension, LogUniform
from lrjax.tuning.storage import ATTR, METRICS_ATTR, RETRY_ATTR, WORKER_ATTR

OPTUNA_METHODS = ("tpe", "gp")
WORKER = f"{storage_module.HOST}:{os.getpid()}"  # which process ran a trial


def require_optuna(what: str) -> Any:
    """Import optuna, or raise an ImportError naming the extra that installs it."""
    try:
        return importlib.import_module("optuna")
    except ImportError as error:
        raise ImportError(f"{what} needs Optuna ({SEARCH_EXTRA}): {error}") from error


def is_optuna_sampler(method: Any) -> bool:
    """Whether ``method`` is an ``optuna.samplers.BaseSampler``, without importing Optuna.

    A sampler object exists only if Optuna was imported, so an unloaded Optuna means no.
    """
    optuna = sys.modules.get("optuna")
    return optuna is not None and isinstance(method, optuna.samplers.BaseSampler)


def distributions(space: Mapping[str, Dimension]) -> dict[str, Any]:
    optuna = require_optuna("an Optuna search")
    out = {}
    for name, dim in space.items():
        if isinstance(dim, Choice):
            out[name] = optuna.distributions.CategoricalDistribution(list(dim.values))
        else:
            out[name] = optuna.distributions.FloatDistribution(
                dim.low, dim.high, log=isinstance(dim, LogUniform))
    return out


def host_sampler(points: Any) -> Any:
    """An Optuna sampler whose trial ``n`` gets ``points(n)`` (grid, random, quasi-random).

    Optuna keeps the study (storage, numbering, states); the point of a trial is a function
    of the search key and its number only, so processes sharing a study never draw the same
    point twice and a study reproduces the trials of a search without storage.
    """
    optuna = require_optuna("storage=")

    class NumberedSampler(optuna.samplers.BaseSampler):
        def __init__(self) -> None:
            self._cache: dict[int, dict] = {}

        def infer_relative_search_space(self, study: Any, trial: Any) -> dict:
            return {}

        def sample_relative(self, study: Any, trial: Any, search_space: Any) -> dict:
            return {}

        def sample_independent(self, study: Any, trial: Any, name: str, dist: Any) -> Any:
            if trial.number not in self._cache:
                self._cache = {trial.number: points(trial.number)}  # one trial at a time
            return self._cache[trial.number][name]

    return NumberedSampler()


def make_sampler(method: Any, space: Mapping[str, Dimension], seed: int,
                 points: Any = None) -> Any:
    """The sampler of a method name, or ``method`` itself if it is an Optuna sampler."""
    optuna = require_optuna(f"method={method!r}" if isinstance(method, str) else "an Optuna sampler")
    if not isinstance(method, str):
        return method
    if method in HOST_METHODS:
        return host_sampler(points)
    if method == "tpe":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
    if method == "gp":
        for module in ("torch", "scipy"):
            try:
                importlib.import_module(module)
            except ImportError as error:
                raise ImportError(
                    f"method='gp' (Optuna's GPSampler) needs {module}: {SEARCH_EXTRA} and "
                    f"pip install {module}: {error}") from error
        return optuna.samplers.GPSampler(seed=seed)
    raise AssertionError(method)


def check_storage(storage: Any, study_name: Any = None, *, space: Any = None,
                  direction: str | None = None, objective: str | None = None) -> None:
    """Open and check ``storage`` before anything is compiled.

    Accepted: None, a storage URL string (``"sqlite:///search.db"``), a journal file path
    (a str without ``://`` or an ``os.PathLike``), or an ``optuna.storages.BaseStorage``
    (see :func:`lrjax.tuning.storage.open_storage`). A bad path or URL raises a
    ``ValueError`` naming it. With ``space`` and ``direction``, a study ``study_name``
    already in the storage that was made for another search is refused now
    (:func:`lrjax.tuning.storage.check_study`), not after training. The storage is opened
    again by :func:`open_study` (an open storage cannot pass between processes).
    """
    if study_name is not None and not isinstance(study_name, str):
        raise TypeError(f"study_name must be a str or None, got {type(study_name).__name__} "
                        f"{study_name!r:.60}.")
    if storage is None:
        return
    if isinstance(storage, (str, os.PathLike)):
        if isinstance(storage, str) and not storage.strip():
            raise ValueError("storage must be a storage URL or a journal file path, got an "
                             "empty string.")
    else:
        optuna = sys.modules.get("optuna")  # a storage object exists only if Optuna is loaded
        if optuna is None or not isinstance(storage, optuna.storages.BaseStorage):
            raise TypeError("storage must be an Optuna storage URL (e.g. 'sqlite:///search.db'), "
                            "a journal file path or an optuna.storages.BaseStorage, got "
                            f"{type(storage).__name__} {storage!r:.60}.")
    require_optuna("storage=")
    opened = storage_module.open_storage(storage)
    try:
        if space is not None and direction is not None:
            storage_module.check_study(
                opened, study_name or storage_module.DEFAULT_STUDY_NAME,
                storage_module.search_definition(space, objective, direction))
    finally:
        if opened is not storage:
            storage_module.close_storage(opened)


def open_study(storage: Any, study_name: str | None, direction: str, sampler: Any, *,
               space: Any = None, objective: str | None = None) -> Any:
    """Create or load (``load_if_exists``) the study; a path without ``://`` is a journal file.

    With ``space``, the study's space, objective and direction are checked against those of
    an existing study (a ``ValueError`` naming the study and the difference) and recorded on
    a new one (study user attributes).
    """
    check_storage(storage, study_name)
    optuna = require_optuna("storage=")
    storage = storage_module.open_storage(storage)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=storage,
        study_name=(study_name if study_name is not None or storage is None
                    else storage_module.DEFAULT_STUDY_NAME),
        direction=direction,
        sampler=sampler,
        load_if_exists=storage is not None,
    )
    if storage is not None and space is not None:
        storage_module.record_definition(
            study, storage_module.search_definition(space, objective, direction))
    if study.direction.name.lower() != direction:
        raise ValueError(
            f"direction={direction!r}, but the stored study {study.study_name!r} was made to "
            f"{study.direction.name.lower()}.")
    return study


def counted_trials(study: Any, trials: list | None = None) -> list[Any]:
    """The study's trials that use up the budget: running or finished, not closed unused or
    interrupted, not lost (failed because their worker died, and run again: see
    :mod:`lrjax.tuning.storage`). Queued trials count once asked (``ask`` takes them first).
    """
    optuna = require_optuna("an Optuna search")
    state = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    rerun = {t.user_attrs[RETRY_ATTR] for t in trials if RETRY_ATTR in t.user_attrs}
    return [t for t in trials
            if t.user_attrs.get(ATTR) not in ("unused", "interrupted")
            and t.state != state.WAITING
            # A failed trial lrjax did not tell (no metrics) lost its worker.
            and not (t.state == state.FAIL and (METRICS_ATTR not in t.user_attrs
                                                or t.number in rerun))]


def _budget(study: Any) -> tuple[list[Any], list[Any], list[Any]]:
    """The study's counted trials, its pending lost trials and its queued re-runs.

    A lost trial (failed because its worker died) holds its place in the budget until a
    worker takes its re-run, so that no fresh point takes that place in the instant between
    failing it and queueing its point again, or while the re-run waits in the queue: the
    lost point itself runs again (a grid keeps every point). A lost trial whose point was
    never queued (the worker that failed it died at once) gives its place up after
    :data:`lrjax.tuning.storage.GRACE_PERIOD` seconds.
    """
    optuna = require_optuna("an Optuna search")
    state = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    counted = counted_trials(study, trials)
    queued = [t for t in trials if t.state == state.WAITING and RETRY_ATTR in t.user_attrs]
    taken = {t.user_attrs[RETRY_ATTR] for t in trials
             if RETRY_ATTR in t.user_attrs and t.state != state.WAITING}
    pending = [t for t in trials
               if t.state == state.FAIL and METRICS_ATTR not in t.user_attrs
               and WORKER_ATTR in t.user_attrs
               and t.user_attrs.get(ATTR) not in ("unused", "interrupted")
               and t.number not in taken and t.datetime_complete is not None
               and storage_module.age(t.datetime_complete) < storage_module.GRACE_PERIOD]
    return counted, pending, queued


_HEARTBEATS: dict[int, Any] = {}  # id(trial) -> the Heartbeat of its batch, until told


def ask_batch(study: Any, space: Mapping[str, Dimension], size: int, num_trials: int) -> list:
    """Up to ``size`` new trials, never past ``num_trials`` counted trials in the study.

    Before each batch the trials of workers that died are failed and their points queued
    again (:func:`lrjax.tuning.storage.fail_lost`). When the budget is full but trials of
    other processes still run, it waits for them (they may die and need running again),
    except for trials it cannot watch (another host's, without a heartbeat). The trials
    returned have their heartbeat recorded until :func:`tell_batch` or
    :func:`close_interrupted`.
    """
    optuna = require_optuna("an Optuna search")
    dists = distributions(space)
    beat = storage_module.Heartbeat(study)
    batch: list = []
    try:
        storage_module.fail_lost(study)
        counted, pending, queued = _budget(study)
        while len(batch) < size:
            if len(counted) + len(pending) >= num_trials:
                if batch or not (pending or storage_module.waiting_on(study, counted)):
                    break
                if not queued:  # wait: a running trial may die, a lost point be queued
                    time.sleep(storage_module.POLL_SECONDS)
                    storage_module.fail_lost(study)
                    counted, pending, queued = _budget(study)
                    continue
                # A lost trial's point is queued: ask takes it (queued trials come first).
            with warnings.catch_warnings():  # lrjax records the heartbeat itself
                warnings.filterwarnings("ignore", message="Heartbeat of storage")
                trial = study.ask(dists)
            batch.append(trial)  # from now on closed if anything goes wrong
            beat.add(trial)  # first: a trial without a heartbeat is never found lost
            trial.set_user_attr(WORKER_ATTR, WORKER)
            # Another process may have asked at the same moment: numbers are given out in
            # order, so the trial is inside the budget iff fewer than num_trials trials that
            # hold a place in it precede it.
            counted, pending, queued = _budget(study)
            places = counted + pending
            if sum(1 for t in places if t.number < trial.number) >= num_trials:
                batch.pop()
                trial.set_user_attr(ATTR, "unused")
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                counted = [t for t in counted if t.number != trial.number]
    except BaseException:
        beat.stop()
        close_interrupted(study, batch)
        raise
    if not batch:
        beat.stop()
    for trial in batch:
        _HEARTBEATS[id(trial)] = beat
    return batch


def _stop_heartbeat(trials: list) -> None:
    beats = {id(b): b for b in (_HEARTBEATS.pop(id(t), None) for t in trials) if b is not None}
    for beat in beats.values():
        beat.stop()


def _tell(study: Any, trial: Any, *args: Any, **kwargs: Any) -> bool:
    """``study.tell``, or False when another worker already failed the trial as lost (it
    missed heartbeats: a paused process, a slow network); its point runs again."""
    optuna = require_optuna("an Optuna search")
    try:
        study.tell(trial, *args, **kwargs)
        return True
    except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
        finished = study._storage.get_trial(trial._trial_id).state.is_finished()
        if not finished:
            raise
        warnings.warn(f"trial {trial.number} was taken for lost by another worker (no "
                      "heartbeat within the grace period) and queued again; its result here "
                      "is dropped.", RuntimeWarning, stacklevel=3)
        return False


def tell_batch(study: Any, trials: list, metrics: dict[str, Any], objective: str) -> None:
    """Tell each trial its objective; a NaN/inf objective is told as FAIL."""
    optuna = require_optuna("an Optuna search")
    try:
        for i, trial in enumerate(trials):
            values = {name: float(column[i]) for name, column in metrics.items()}
            value = values[objective]
            try:
                trial.set_user_attr(METRICS_ATTR, {k: (v if math.isfinite(v) else None)
                                                   for k, v in values.items()})
            except optuna.exceptions.UpdateFinishedTrialError:
                pass  # failed as lost meanwhile: _tell says so
            if math.isfinite(value):
                _tell(study, trial, value)
            else:
                _tell(study, trial, state=optuna.trial.TrialState.FAIL)
    finally:
        _stop_heartbeat(trials)


def close_interrupted(study: Any, trials: list) -> None:
    """Close an interrupted batch's trials (not counted) and queue their params again."""
    optuna = require_optuna("an Optuna search")
    try:
        for trial in trials:
            try:
                trial.set_user_attr(ATTR, "interrupted")
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # failed as lost meanwhile, and already queued again
            if _tell(study, trial, state=optuna.trial.TrialState.FAIL):
                study.enqueue_trial(dict(trial.params), skip_if_exists=False)
    finally:
        _stop_heartbeat(trials)


def study_trials(study: Any, objective: str) -> list[tuple[int, dict, dict, str]]:
    """``(number, params, metrics, state)`` of every counted, finished trial of the study.

    Called when the search ends: it also releases the database connections the storage
    pooled (:func:`lrjax.tuning.storage.close_storage`; the returned study connects again
    when used), so that they are not left open until garbage collection.
    """
    optuna = require_optuna("an Optuna search")
    states = {optuna.trial.TrialState.COMPLETE: "complete", optuna.trial.TrialState.FAIL: "fail",
              optuna.trial.TrialState.PRUNED: "pruned"}
    out = []
    for trial in counted_trials(study):
        if trial.state in states:
            metrics = dict(trial.user_attrs.get(METRICS_ATTR) or {})
            if objective not in metrics:
                metrics[objective] = trial.value
            metrics = {k: (float("nan") if v is None else v) for k, v in metrics.items()}
            out.append((trial.number, dict(trial.params), metrics, states[trial.state]))
    storage_module.close_storage(study._storage)
    return sorted(out)
