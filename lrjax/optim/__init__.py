"""Optimizers: decoupled weight decay (AdamW, SGDW and their warm-restart forms), AMSGrad,
PowerSign/AddSign and their sign decays.

Each optimizer is an optax ``GradientTransformation`` built from ``scale_by_*`` blocks; the
same names are available as ``lrjax.<name>``.
"""

from lrjax.optim.aliases import (
    ScaleByAmsgradState,
    adamw,
    adamwr,
    amsgrad,
    scale_by_amsgrad,
    sgdw,
    sgdwr,
)
from lrjax.optim.sign import (
    ScaleBySignState,
    addsign,
    cosine_sign_decay,
    linear_sign_decay,
    powersign,
    restart_sign_decay,
    scale_by_addsign,
    scale_by_powersign,
)
from lrjax.optim.weight_decay import (
    DecoupledWeightDecayState,
    decoupled_weight_decay,
    effective_learning_rate,
    normalized_weight_decay,
)

__all__ = [
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
