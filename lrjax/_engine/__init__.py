"""lrjax's one training engine: what every trainer (range test, snapshots, search,
halving) shares, and the only package whose private names other lrjax packages import.

* :mod:`~lrjax._engine.model`: the model adapter: params, params + state, nnx and Equinox
  modules, dropout keys, all in one pure form ``loss(params, state, batch, key)``.
* :mod:`~lrjax._engine.step`: one train step (accumulation, aux, ``pmean``, optimizers
  that take extra arguments such as ``value=loss``).
* :mod:`~lrjax._engine.data`: the data forms (stacked, iterable, ``(key, i)`` function)
  and placing them on devices.
* :mod:`~lrjax._engine.processes`: several processes under ``jax.distributed``: each
  process's share of a batch assembled over all of them, results fetched whole on every
  process, and what runs on process 0 only (a sampler, a storage).
* :mod:`~lrjax._engine.execution`: running N steps as one compiled loop or as a host loop
  over compiled steps, and choosing between them.
* :mod:`~lrjax._engine.cache`: the one compile cache and :func:`clear_caches`.
* :mod:`~lrjax._engine.factory_checks`: the checks of a loss and an optimizer factory that
  every trainer taking a factory makes alike.
* :mod:`~lrjax._engine.eval_params`: the params a model is evaluated or kept at
  (schedule-free optimizers: their evaluation params), for every trainer alike.

And the private core under the public packages that is not training:

* :mod:`~lrjax._engine.checks`: argument checks of every factory (hyperparameters are
  data, flags are bools, steps are static ints).
* :mod:`~lrjax._engine.schedule_math`: counts, guarded arithmetic and interpolation under
  every schedule (used by schedules, optimizers, batch-size plans and snapshots).
"""

from lrjax._engine.cache import PROGRAMS, clear_caches, fn_key, weak
from lrjax._engine.execution import (
    EXECUTIONS,
    check_execution,
    choose_execution,
    compiled_loop,
    host_steps,
    run_host,
)
from lrjax._engine.model import PureModel, is_model, model_kind, pure_model
from lrjax._engine.step import TrainCarry, pure_train_step

__all__ = [
    "EXECUTIONS",
    "PROGRAMS",
    "PureModel",
    "TrainCarry",
    "check_execution",
    "choose_execution",
    "clear_caches",
    "compiled_loop",
    "fn_key",
    "host_steps",
    "is_model",
    "model_kind",
    "pure_model",
    "pure_train_step",
    "run_host",
    "weak",
]
