"""Learning-rate schedules: decays, warmup, Noam, cyclical schedules (SGDR, CLR, one-cycle), and
the helpers for porting PyTorch schedules.

Every factory returns an optax ``Schedule`` (``count -> value``); the same names are
available as ``lrjax.<name>``.
"""

from lrjax.schedules.classic import (
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
from lrjax.schedules.cyclical import (
    cyclic,
    cyclic_momentum,
    one_cycle,
    one_cycle_momentum,
    sgdr,
)
from lrjax.schedules.square_root_decay import inverse_sqrt
from lrjax.schedules.warmup_stable_decay import wsd, wsd_cooldown
from lrjax.schedules.porting import chain_schedules, linear_factor, per_epoch, with_cycled_momentum

__all__ = [
    "constant",
    "step_decay",
    "multistep_decay",
    "exponential_decay",
    "inverse_time_decay",
    "polynomial_decay",
    "cosine_annealing",
    "noam",
    "inverse_sqrt",
    "wsd",
    "wsd_cooldown",
    "warmup",
    "schedule_values",
    "sgdr",
    "cyclic",
    "cyclic_momentum",
    "one_cycle",
    "one_cycle_momentum",
    "per_epoch",
    "linear_factor",
    "chain_schedules",
    "with_cycled_momentum",
]
