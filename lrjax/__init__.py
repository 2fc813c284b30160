"""lrjax: learning-rate schedules, optimizers and a compiled LR range test for JAX/Optax.

Every public name has exactly one import path: ``lrjax.<name>``.
"""

__version__ = "0.1.0"

# --- schedules (schedules.py, cyclical.py, plotting.py) -----------------------
from lrjax.cyclical import sgdr

_SCHEDULES: list[str] = ["sgdr"]

# --- optimizers (weight_decay.py, optimizers.py, sign.py) ---------------------
_OPTIMIZERS: list[str] = []

# --- range test (range_test.py, suggest.py) -----------------------------------
_RANGE_TEST: list[str] = []

__all__ = ["__version__", *_SCHEDULES, *_OPTIMIZERS, *_RANGE_TEST]
