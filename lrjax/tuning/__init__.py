"""Hyperparameter search: whole trainings compiled once, trials on a vmapped axis.

``driver`` (:func:`search`), ``space`` (search spaces and the samplers that need no
Optuna), ``batches`` (a batch of trials as one compiled program), ``optuna_bridge``
(Optuna's samplers and storages), ``halving`` (successive halving, Hyperband), ``train_fn``
(:func:`make_train_fn`, the standard trial on lrjax's engine) and ``result``
(:class:`SearchResult`).
"""

from lrjax.tuning.batches import trial_key
from lrjax.tuning.driver import search
from lrjax.tuning.halving import hyperband, hyperband_brackets, rung_plan, successive_halving
from lrjax.tuning.result import SearchResult
from lrjax.tuning.space import choice, log_uniform, uniform
from lrjax.tuning.train_fn import TrainFn, TrialState, make_train_fn

__all__ = [
    "search",
    "uniform",
    "log_uniform",
    "choice",
    "make_train_fn",
    "TrainFn",
    "TrialState",
    "trial_key",
    "successive_halving",
    "rung_plan",
    "hyperband",
    "hyperband_brackets",
    "SearchResult",
]
