"""lrjax: learning-rate schedules, optimizers and a compiled LR range test for JAX/Optax.

Every public name is available as ``lrjax.<name>`` and at its home in one subpackage per
capability (as ``optax.adam`` beside ``optax.schedules``):

* :mod:`lrjax.schedules`: decays, warmup, Noam, SGDR, CLR, one-cycle, porting helpers;
* :mod:`lrjax.optim`: AdamW/SGDW (+ warm restarts), AMSGrad, PowerSign/AddSign;
* :mod:`lrjax.finder`: the range test and its result; :mod:`lrjax.finder.suggest`: the rules;
* :mod:`lrjax.tuning`: hyperparameter search, spaces, successive halving, Hyperband;
* :mod:`lrjax.ensembles`: snapshot ensembles, ensemble prediction, SWA;
* :mod:`lrjax.batch`: noise scales and batch-size rules;
* :mod:`lrjax.engine`: the training engine's building blocks for your own loop (every
  trainer runs on the private ``lrjax._engine``);
* :mod:`lrjax.plot`, :mod:`lrjax.cli` (the ``lrjax`` command), :mod:`lrjax.data` (the
  embedded digits problem).

A few names live at their home only (advanced, or one of several ways to do one thing):
the per-rule suggestion functions (``lrjax.finder.suggest.suggest_valley``; use
:func:`suggest_lr` or :meth:`RangeTestResult.suggest`), the search's helpers
(``lrjax.tuning.trial_key``, ``rung_plan``, ``hyperband_brackets``, ``TrialState``), the
engine's step internals (``lrjax.engine.pure_train_step``, ``TrainCarry``,
``make_train_step``, ``TrainStep``) and ``lrjax.ensembles.schedule_cycle_ends``. Their old
top-level names still work for one release and warn (``DeprecationWarning``); so do the
gradient-noise names renamed in this release (``noise_scale_monitor`` is now
:func:`gradient_noise_monitor`). The list is ``lrjax._DEPRECATED``; see CHANGELOG.md.
"""

__version__ = "0.1.0"

import importlib as _importlib
import warnings as _warnings

# Each capability's public names, at their home (lrjax.schedules.cosine_annealing) and here
# (lrjax.cosine_annealing): the subpackage's __all__ is the one list of them, less the names
# that stay at their home only (_HOME_ONLY).
from lrjax import batch, engine, ensembles, finder, optim, plot, schedules, tuning
from lrjax.batch import *  # noqa: F401,F403
from lrjax.engine import *  # noqa: F401,F403
from lrjax.ensembles import *  # noqa: F401,F403
from lrjax.finder import *  # noqa: F401,F403
from lrjax.finder import suggest as _suggest
from lrjax.finder.suggest import *  # noqa: F401,F403
from lrjax.optim import *  # noqa: F401,F403
from lrjax.plot import *  # noqa: F401,F403
from lrjax.schedules import *  # noqa: F401,F403
from lrjax.tuning import *  # noqa: F401,F403

_PACKAGES = (schedules, optim, finder, _suggest, plot, engine, tuning, ensembles, batch)

# Names public at their home only: one way to do each thing at the top level.
_HOME_ONLY: dict[str, tuple[str, ...]] = {
    # one way to get a suggestion: suggest_lr(lrs, losses, method=) or result.suggest(method)
    "lrjax.finder.suggest": (
        "suggest_valley", "suggest_steepest", "suggest_minimum", "suggest_slide",
        "suggest_steep", "suggest_fall", "suggest_turn", "suggest_cyclical_bounds",
    ),
    # the engine's internals; make_model_step is the train step for your own loop
    "lrjax.engine": ("pure_train_step", "TrainCarry", "make_train_step", "TrainStep"),
    "lrjax.tuning": ("trial_key", "rung_plan", "hyperband_brackets", "TrialState"),
    "lrjax.ensembles": ("schedule_cycle_ends",),
    "lrjax.batch": ("gradient_noise_scale_from_norms",),  # new name in 0.2, below
}
_HOME_ONLY_NAMES = {name for names in _HOME_ONLY.values() for name in names}

# Renamed in 0.2: McCandlish et al.'s gradient noise scale takes one prefix for one
# quantity (Smith's noise_scale is the other).
_RENAMED: dict[str, tuple[str, str]] = {
    "noise_scale_monitor": ("lrjax.batch", "gradient_noise_monitor"),
    "noise_scale_estimate": ("lrjax.batch", "gradient_noise_estimate"),
    "NoiseScaleMonitorState": ("lrjax.batch", "GradientNoiseMonitorState"),
    "noise_scale_from_norms": ("lrjax.batch", "gradient_noise_scale_from_norms"),
}

# Old top-level name -> (its home, its name there): importable for one release, with a
# DeprecationWarning naming the new spelling.
_DEPRECATED: dict[str, tuple[str, str]] = {
    **{name: (home, name) for home, names in _HOME_ONLY.items() for name in names
       if name != "gradient_noise_scale_from_norms"},
    **_RENAMED,
}

for _name in _HOME_ONLY_NAMES:
    del globals()[_name]  # brought in by a star import; deprecated ones go through __getattr__
del _name

__all__ = ["__version__"] + [
    name for package in _PACKAGES for name in package.__all__ if name not in _HOME_ONLY_NAMES
]


def __getattr__(name: str) -> object:
    """The deprecated top-level names: the object at its home, with a DeprecationWarning."""
    if name in _DEPRECATED:
        home, new = _DEPRECATED[name]
        _warnings.warn(
            f"lrjax.{name} is deprecated and will be removed in lrjax 0.3; use {home}.{new}"
            + ("" if new == name else " (renamed, same object)") + ".",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(_importlib.import_module(home), new)
    raise AttributeError(f"module 'lrjax' has no attribute {name!r}")
