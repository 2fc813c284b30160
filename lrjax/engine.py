"""The training engine's public face: the building blocks of lrjax's trainers, for your own loop.

Every trainer (the range test, :func:`lrjax.train_snapshots`, the search's trainings,
successive halving) runs on one private engine, ``lrjax._engine``. What a user writing
their own loop needs from it is here:

* :func:`pure_model` / :class:`PureModel`: a loss over params, params + state, an
  ``nnx.Module`` or an ``eqx.Module`` in one pure form ``loss(params, state, batch, key)``;
* :func:`make_model_step` / :class:`ModelStep`: a train step for any of those models
  (state threading, dropout keys, accumulation, gradient averaging over an axis);
* :func:`pure_train_step` / :class:`TrainCarry`: the one step every trainer runs, on a
  pure loss and a carry ``(params, opt_state, state)``;
* :func:`make_train_step` / :class:`TrainStep`: the plain-params form the range test
  used before models were supported (``init``, ``step(params, opt_state, batch)``);
* :class:`Devices`: the devices a trainer shards its batch over (``devices=`` of
  :func:`lrjax.range_test` and :func:`lrjax.train_snapshots`);
* :func:`choose_execution` and :func:`clear_caches`: how the steps run (one compiled
  loop or a host loop over compiled steps), and the one compile cache.

``pure_model``, ``PureModel``, ``make_model_step``, ``ModelStep``, ``Devices``,
``choose_execution`` and ``clear_caches`` are also ``lrjax.<name>``.
"""

from lrjax._engine.cache import clear_caches
from lrjax._engine.devices import Devices
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

__all__ = [
    "pure_model",
    "PureModel",
    "make_model_step",
    "ModelStep",
    "pure_train_step",
    "TrainCarry",
    "make_train_step",
    "TrainStep",
    "Devices",
    "choose_execution",
    "clear_caches",
]
