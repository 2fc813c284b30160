"""The Optuna bridge: samplers, storage, and asking/telling batches of trials.

Optuna is optional (``pip install 'lrjax[search]'``) and imported only here, only when a
search needs it (a Bayesian method, an Optuna sampler or ``storage=``). A batch is asked
from the study, run as one compiled program and told back; with TPE, the trials of a batch
are asked with the constant liar (running trials count as bad), so they spread out.

The trial budget ``num_trials`` counts the study's trials, across processes and resumed
runs: before each ask a process counts the finished and running trials, and a
trial that a concurrent ask pushed past the budget is closed unused. Trials interrupted by
Ctrl-C are closed and their parameters queued again, so a resumed search runs them.
"""

from __future__ import annotations

import importlib
import math
import os
import socket
import sys
import warnings
from collections.abc import Mapping
from typing import Any

from lrjax.tuning.space import HOST_METHODS, SEARCH_EXTRA, Choice, Dimension, LogUniform

OPTUNA_METHODS = ("tpe", "gp")
ATTR = "lrjax"  # user attribute marking trials that do not count: "unused", "interrupted"
METRICS_ATTR = "lrjax_metrics"
WORKER_ATTR = "lrjax_worker"
WORKER = f"{socket.gethostname()}:{os.getpid()}"  # which process ran a trial


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


def check_storage(storage: Any, study_name: Any = None) -> None:
    """Refuses a ``storage`` Optuna cannot open, and a ``study_name`` that is not a str,
    before anything is compiled.

    Accepted: None, a storage URL string (``"sqlite:///search.db"``), a journal file path
    (a str without ``://`` or an ``os.PathLike``), or an ``optuna.storages.BaseStorage``.
    """
    if study_name is not None and not isinstance(study_name, str):
        raise TypeError(f"study_name must be a str or None, got {type(study_name).__name__} "
                        f"{study_name!r:.60}.")
    if storage is None or isinstance(storage, (str, os.PathLike)):
        if isinstance(storage, str) and not storage.strip():
            raise ValueError("storage must be a storage URL or a journal file path, got an "
                             "empty string.")
        return
    optuna = sys.modules.get("optuna")  # a storage object exists only if Optuna is loaded
    if optuna is not None and isinstance(storage, optuna.storages.BaseStorage):
        return
    raise TypeError("storage must be an Optuna storage URL (e.g. 'sqlite:///search.db'), a "
                    "journal file path or an optuna.storages.BaseStorage, got "
                    f"{type(storage).__name__} {storage!r:.60}.")


def open_study(storage: Any, study_name: str | None, direction: str, sampler: Any) -> Any:
    """Create or load (``load_if_exists``) the study; a path without ``://`` is a journal file."""
    check_storage(storage, study_name)
    optuna = require_optuna("storage=")
    if isinstance(storage, (str, os.PathLike)) and "://" not in str(storage):
        journal = optuna.storages.journal
        backend = getattr(journal, "JournalFileBackend", None) or optuna.storages.JournalFileStorage
        storage = optuna.storages.JournalStorage(backend(os.fspath(storage)))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=storage,
        study_name=study_name if study_name is not None or storage is None else "lrjax-search",
        direction=direction,
        sampler=sampler,
        load_if_exists=storage is not None,
    )
    if study.direction.name.lower() != direction:
        raise ValueError(
            f"direction={direction!r}, but the stored study {study.study_name!r} was made to "
            f"{study.direction.name.lower()}.")
    return study


def counted_trials(study: Any) -> list[Any]:
    """The study's trials that use up the budget: running or finished, not closed unused or
    interrupted (queued trials count once asked: ``ask`` takes them first)."""
    optuna = require_optuna("an Optuna search")
    return [t for t in study.get_trials(deepcopy=False)
            if t.user_attrs.get(ATTR) not in ("unused", "interrupted")
            and t.state != optuna.trial.TrialState.WAITING]


def ask_batch(study: Any, space: Mapping[str, Dimension], size: int, num_trials: int) -> list:
    """Up to ``size`` new trials, never past ``num_trials`` counted trials in the study."""
    optuna = require_optuna("an Optuna search")
    dists = distributions(space)
    batch: list = []
    while len(batch) < size and len(counted_trials(study)) < num_trials:
        trial = study.ask(dists)
        # Another process may have asked at the same moment: numbers are given out in order,
        # so the trial is inside the budget iff fewer than num_trials counted trials precede it.
        before = sum(1 for t in counted_trials(study) if t.number < trial.number)
        if before >= num_trials:
            trial.set_user_attr(ATTR, "unused")
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            break
        batch.append(trial)
    return batch


def tell_batch(study: Any, trials: list, metrics: dict[str, Any], objective: str) -> None:
    """Tell each trial its objective; a NaN/inf objective is told as FAIL."""
    optuna = require_optuna("an Optuna search")
    for i, trial in enumerate(trials):
        values = {name: float(column[i]) for name, column in metrics.items()}
        trial.set_user_attr(METRICS_ATTR, {k: (v if math.isfinite(v) else None)
                                           for k, v in values.items()})
        trial.set_user_attr(WORKER_ATTR, WORKER)
        value = values[objective]
        if math.isfinite(value):
            study.tell(trial, value)
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)


def close_interrupted(study: Any, trials: list) -> None:
    """Close an interrupted batch's trials (not counted) and queue their params again."""
    optuna = require_optuna("an Optuna search")
    for trial in trials:
        trial.set_user_attr(ATTR, "interrupted")
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        study.enqueue_trial(dict(trial.params), skip_if_exists=False)


def study_trials(study: Any, objective: str) -> list[tuple[int, dict, dict, str]]:
    """``(number, params, metrics, state)`` of every counted, finished trial of the study."""
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
    return sorted(out)
