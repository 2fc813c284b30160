"""lrjax: learning-rate schedules, optimizers and a compiled LR range test for JAX/Optax.

Every public name is available as ``lrjax.<name>`` and at its home in one subpackage per
capability (as ``optax.adam`` beside ``optax.schedules``):

* :mod:`lrjax.schedules`: decays, warmup, Noam, SGDR, CLR, one-cycle, porting helpers;
* :mod:`lrjax.optim`: AdamW/SGDW (+ warm restarts), AMSGrad, PowerSign/AddSign;
* :mod:`lrjax.finder`: the range test and its result; :mod:`lrjax.finder.suggest`: the rules;
* :mod:`lrjax.tuning`: hyperparameter search, spaces, successive halving, Hyperband;
* :mod:`lrjax.ensembles`: snapshot ensembles, ensemble prediction, SWA;
* :mod:`lrjax.batch`: noise scales and batch-size rules;
* :mod:`lrjax.plot`, :mod:`lrjax.cli` (the ``lrjax`` command), :mod:`lrjax.data` (the
  embedded digits problem).

Every trainer runs on one private training engine, ``lrjax._engine``.
"""

__version__ = "0.1.0"

# Each capability's public names, at their home (lrjax.schedules.cosine_annealing) and here
# (lrjax.cosine_annealing): the subpackage's __all__ is the one list of them.
from lrjax import batch, ensembles, finder, optim, plot, schedules, tuning
from lrjax.batch import *  # noqa: F401,F403
from lrjax.ensembles import *  # noqa: F401,F403
from lrjax.finder import *  # noqa: F401,F403
from lrjax.finder import suggest as _suggest
from lrjax.finder.suggest import *  # noqa: F401,F403
from lrjax.optim import *  # noqa: F401,F403
from lrjax.plot import *  # noqa: F401,F403
from lrjax.schedules import *  # noqa: F401,F403
from lrjax.tuning import *  # noqa: F401,F403

# The training engine's public face: models as pure functions, the train step, the compile
# cache and the execution strategies.
from lrjax._engine.cache import clear_caches
from lrjax._engine.execution import choose_execution
from lrjax._engine.model import PureModel, pure_model
from lrjax._engine.step import (
    ModelStep,
    TrainCarry,
    TrainStep,
    make_model_step,
    make_train_step,
    pure_train_step,
)

_ENGINE: list[str] = [
    "clear_caches",
    "choose_execution",
    "pure_model",
    "PureModel",
    "make_train_step",
    "TrainStep",
    "make_model_step",
    "ModelStep",
    "TrainCarry",
    "pure_train_step",
]

__all__ = [
    "__version__",
    *schedules.__all__,
    *optim.__all__,
    *finder.__all__,
    *_suggest.__all__,
    *plot.__all__,
    *_ENGINE,
    *tuning.__all__,
    *ensembles.__all__,
    *batch.__all__,
]
