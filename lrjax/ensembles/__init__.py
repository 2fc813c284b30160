"""Snapshot ensembles and weight averaging.

``snapshots`` (the snapshot schedule and one compiled training that keeps each cycle's
end), ``prediction`` (the ensemble's mean softmax) and ``averaging`` (SWA as an optax
wrapper, and batch statistics for the average).
"""

from lrjax.ensembles.averaging import SWAState, swa, swa_params, swa_state, update_batch_stats
from lrjax.ensembles.prediction import ensemble_members, ensemble_predict
from lrjax.ensembles.snapshots import (
    SnapshotResult,
    schedule_cycle_ends,
    snapshot_cycle_ends,
    snapshot_schedule,
    train_snapshots,
)

__all__ = [
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
