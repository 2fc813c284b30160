"""lrjax: learning-rate schedules, optimizers and a compiled LR range test for JAX/Optax.

Every public name has exactly one import path: ``lrjax.<name>``.
"""

__version__ = "0.1.0"

# --- schedules (schedules.py, cyclical.py, plotting.py) -----------------------
from lrjax.cyclical import cyclic, cyclic_momentum, one_cycle, one_cycle_momentum, sgdr
from lrjax.plotting import plot_schedule
from lrjax.schedules import (
    constant,
    cosine_annealing,
    exponential_decay,
    inverse_time_decay,
    multistep_decay,
    noam,
    polynomial_decay,
    schedule_values,
    step_decay,
    warmup,
)

_SCHEDULES: list[str] = [
    "constant",
    "step_decay",
    "multistep_decay",
    "exponential_decay",
    "inverse_time_decay",
    "polynomial_decay",
    "cosine_annealing",
    "sgdr",
    "cyclic",
    "cyclic_momentum",
    "one_cycle",
    "one_cycle_momentum",
    "noam",
    "warmup",
    "schedule_values",
    "plot_schedule",
]

# --- optimizers (weight_decay.py, optimizers.py, sign.py) ---------------------
from lrjax.optimizers import (
    ScaleByAmsgradState,
    adamw,
    adamwr,
    amsgrad,
    scale_by_amsgrad,
    sgdw,
    sgdwr,
)
from lrjax.sign import (
    ScaleBySignState,
    addsign,
    cosine_sign_decay,
    linear_sign_decay,
    powersign,
    restart_sign_decay,
    scale_by_addsign,
    scale_by_powersign,
)
from lrjax.weight_decay import (
    DecoupledWeightDecayState,
    decoupled_weight_decay,
    effective_learning_rate,
    normalized_weight_decay,
)

_OPTIMIZERS: list[str] = [
    "adamw",
    "sgdw",
    "adamwr",
    "sgdwr",
    "amsgrad",
    "scale_by_amsgrad",
    "ScaleByAmsgradState",
    "decoupled_weight_decay",
    "DecoupledWeightDecayState",
    "normalized_weight_decay",
    "effective_learning_rate",
    "powersign",
    "addsign",
    "scale_by_powersign",
    "scale_by_addsign",
    "ScaleBySignState",
    "linear_sign_decay",
    "cosine_sign_decay",
    "restart_sign_decay",
]

# --- range test (range_test.py, range_result.py, suggest*.py)
from lrjax.plotting import plot_range_test
from lrjax.range_result import RangeTestResult
from lrjax.range_test import lr_ramp, range_test
from lrjax.suggest_readability import Readability, UnreadableCurveWarning, readability
from lrjax.suggest import (
    suggest_lr,
    suggest_minimum,
    suggest_slide,
    suggest_steep,
    suggest_steepest,
    suggest_valley,
)
from lrjax.suggest_cyclical import suggest_cyclical_bounds
from lrjax.suggest_fall import suggest_fall
from lrjax.suggest_turn import suggest_turn
from lrjax._engine.step import TrainStep, make_train_step

_RANGE_TEST: list[str] = [
    "range_test",
    "RangeTestResult",
    "Readability",
    "UnreadableCurveWarning",
    "readability",
    "lr_ramp",
    "make_train_step",
    "TrainStep",
    "suggest_lr",
    "suggest_valley",
    "suggest_steepest",
    "suggest_minimum",
    "suggest_slide",
    "suggest_steep",
    "suggest_fall",
    "suggest_turn",
    "suggest_cyclical_bounds",
    "plot_range_test",
]

# --- porting from PyTorch (porting.py) ------------------------------------------
from lrjax.porting import chain_schedules, linear_factor, per_epoch, with_cycled_momentum

_PORTING: list[str] = ["per_epoch", "linear_factor", "chain_schedules", "with_cycled_momentum"]

# --- the training engine (_engine/): models, the train step, the compile cache ---
from lrjax._engine.cache import clear_caches
from lrjax._engine.execution import choose_execution
from lrjax._engine.model import PureModel, pure_model
from lrjax._engine.step import ModelStep, TrainCarry, make_model_step, pure_train_step

_MODELS: list[str] = [
    "clear_caches",
    "choose_execution",
    "pure_model",
    "PureModel",
    "make_model_step",
    "ModelStep",
    "TrainCarry",
    "pure_train_step",
]

# --- hyperparameter search (search*.py) -----------------------------------------
from lrjax.search import search
from lrjax.search_halving import hyperband, hyperband_brackets, rung_plan, successive_halving
from lrjax.search_result import SearchResult
from lrjax.search_runner import trial_key
from lrjax.search_space import choice, log_uniform, uniform
from lrjax.search_train import TrainFn, TrialState, make_train_fn

_SEARCH: list[str] = [
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

# --- snapshot ensembles and weight averaging (snapshots.py, ensemble.py, swa.py) -
from lrjax.ensemble import ensemble_members, ensemble_predict
from lrjax.snapshots import (
    SnapshotResult,
    schedule_cycle_ends,
    snapshot_cycle_ends,
    snapshot_schedule,
    train_snapshots,
)
from lrjax.swa import SWAState, swa, swa_params, swa_state, update_batch_stats

_SNAPSHOTS: list[str] = [
    "snapshot_schedule",
    "snapshot_cycle_ends",
    "schedule_cycle_ends",
    "train_snapshots",
    "SnapshotResult",
    "ensemble_predict",
    "ensemble_members",
    "swa",
    "SWAState",
    "swa_state",
    "swa_params",
    "update_batch_stats",
]

# --- batch size and learning rate (batch_size.py, gradient_noise.py) ----------
from lrjax.batch_size import (
    BatchSizePlan,
    batch_size_for_noise_scale,
    batch_size_plan,
    batch_size_schedule,
    noise_scale,
    rescale_batch_size,
    scale_adam,
    scale_learning_rate,
)
from lrjax.gradient_noise import (
    GradientNoiseScale,
    NoiseScaleMonitorState,
    gradient_noise_scale,
    noise_scale_estimate,
    noise_scale_from_norms,
    noise_scale_monitor,
)

_BATCH_SIZE: list[str] = [
    "noise_scale",
    "batch_size_for_noise_scale",
    "rescale_batch_size",
    "scale_learning_rate",
    "scale_adam",
    "batch_size_schedule",
    "batch_size_plan",
    "BatchSizePlan",
    "gradient_noise_scale",
    "noise_scale_from_norms",
    "GradientNoiseScale",
    "noise_scale_monitor",
    "noise_scale_estimate",
    "NoiseScaleMonitorState",
]

__all__ = [
    "__version__",
    *_SCHEDULES,
    *_OPTIMIZERS,
    *_RANGE_TEST,
    *_PORTING,
    *_MODELS,
    *_SEARCH,
    *_SNAPSHOTS,
    *_BATCH_SIZE,
]
