"""The standard ``train_fn`` of a search: :func:`make_train_fn`.

A trial is a whole training built on lrjax's engine: the model in the pure form of
:func:`lrjax.pure_model` (plain params, params + state, an ``nnx.Module`` or an
``eqx.Module``) and the one train step :func:`lrjax._engine.pure_train_step` shared with
the range test (gradient accumulation, threaded state, dropout keys, optimizers that take
``value=loss``). The hyperparameters arrive as traced scalars and go to
``optimizer_fn(hparams)``, which builds the optimizer (and its schedules) inside the
compiled program.

The training is available in pieces (``init``, ``step``, ``advance``, ``evaluate``) so
that the search can run it two ways (:attr:`TrainFn.execution`):

* ``"compiled"``: init, every step (the engine's ``lax.while_loop``) and evaluation in one program,
  which ``jax.vmap`` turns into a batch of trainings;
* ``"host"``: a Python loop over a compiled one-step program (no loop construct inside it),
  plus compiled init and evaluate programs (:class:`HostPrograms`). XLA's CPU backend runs
  a convolution's gradient inside a loop body 4-20x slower than alone (jax-ml/jax#12868),
  so ``"auto"`` picks this on a CPU for models with convolutions.

Successive halving stops after some steps, keeps the survivors' states on device and
continues them later (:mod:`lrjax.tuning.halving`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lrjax._engine.checks import check_transformation
from lrjax._engine.cache import weak
from lrjax._engine.data import check_numeric_leaves
from lrjax._engine.eval_params import evaluation_params
from lrjax._engine.execution import (
    check_execution,
    choose_execution,
    host_steps,
    loop,
    vmap_or_map,
)
from lrjax._engine.model import (
    PureModel,
    eval_model,
    leaf_differences,
    model_kind,
    pure_model,
)
from lrjax._engine.step import TrainCarry, pure_train_step

PyTree = Any
Metrics = dict[str, jax.Array]


class TrialState(NamedTuple):
    """One trial's training in progress: what successive halving carries between rungs."""

    params: PyTree  # the trainable arrays (nnx Params, Equinox float arrays, or the pytree)
    opt_state: PyTree
    data_key: jax.Array  # fixes this trial's order of the batches
    losses: jax.Array  # the last ``loss_window`` training losses (a ring buffer, NaN unfilled)
    state: PyTree = None  # the model state threaded through the steps (BatchNorm, nnx RNGs)
    loss_key: Any = None  # stochastic losses: step t's key is fold_in(loss_key, t)


#: ``make_train_fn(seed_reduce=)``: how the metrics of a trial's ``num_seeds`` trainings are
#: reduced to one (NaN propagates: a trial fails if any seed does).
SEED_REDUCTIONS: dict[str, Callable[..., jax.Array]] = {
    "mean": jnp.mean, "max": jnp.max, "min": jnp.min}


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _describe(out: Any) -> str:
    if isinstance(out, (tuple, list)):
        return f"a {type(out).__name__} of length {len(out)}"
    return type(out).__name__


def _unpack(out: Any, has_state: bool) -> tuple[Any, PyTree]:
    """``(params_or_model, state)`` from what ``init_fn`` returned, checked."""
    if has_state:
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise ValueError("init_fn: has_state=True needs init_fn(key) to return a pair "
                             f"(params_or_model, state), got {_describe(out)}.")
        if model_kind(out[0]) == "nnx":
            raise ValueError("has_state=True: an nnx model carries its own state (batch "
                             "statistics, RNG streams); init_fn should return the model alone "
                             "with has_state=False.")
        return out[0], out[1]
    eqx = sys.modules.get("equinox")
    if (eqx is not None and isinstance(out, tuple) and len(out) == 2
            and model_kind(out[0]) == "equinox" and isinstance(out[1], eqx.nn.State)):
        raise ValueError("init_fn returned (model, eqx.nn.State): pass has_state=True.")
    return out, None


class _Template(NamedTuple):
    """What every trial's init must look like, found by tracing ``init_fn`` once."""

    model: PureModel  # the pure functions (loss, merge, split) for every trial
    params: PyTree  # jax.ShapeDtypeStruct leaves
    state: PyTree


def _template(loss_fn: Callable, init_fn: Callable, has_state: bool, has_aux: bool,
              stochastic: bool) -> _Template:
    """Traces ``init_fn`` abstractly (nothing runs) and builds the pure model from it.

    Only an Equinox model with non-float arrays (kept as constants, not trained) needs a
    concrete call: those arrays cannot come out of an abstract trace.
    """
    parts: dict[str, Any] = {}

    def abstract(key: jax.Array) -> tuple[PyTree, PyTree]:
        obj, state = _unpack(init_fn(key), has_state)
        kind = parts["kind"] = model_kind(obj)
        if kind == "nnx":
            nnx = sys.modules["flax.nnx"]
            graphdef, params, rest = nnx.split(obj, nnx.Param, ...)
            parts["static"] = graphdef
            return params, rest
        if kind == "equinox":
            eqx = sys.modules["equinox"]
            params, static = eqx.partition(obj, eqx.is_inexact_array)
            parts["static"] = static
            return params, state
        return obj, state

    params, state = jax.eval_shape(abstract, jax.random.key(0))
    kind = parts["kind"]
    if kind == "nnx":
        obj = sys.modules["flax.nnx"].merge(parts["static"], params, state)
        model = pure_model(loss_fn, obj, has_aux=has_aux, stochastic=stochastic)
        return _Template(model, params, state)
    if kind == "equinox":
        eqx = sys.modules["equinox"]
        static = parts["static"]
        if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(static)):
            static = eqx.partition(_unpack(init_fn(jax.random.key(0)), has_state)[0],
                                   eqx.is_inexact_array)[1]
        # numpy placeholders: eqx.is_inexact_array sees arrays, nothing runs on a device.
        zeros = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), params)
        obj = eqx.combine(zeros, static)
    else:
        obj = params
    model = pure_model(loss_fn, obj, state=state if has_state else None, has_aux=has_aux,
                       stochastic=stochastic)
    return _Template(model, params, state)


class TrainFn:
    """``train_fn(hparams, key) -> metrics``: a whole training, built by :func:`make_train_fn`.

    Calling it trains ``num_steps`` steps in one compiled program. :func:`lrjax.search` and
    successive halving recognise it: they pass ``data`` as an argument of the compiled
    programs (not a constant baked into them) and run the trials the way
    :attr:`execution` says.
    """

    def __init__(self, loss_fn: Callable, init_fn: Callable, optimizer_fn: Callable,
                 data: PyTree, num_steps: int, eval_fn: Callable | None, loss_window: int,
                 shuffle: bool, num_seeds: int = 1, *, has_state: bool = False,
                 stochastic: bool = False, has_aux: bool = False, accumulation_steps: int = 1,
                 execution: str = "auto", seed_reduce: str = "mean") -> None:
        self.loss_fn, self.init_fn, self.optimizer_fn = loss_fn, init_fn, optimizer_fn
        self.data, self.num_steps, self.eval_fn = data, num_steps, eval_fn
        self.loss_window, self.shuffle, self.num_seeds = loss_window, shuffle, num_seeds
        self.has_state, self.stochastic, self.has_aux = has_state, stochastic, has_aux
        self.accumulation_steps = accumulation_steps
        self.seed_reduce = seed_reduce
        self.num_batches = int(jax.tree.leaves(data)[0].shape[0])
        self.default_objective = "eval_loss" if eval_fn is not None else "train_loss"
        self._execution = execution
        self._resolved: str | None = None
        self._template = _template(loss_fn, init_fn, has_state, has_aux, stochastic)
        self.kind = self._template.model.kind

    @property
    def execution(self) -> str:
        """``"compiled"`` or ``"host"``: how a search runs this training's steps.

        ``"auto"`` is resolved by :func:`lrjax.choose_execution` on the loss's gradient
        (traced abstractly once): ``"host"`` on a CPU when it contains a convolution.
        """
        if self._resolved is None:
            t = self._template
            k = self.accumulation_steps
            batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1 + (k > 1):], x.dtype),
                                 self.data)
            key = jax.eval_shape(lambda: jax.random.key(0)) if self.stochastic else None
            loss = t.model.loss

            def grad(params: PyTree, state: PyTree, batch: PyTree, key: Any) -> PyTree:
                return jax.grad(lambda p: loss(p, state, batch, key)[0])(params)

            self._resolved = choose_execution(self._execution, grad, t.params, t.state, batch,
                                              key)
        return self._resolved

    # With num_seeds > 1 a trial is num_seeds trainings: every leaf of its TrialState has a
    # leading seed axis, and the pieces vmap their one-seed versions over it, so successive
    # halving carries and re-batches the seeds of a trial together.

    def _per_seed(self, one: Callable, tree: Any) -> Any:
        """``one(tree)`` for one seed, else ``one`` vmapped over ``tree``'s leading seed axis."""
        return one(tree) if self.num_seeds == 1 else jax.vmap(one)(tree)

    def init(self, hparams: Mapping[str, jax.Array], key: jax.Array) -> TrialState:
        """The trial's state before its first step: ``init_fn``'s model and the optimizer's state.

        With ``num_seeds > 1``: one state per key of ``jax.random.split(key, num_seeds)``,
        stacked on a leading seed axis.
        """
        # One seed uses the key itself, so that num_seeds=1 is bit-for-bit as before.
        keys = key if self.num_seeds == 1 else jax.random.split(key, self.num_seeds)
        return self._per_seed(lambda k: self._init_one(hparams, k), keys)

    def _init_one(self, hparams: Mapping[str, jax.Array], key: jax.Array) -> TrialState:
        # split(key, 3)[:2] == split(key, 2): the init and data keys do not depend on
        # whether the loss is stochastic.
        keys = jax.random.split(key, 3 if self.stochastic else 2)
        obj, state = _unpack(self.init_fn(keys[0]), self.has_state)
        model = self._template.model
        if model_kind(obj) != model.kind:
            raise ValueError(f"init_fn must return the same kind of model on every call; got "
                             f"{type(obj).__name__} where the first call gave a {model.kind}.")
        params, nnx_state = model.split(obj)
        if model.kind == "nnx":
            state = nnx_state
        first = (self._template.params, self._template.state)
        differ = leaf_differences((params, state), first)
        if differ is not None:
            raise ValueError(
                "init_fn must return the same structure, shapes and dtypes on every call (each "
                f"trial calls it); this call gave {differ}, the first "
                f"{leaf_differences(first, (params, state))}. A Python counter or other Python "
                "state in init_fn changes what it returns.")
        tx = check_transformation("optimizer_fn(hparams)", self.optimizer_fn(hparams))
        opt_state = tx.init(params)
        losses = jnp.full((self.loss_window,), jnp.nan, jnp.float32)
        return TrialState(params, opt_state, keys[1], losses, state,
                          keys[2] if self.stochastic else None)

    def _order(self, data_key: jax.Array) -> jax.Array:
        if self.shuffle:
            return jax.random.permutation(data_key, self.num_batches)
        return jnp.arange(self.num_batches)

    def _step_with(self, tx: optax.GradientTransformation, order: jax.Array, st: TrialState,
                   data: PyTree, t: jax.Array) -> TrialState:
        """Global step ``t`` of one training: the engine's train step on batch ``order[t % B]``."""
        batch = jax.tree.map(lambda x: x[order[t % self.num_batches]], data)
        key = None if st.loss_key is None else jax.random.fold_in(st.loss_key, t)
        carry, loss, _ = pure_train_step(tx, self._template.model.loss,
                                         TrainCarry(st.params, st.opt_state, st.state), batch,
                                         key, accumulation_steps=self.accumulation_steps)
        # A ring buffer indexed by the global step: the last loss_window losses in any split
        # of the steps into rungs.
        window = st.losses.at[t % self.loss_window].set(loss.astype(jnp.float32))
        return TrialState(carry.params, carry.opt_state, st.data_key, window, carry.state,
                          st.loss_key)

    def step(self, state: TrialState, hparams: Mapping[str, jax.Array], data: PyTree,
             t: jax.Array) -> TrialState:
        """One training step, global step ``t`` (traced): what the host loop compiles."""
        def one(st: TrialState) -> TrialState:
            t_ = jnp.asarray(t, jnp.int32)
            return self._step_with(self.optimizer_fn(hparams), self._order(st.data_key), st,
                                   data, t_)

        return self._per_seed(one, state)

    def advance(self, state: TrialState, hparams: Mapping[str, jax.Array], data: PyTree,
                start: jax.Array, num_steps: int | jax.Array) -> TrialState:
        """Train ``num_steps`` more steps from global step ``start``; both may be traced.

        A traced ``num_steps`` makes the loop a ``while_loop``, so one compiled program serves
        rungs of any length; a Python int makes it a ``scan``. Both do the same arithmetic.
        """
        return self._per_seed(lambda st: self._advance_one(st, hparams, data, start, num_steps),
                              state)

    def _advance_one(self, state: TrialState, hparams: Mapping[str, jax.Array], data: PyTree,
                     start: jax.Array, num_steps: int | jax.Array) -> TrialState:
        tx = self.optimizer_fn(hparams)
        order = self._order(state.data_key)
        start = jnp.asarray(start, jnp.int32)
        return loop(lambda st, _, t: self._step_with(tx, order, st, data, t), None, state, None,
                    start, num_steps)

    def evaluate(self, state: TrialState) -> Metrics:
        """``train_loss`` (mean of the last ``loss_window`` step losses) and ``eval_fn``'s metrics.

        With ``num_seeds > 1``: each metric reduced over the seeds by ``seed_reduce`` (its
        mean, largest or smallest; NaN if any seed's is NaN).
        """
        metrics = self._per_seed(self._evaluate_one, state)
        if self.num_seeds == 1:
            return metrics
        reduce = SEED_REDUCTIONS[self.seed_reduce]
        return {name: reduce(value, axis=0) for name, value in metrics.items()}

    def eval_args(self, params: PyTree, state: PyTree) -> tuple:
        """What ``eval_fn`` is called with: ``(params,)``, ``(params, state)``, ``(model,)``
        in eval mode, or ``(model, state)`` (Equinox with state)."""
        if self.kind == "pytree":
            return (params, state) if self.has_state else (params,)
        model = eval_model(self._template.model, params, state)
        return (model, state) if self.has_state else (model,)

    def _evaluate_one(self, state: TrialState) -> Metrics:
        metrics = {"train_loss": jnp.nanmean(state.losses)}
        if self.eval_fn is not None:
            # Schedule-free optimizers are evaluated at their evaluation params.
            params = evaluation_params(state.opt_state, state.params)
            out = self.eval_fn(*self.eval_args(params, state.state))
            if isinstance(out, Mapping):
                metrics.update(out)
            else:
                metrics["eval_loss"] = out
        return metrics

    def call_with_data(self, hparams: Mapping[str, jax.Array], key: jax.Array,
                       data: PyTree) -> Metrics:
        """The whole training on ``data`` (an argument, so ``jit`` does not embed it)."""
        state = self.init(hparams, key)
        return self.evaluate(self.advance(state, hparams, data, 0, self.num_steps))

    def __call__(self, hparams: Mapping[str, jax.Array], key: jax.Array) -> Metrics:
        return self.call_with_data(hparams, key, self.data)


_ONCE_OPTIONS = {"xla_backend_optimization_level": 0}


def _over(batched: bool, fn: Callable, in_axes: Any = 0) -> Callable:
    if not batched:
        return fn
    # vmap_or_map: jax < 0.8 cannot batch a sharded convolution's gradient (a trial mesh).
    return vmap_or_map(fn) if in_axes == 0 else jax.vmap(fn, in_axes=in_axes)


def _take(tree: PyTree, index: jax.Array) -> PyTree:
    return jax.tree.map(lambda x: x[index], tree)


def _put(tree: PyTree, index: jax.Array, valid: jax.Array, part: PyTree) -> PyTree:
    # Padding rows point past the population, and "drop" discards their writes.
    target = jnp.where(valid, index, jax.tree.leaves(tree)[0].shape[0])
    return jax.tree.map(lambda whole, new: whole.at[target].set(new, mode="drop"), tree, part)


class HostPrograms:
    """The compiled pieces of a ``"host"`` search: init, one step, evaluate (jitted).

    ``batched=True``: each piece is vmapped over a leading trial axis (hyperparameters,
    trial numbers and states batched; data shared); ``False``: one trial. The programs call
    the :class:`TrainFn` through weak proxies, so caching them in
    :data:`lrjax._engine.PROGRAMS` does not keep it alive.

    * ``init(hparams, numbers, root) -> states``, trial ``n``'s key ``fold_in(root, n)``
      (on a CPU compiled without XLA's backend optimizations: it runs once per trial);
    * ``step(states, (hparams, data), t) -> (states, done)``: one step, no loop inside
      (:func:`lrjax._engine.host_steps`);
    * ``evaluate(states) -> metrics`` (checked by ``recorder``);
    * ``take(tree, index)`` and ``put(tree, index, valid, part)``: gather and scatter trials
      of a population (successive halving).
    """

    def __init__(self, train_fn: TrainFn, batched: bool, recorder: Any) -> None:
        init, step, evaluate = weak(train_fn.init), weak(train_fn.step), weak(train_fn.evaluate)
        self.batched = batched

        def init_program(hparams: Mapping, numbers: jax.Array, root: jax.Array) -> Any:
            one = lambda h, n: init(h, jax.random.fold_in(root, n))  # noqa: E731
            return _over(batched, one)(hparams, numbers)

        def body(states: Any, consts: tuple, t: jax.Array) -> Any:
            hparams, data = consts
            return _over(batched, lambda st, h: step(st, h, data, t))(states, hparams)

        def evaluate_program(states: Any) -> dict:
            return _over(batched, lambda st: recorder.record(evaluate(st)))(states)

        # Init runs once per trial: on a CPU, XLA's backend optimizations only cost compile
        # time there (a small CNN's init, mostly threefry and erf_inv: 2.7 s -> 0.4 s). Its
        # values may differ from the compiled path's in the last bit.
        options = _ONCE_OPTIONS if jax.default_backend() == "cpu" else None
        self.init = jax.jit(init_program, compiler_options=options)
        self.step = host_steps(body)
        self.evaluate = jax.jit(evaluate_program)
        self.take = jax.jit(_take)
        self.put = jax.jit(_put)


def _check_data(data: PyTree, accumulation_steps: int) -> None:
    leaves = jax.tree.leaves(data)
    if not leaves:
        raise ValueError("data is empty: give a pytree of arrays with a leading batch axis.")
    check_numeric_leaves("data", data)
    sizes = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in leaves}
    if None in sizes or len(sizes) != 1 or 0 in sizes:
        raise ValueError(
            "data's leaves must all have the same leading (batch) axis of length >= 1, got "
            f"shapes {[np.shape(leaf) for leaf in leaves]}."
        )
    k = accumulation_steps
    if k > 1:
        micro = {np.shape(leaf)[1] if np.ndim(leaf) > 1 else None for leaf in leaves}
        if micro != {k}:
            raise ValueError(
                f"data with accumulation_steps={k}: every leaf needs the layout (batches, {k}, "
                f"micro_batch, ...), the {k} micro-batches of a step on axis 1; got shapes "
                f"{[np.shape(leaf) for leaf in leaves]}.")


def make_train_fn(
    loss_fn: Callable[..., Any],
    init_fn: Callable[[jax.Array], Any],
    optimizer_fn: Callable[[Mapping[str, jax.Array]], optax.GradientTransformation],
    data: PyTree,
    *,
    num_steps: int,
    eval_fn: Callable[..., Any] | None = None,
    has_state: bool = False,
    stochastic: bool = False,
    has_aux: bool = False,
    accumulation_steps: int = 1,
    execution: str = "auto",
    loss_window: int = 10,
    shuffle: bool = True,
    num_seeds: int = 1,
    seed_reduce: str = "mean",
) -> TrainFn:
    """Build the ``train_fn(hparams, key) -> metrics`` of :func:`lrjax.search` for a model.

    A trial splits its key into an init key, a data key and (``stochastic``) a loss key
    (``jax.random.split(key, 3)``; the first two equal ``jax.random.split(key)``). It builds
    ``init_fn(init_key)`` (params, an ``nnx.Module`` or an ``eqx.Module``, with
    ``has_state`` paired with its state), ``tx = optimizer_fn(hparams)``, then runs
    ``num_steps`` steps of lrjax's train step (the range test's, see
    :func:`lrjax.make_model_step`)::

        g_t = mean_j grad_params loss(params, state, batch_t[j], fold_in(key_t, j))
        params <- params + tx.update(g_t, opt_state, params)

    with ``batch_t = data[order[t mod B]]`` for a permutation ``order`` of the ``B`` stacked
    batches drawn from the data key (the identity when ``shuffle=False``), ``key_t =
    fold_in(loss_key, t)``, ``j`` over the ``accumulation_steps`` micro-batches, and the
    state (batch statistics, nnx RNG counters) threaded through the steps, never optimized.

    Args:
        loss_fn: as in :func:`lrjax.range_test`: ``loss_fn(params, batch)``; with
            ``has_state``: ``loss_fn(params, state, batch) -> (loss, new_state)``; for an nnx
            or Equinox model ``loss_fn(model, batch)`` (Equinox with ``has_state``:
            ``loss_fn(model, state, batch) -> (loss, new_state)``; an nnx model carries its
            own state: batch statistics update in place and dropout draws a fresh mask each
            step from the model's RNG streams). With ``has_aux`` it returns ``(loss, aux)``
            (with state ``(loss, (new_state, aux))``; aux is dropped). With ``stochastic=True``
            it is called with a keyword ``key=``, a fresh key each step.
        init_fn: ``init_fn(key) -> params`` or a model, or with ``has_state`` a pair
            ``(params_or_model, state)`` (linen ``{"batch_stats": ...}``, an
            ``eqx.nn.State`` from ``eqx.nn.make_with_state``), so each trial has its own
            initialisation. It must return the same structure, shapes and dtypes on every
            call (it is traced once up front to find them).
        optimizer_fn: ``optimizer_fn(hparams) -> optax.GradientTransformation``; ``hparams`` is
            a dict of traced scalars, so build schedules from them with traceable factories
            (optax's, or lrjax's where they accept traced values). An optimizer that takes
            extra arguments also gets ``value=loss`` (``optax.contrib.reduce_on_plateau``).
        data: a pytree of arrays whose leading axis indexes ``B >= 1`` batches (e.g.
            :func:`lrjax.data.digits.stacked_batches`). With ``accumulation_steps=k > 1`` every
            leaf has the layout ``(B, k, micro_batch, ...)``: a step's ``k`` micro-batches on
            axis 1 (checked).
        num_steps: steps per trial, >= 1 (static).
        eval_fn: optional evaluation of the final trained model, returning a scalar
            (reported as ``eval_loss``) or a dict of scalars: ``eval_fn(params)``, with
            ``has_state`` ``eval_fn(params, state)``; for a model ``eval_fn(model)`` on a fresh
            copy in eval mode (nnx ``model.eval()``: dropout off, BatchNorm on its running
            averages; Equinox ``eqx.nn.inference_mode``), Equinox with state
            ``eval_fn(model, state)``.
        has_state: ``init_fn`` returns ``(params_or_model, state)`` and ``loss_fn`` takes and
            returns the state.
        stochastic: ``loss_fn`` takes ``key=`` (dropout for pytree params and Equinox).
        has_aux: ``loss_fn`` also returns aux (ignored by the search).
        accumulation_steps: micro-batches averaged per step (see ``data``), >= 1.
        execution: ``"compiled"`` (init, the steps and evaluation in one program, vmapped
            over the trials), ``"host"`` (a Python loop over a compiled step program, plus
            compiled init and evaluate programs) or ``"auto"``: ``"host"`` on a CPU when the
            loss's gradient contains a convolution, whose gradient XLA:CPU runs 4-20x slower
            inside a loop body (jax-ml/jax#12868), else ``"compiled"``. Both give the same
            trial values; see :attr:`TrainFn.execution`.
        loss_window: ``train_loss`` is the mean of the last ``loss_window`` step losses.
        shuffle: draw each trial's batch order from its key.
        num_seeds: trainings per trial, >= 1 (static). With ``S > 1`` a trial splits its key
            into ``S`` keys (``jax.random.split(key, S)``), trains one model from each (its own
            init and batch order) vmapped in the same compiled program, and reports each
            metric's mean over the ``S`` trainings: an estimate of the hyperparameters'
            *expected* metric rather than one training's, whose held-out loss can vary by tens
            of percent from seed to seed. The search's trial keys then fix the seed sets; give
            every trial the same key (common random numbers) to compare hyperparameters on the
            same seeds. A trial fails (NaN) if any of its trainings does. Costs ``S`` times the
            compute of one training. ``1`` (the default) trains once from the trial's key.
        seed_reduce: how ``num_seeds > 1`` trainings make one trial's metrics: ``"mean"``
            (the default: the expected metric), ``"max"`` or ``"min"`` (the worst seed of a
            loss, or of a score such as accuracy). Every metric is reduced the same way. The
            worst seed is the risk-averse choice near the edge of stability, where a rate
            trains well from some seeds and badly from others and two lucky seeds can win a
            mean. Searching the learning rate in ``RangeTestResult.search_space()`` on the
            finder benchmark (``benchmarks/finder_quality.py --search 8 --pick worst``),
            the worse of 2 seeds' validation losses picked a rate within 0.95 of the best
            on 53 of its first 56 problems, their mean on 52 (down to 0.81 against 0.94);
            equal on a batch written to check it. :meth:`lrjax.SearchResult.plateau_trial`
            then picks the middle of the worst seeds' plateau, away from a cliff. See
            ``docs/guides/suggestions.md``.

    Returns:
        A :class:`TrainFn`; its metrics are ``{"train_loss", ...eval_fn's}`` (reduced over
        the seeds by ``seed_reduce`` when ``num_seeds > 1``), and its default objective is
        ``eval_loss`` with a scalar ``eval_fn``, else ``train_loss``.

    Raises:
        ValueError: ``init_fn`` returns one value with ``has_state=True``, or a different
            structure/shape/dtype from one call to the next; ``data``'s micro-batch axis is
            not ``accumulation_steps`` long; bad counts.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> data = {"x": jnp.ones((4, 8, 3)), "y": jnp.zeros((4, 8))}
        >>> loss = lambda w, b: jnp.mean((b["x"] @ w - b["y"]) ** 2)
        >>> train_fn = make_train_fn(loss, lambda k: jnp.ones(3), lambda h: optax.sgd(h["lr"]),
        ...                          data, num_steps=20)
        >>> float(train_fn({"lr": jnp.float32(0.1)}, jax.random.key(0))["train_loss"]) < 1e-3
        True
        >>> averaged = make_train_fn(loss, lambda k: jax.random.normal(k, (3,)),
        ...                          lambda h: optax.sgd(h["lr"]), data, num_steps=20, num_seeds=4)
        >>> averaged({"lr": jnp.float32(0.1)}, jax.random.key(0))["train_loss"].shape  # 4 inits
        ()

        A Flax nnx model with dropout and batch norm (its state is threaded, dropout draws a
        fresh mask each step, and ``eval_fn`` sees the model in eval mode):

        >>> from flax import nnx
        >>> class Net(nnx.Module):
        ...     def __init__(self, key):
        ...         rngs = nnx.Rngs(params=key, dropout=key)
        ...         self.fc, self.bn = nnx.Linear(3, 8, rngs=rngs), nnx.BatchNorm(8, rngs=rngs)
        ...         self.drop, self.out = nnx.Dropout(0.2, rngs=rngs), nnx.Linear(8, 1, rngs=rngs)
        ...     def __call__(self, x):
        ...         return self.out(self.drop(nnx.relu(self.bn(self.fc(x)))))[:, 0]
        >>> mse = lambda model, b: jnp.mean((model(b["x"]) - b["y"]) ** 2)
        >>> nets = make_train_fn(mse, Net, lambda h: optax.adam(h["lr"]), data, num_steps=5,
        ...                      eval_fn=lambda model: mse(model, {"x": data["x"][0],
        ...                                                       "y": data["y"][0]}))
        >>> sorted(nets({"lr": jnp.float32(1e-2)}, jax.random.key(0)))
        ['eval_loss', 'train_loss']

    References:
        Bergstra & Bengio, "Random Search for Hyper-Parameter Optimization", JMLR 2012.
        Bouthillier et al., "Accounting for Variance in Machine Learning Benchmarks", MLSys 2021
        (seed-to-seed variance of a training and averaging over seeds).
        jax-ml/jax#12868 (convolution gradients in loop bodies on XLA:CPU).
    """
    for name, fn in (("loss_fn", loss_fn), ("init_fn", init_fn), ("optimizer_fn", optimizer_fn)):
        if not callable(fn):
            raise TypeError(f"{name} must be callable, got {fn!r}.")
    if eval_fn is not None and not callable(eval_fn):
        raise TypeError(f"eval_fn must be callable or None, got {eval_fn!r}.")
    num_steps = _check_int("num_steps", num_steps, 1)
    loss_window = _check_int("loss_window", loss_window, 1)
    num_seeds = _check_int("num_seeds", num_seeds, 1)
    if not isinstance(seed_reduce, str) or seed_reduce not in SEED_REDUCTIONS:
        raise ValueError(f"seed_reduce must be one of {list(SEED_REDUCTIONS)}, got "
                         f"{seed_reduce!r}.")
    accumulation_steps = _check_int("accumulation_steps", accumulation_steps, 1)
    for name, flag in (("shuffle", shuffle), ("has_state", has_state),
                       ("stochastic", stochastic), ("has_aux", has_aux)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool, got {flag!r}.")
    check_execution(execution)
    _check_data(data, accumulation_steps)
    data = jax.tree.map(jnp.asarray, data)
    return TrainFn(loss_fn, init_fn, optimizer_fn, data, num_steps, eval_fn, loss_window, shuffle,
                   num_seeds, has_state=has_state, stochastic=stochastic, has_aux=has_aux,
                   accumulation_steps=accumulation_steps, execution=execution,
                   seed_reduce=seed_reduce)
