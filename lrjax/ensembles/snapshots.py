"""Snapshot ensembles: the snapshot schedule and one compiled training that keeps each
cycle's end (the ensemble's prediction lives in :mod:`lrjax.ensembles.prediction`).

Huang et al. (2017) train one network on a cyclic cosine schedule with warm restarts and
keep the weights at the end of every cycle: each cycle anneals into a different local
optimum, so one training budget gives M ensemble members. Here that training runs on
lrjax's engine (one compiled loop, or on CPU for convolutions a host loop over one
compiled step); the M cycle-end params are written into a buffer stacked on a leading
axis, kept on device, and returned with the loss curve.

**Memory.** The snapshot buffer holds M copies of the params (``keep_last=m``: m copies)
beside the training's own params and optimizer state, on device, for the whole run.

Weight averaging of the same trajectory (SWA) lives in :mod:`lrjax.ensembles.averaging`.

References:
    Huang, Li, Pleiss, Liu, Hopcroft & Weinberger, `Snapshot Ensembles: Train 1, get M
    for free <https://arxiv.org/abs/1704.00109>`_, ICLR 2017.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lrjax._engine.data import (
    check_numeric_leaves,
    _batch_sizes,
    _data_form,
    _place,
    _pull,
    _resolve_mesh,
    _stack_chunk,
    _stacked_steps,
)
from lrjax._engine.eval_params import evaluation_params
from lrjax._engine.devices import Devices, resolve_devices
from lrjax._engine.factory_checks import _check_callables
from lrjax._engine.schedule_math import _cosine_interpolate, _float_dtype, _integer_count
from lrjax._engine.checks import MAX_COUNT, as_prng_key, check_flag, check_steps, check_value
from lrjax._engine.cache import PROGRAMS, fn_key, weak
from lrjax._engine import processes
from lrjax._engine.execution import (
    check_execution,
    choose_execution,
    compiled_loop,
    host_steps,
    run_host,
)
from lrjax._engine.model import PureLoss, model_kind, pure_model
from lrjax._engine.step import (
    LossFn,
    OptimizerFactory,
    PyTree,
    TrainCarry,
    pure_train_step,
)

# A restart is a rise of the schedule by more than this share of its largest value: it
# ignores float32 rounding on the flat bottom of a long cosine.
_RISE_RTOL = 1e-6


# --------------------------------------------------------------------------------------
# The schedule (Huang et al. 2017, eq. 2).
# --------------------------------------------------------------------------------------
def _snapshot_values(init_value: Any, cycle_length: int) -> optax.Schedule:
    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        dtype = _float_dtype()
        position = (_integer_count(count) % cycle_length).astype(dtype)  # integers: exact restarts
        value = _cosine_interpolate(jnp.asarray(init_value, dtype), jnp.zeros((), dtype),
                                    position / cycle_length)
        return value.astype(dtype)

    return schedule


def snapshot_schedule(init_value: float, total_steps: int, num_cycles: int) -> optax.Schedule:
    """The snapshot-ensemble schedule: ``num_cycles`` cosine cycles restarting at ``init_value``.

    Huang et al. (2017), eq. 2, counted from 0 (the paper counts from 1)::

        C = ceil(total_steps / num_cycles)
        value(t) = init_value / 2 * (cos(pi * (t mod C) / C) + 1)

    The value is ``init_value`` at every restart ``t = 0, C, 2C, ...`` and falls towards 0
    (never reaching it) at each cycle's last step ``t = kC - 1``. When ``num_cycles`` does
    not divide ``total_steps`` the last cycle is cut short at ``total_steps``. The cycle is
    found by integer arithmetic, so restarts are exact for every count; counts are clamped
    to ``[0, 2**31 - 1]`` (floats floored), as in every lrjax schedule. When ``C`` is so
    large that fewer than ``num_cycles`` cycles start before ``total_steps`` (e.g. 10 steps,
    6 cycles: ``C = 2``, 5 cycles), the formula still holds; :func:`train_snapshots` refuses
    such a pair.

    Args:
      init_value: the value at each restart (the paper's alpha_0), finite and ``>= 0``; may
        be a JAX value, traced or not (checked only when concrete).
      total_steps: the training's steps ``T``, an integer in ``[1, 2**31 - 1]``.
      num_cycles: the number of cycles ``M`` (snapshots), an integer in ``[1, total_steps]``.

    Returns:
      An optax schedule ``count -> value`` in the default float dtype (float32).

    Example:
      >>> schedule = snapshot_schedule(0.1, total_steps=10, num_cycles=3)  # C = 4
      >>> [round(float(v), 4) for v in schedule(jnp.arange(10))]
      [0.1, 0.0854, 0.05, 0.0146, 0.1, 0.0854, 0.05, 0.0146, 0.1, 0.0854]

    References:
      Huang et al., `Snapshot Ensembles: Train 1, get M for free
      <https://arxiv.org/abs/1704.00109>`_, ICLR 2017, eq. 2.
    """
    check_value("init_value", init_value, low=0.0)
    total_steps = check_steps("total_steps", total_steps)
    num_cycles = check_steps("num_cycles", num_cycles, 1, total_steps)
    return _snapshot_values(init_value, -(-total_steps // num_cycles))


def snapshot_cycle_ends(total_steps: int, num_cycles: int) -> np.ndarray:
    """The last step of each cycle of :func:`snapshot_schedule` (where snapshots are taken).

    Cycle ``k`` (from 0) covers steps ``[kC, min((k + 1)C, T))`` with ``C = ceil(T / M)``,
    so the ends are ``C - 1, 2C - 1, ..., (M - 1)C - 1, T - 1``.

    Args:
      total_steps: ``T``, an integer ``>= 1``.
      num_cycles: ``M``, an integer in ``[1, T]`` such that ``M`` cycles start before ``T``.

    Returns:
      An int array of the ``M`` end steps, increasing.

    Example:
      >>> snapshot_cycle_ends(10, 3).tolist()
      [3, 7, 9]

    References:
      Huang et al., `Snapshot Ensembles <https://arxiv.org/abs/1704.00109>`_, ICLR 2017.
    """
    total_steps = check_steps("total_steps", total_steps)
    num_cycles = check_steps("num_cycles", num_cycles, 1, total_steps)
    cycle = -(-total_steps // num_cycles)
    started = -(-total_steps // cycle)
    if started != num_cycles:
        raise ValueError(
            f"num_cycles={num_cycles} with {total_steps} steps gives cycles of ceil("
            f"{total_steps}/{num_cycles}) = {cycle} steps, so only {started} cycles start before "
            f"step {total_steps}; choose num_cycles <= {started} or more steps."
        )
    return np.append(np.arange(1, num_cycles) * cycle - 1, total_steps - 1).astype(np.int64)


def schedule_cycle_ends(schedule: optax.Schedule, num_steps: int) -> np.ndarray:
    """The cycle ends of any cyclic schedule over ``num_steps`` steps, read off its values.

    Step ``t`` ends a cycle when the schedule reached it falling (``lr(t) <= lr(t-1)``) and
    rises after it (``lr(t+1) > lr(t)`` by more than ``1e-6 * max lr``): the step before
    each SGDR restart, each CLR cycle's base. The last step ``num_steps - 1`` always ends
    the last cycle.

    Args:
      schedule: an optax schedule, e.g. :func:`lrjax.sgdr` or :func:`lrjax.cyclic`.
      num_steps: the training's steps, ``>= 1``.

    Returns:
      An int array of the end steps, increasing, the last one ``num_steps - 1``.

    Example:
      >>> from lrjax.schedules.cyclical import sgdr
      >>> schedule_cycle_ends(sgdr(0.1, period=4, period_mult=2.0), 12).tolist()
      [3, 11]

    References:
      Loshchilov & Hutter, `SGDR <https://arxiv.org/abs/1608.03983>`_, ICLR 2017.
    """
    num_steps = check_steps("num_steps", num_steps)
    # One compiled evaluation: many small eager ops cost far more than one compile.
    values = np.asarray(jax.jit(schedule)(jnp.arange(num_steps + 1)), np.float64)
    if values.shape != (num_steps + 1,) or not np.all(np.isfinite(values)):
        raise ValueError("schedule must map an array of counts to finite values of its shape.")
    tolerance = _RISE_RTOL * max(float(np.max(np.abs(values))), np.finfo(np.float32).tiny)
    rises = np.diff(values) > tolerance  # rises[t]: lr(t + 1) > lr(t)
    steps = np.arange(1, num_steps)
    ends = steps[rises[steps] & (values[steps] <= values[steps - 1])]
    return np.append(ends[ends < num_steps - 1], num_steps - 1).astype(np.int64)


def _check_cycle_ends(cycle_ends: Sequence[int], num_steps: int, num_cycles: int) -> np.ndarray:
    ends = np.asarray(cycle_ends)
    if ends.ndim != 1 or not (np.issubdtype(ends.dtype, np.integer) or ends.size == 0):
        raise ValueError(f"cycle_ends must be a 1-D sequence of integer steps, got {cycle_ends!r}.")
    if ends.size != num_cycles:
        raise ValueError(f"cycle_ends has {ends.size} steps; num_cycles={num_cycles} needs as many.")
    if np.any(ends < 0) or np.any(ends >= num_steps) or np.any(np.diff(ends) <= 0):
        raise ValueError(f"cycle_ends must increase strictly within [0, num_steps - 1 = "
                         f"{num_steps - 1}], got {ends.tolist()}.")
    return ends.astype(np.int64)


# --------------------------------------------------------------------------------------
# The compiled training.
# --------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class SnapshotResult:
    """What :func:`train_snapshots` returns; unpacks as ``snapshots, losses``.

    Attributes:
      params: the snapshots: the trainable params with a leading axis of ``keep_last`` (or
        ``num_cycles``) members, oldest first, on device (for an nnx / Equinox model, its
        trainable arrays as :func:`lrjax.pure_model` splits them; :meth:`model` rebuilds it).
      losses: numpy ``(num_steps,)`` float32, the training loss of each step.
      learning_rates: numpy ``(num_steps,)`` float32, the rate each step trained at.
      steps: numpy int, the step after which each kept snapshot was taken.
      cycle_ends: numpy int, the end step of every cycle (``num_cycles`` of them).
      state: the threaded state (batch statistics, nnx RNG counters) at each kept snapshot,
        stacked like ``params``; None without state.
      aux: per-step aux (leading step axis) with ``has_aux``, else None.
      opt_state: the optimizer state after the last step (e.g. for
        :func:`lrjax.swa_params` when the optimizer is wrapped in :func:`lrjax.swa`).
      execution: how the steps ran, ``"compiled"`` (one program) or ``"host"`` (a host
        loop over a one-step program); what ``execution="auto"`` chose.
    """

    params: PyTree
    losses: np.ndarray
    learning_rates: np.ndarray
    steps: np.ndarray
    cycle_ends: np.ndarray
    state: PyTree = None
    aux: Any = None
    opt_state: optax.OptState = None
    merge: Callable[[PyTree, PyTree], Any] | None = dataclasses.field(default=None, repr=False)
    execution: str = "compiled"

    def __iter__(self):
        return iter((self.params, self.losses))

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> Any:
        return (self.params, self.losses)[index]

    def model(self, index: int) -> Any:
        """Snapshot ``index`` (negative counts from the last) as the kind of object trained:
        the params pytree, ``(params, state)`` with ``state=``, or a new nnx / Equinox
        model (nnx with its state)."""
        count = int(self.steps.size)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) \
                or not -count <= index < count:
            raise ValueError(f"index must be an integer in [-{count}, {count - 1}], got {index!r}.")
        pick = lambda tree: jax.tree.map(lambda x: x[index], tree)  # noqa: E731
        params, state = pick(self.params), pick(self.state)
        if self.merge is not None:
            return self.merge(params, state)
        return params if state is None else (params, state)


class _Static(NamedTuple):
    """What one step of the program reads besides its arguments (hashable but ``loss``)."""

    loss: PureLoss  # the pure form of weak(loss_fn) (lrjax._engine.model.pure_model)
    optimizer: OptimizerFactory  # weak(optimizer)
    schedule: optax.Schedule | None  # weak(schedule); None: snapshot_schedule(init_value)
    data_fn: Callable[[jax.Array, jax.Array], PyTree] | None  # weak(data_fn)
    num_steps: int
    cycle_length: int
    num_kept: int
    stochastic: bool
    accumulation_steps: int


class _Consts(NamedTuple):
    """What every step reads (the engine's ``consts``)."""

    data: PyTree  # stacked batches (leading step axis), None with a data function
    slots: jax.Array  # (num_steps,) int32: the snapshot row step t writes, -1 for none
    init_value: jax.Array  # the default schedule's restart value
    data_key: jax.Array
    step_key: jax.Array


class _Carry(NamedTuple):
    """What the steps carry (the engine's ``carry``): the training and its records."""

    train: TrainCarry
    snapshots: PyTree  # (num_kept, ...) params rows
    snapshot_states: PyTree  # (num_kept, ...) state rows (None without state)
    losses: jax.Array  # (num_steps,) float32, written at column t
    learning_rates: jax.Array  # (num_steps,) float32
    aux: PyTree  # (num_steps, ...) per-step aux, None without has_aux


def _function_batch(static: _Static, data_key: jax.Array, step: jax.Array) -> PyTree:
    """The data function's batch ``data_fn(fold_in(key, i), i)``; micro-batches stacked."""
    k = static.accumulation_steps

    def one(i: jax.Array) -> PyTree:
        return static.data_fn(jax.random.fold_in(data_key, i), i)

    return one(step) if k == 1 else jax.vmap(one)(step * k + jnp.arange(k, dtype=step.dtype))


def _empty_buffer(tree: PyTree, rows: int) -> PyTree:
    return jax.tree.map(lambda x: jnp.zeros((rows,) + jnp.shape(x), jnp.result_type(x)), tree)


def _write_row(buffer: PyTree, slot: jax.Array, tree: PyTree) -> PyTree:
    """``buffer[slot] = tree`` when ``slot >= 0``, else ``buffer`` untouched.

    A ``lax.cond``: the write runs only at the M cycle ends, where a select rewrote a row
    at every step (about 15% of a small MLP's step). Nothing but the copy is inside the
    branch, so XLA:CPU's slow loop bodies (convolutions) do not apply.
    """
    def write(buffer: PyTree) -> PyTree:
        return jax.tree.map(lambda buf, x: buf.at[slot].set(x.astype(buf.dtype)), buffer, tree)

    return jax.lax.cond(slot >= 0, write, lambda buffer: buffer, buffer)


def _schedule_and_tx(static: _Static, init_value: jax.Array) -> tuple:
    schedule = static.schedule or _snapshot_values(init_value, static.cycle_length)
    return schedule, static.optimizer(learning_rate=schedule)


def _train_step(static: _Static, train: TrainCarry, consts: _Consts, t: jax.Array) -> tuple:
    """Step ``t``: ``(train, loss, aux, learning_rate)``."""
    schedule, tx = _schedule_and_tx(static, consts.init_value)
    if static.data_fn is not None:
        batch = _function_batch(static, consts.data_key, t)
    else:
        batch = jax.tree.map(lambda x: jax.lax.dynamic_index_in_dim(x, t, keepdims=False),
                             consts.data)
    key = jax.random.fold_in(consts.step_key, t) if static.stochastic else None
    train, loss, aux = pure_train_step(tx, static.loss, train, batch, key,
                                       accumulation_steps=static.accumulation_steps)
    return train, loss, aux, jnp.asarray(schedule(t), jnp.float32)


def _body(static: _Static, carry: _Carry, consts: _Consts, t: jax.Array) -> _Carry:
    """One step for the engine: train, write the cycle-end snapshot row and column ``t``."""
    train, loss, aux, lr = _train_step(static, carry.train, consts, t)
    slot = consts.slots[t]
    column = lambda buf, x: buf.at[t].set(jnp.asarray(x, buf.dtype))  # noqa: E731
    return _Carry(train=train,
                  # A member is the model to evaluate (schedule-free: its evaluation params).
                  snapshots=_write_row(carry.snapshots, slot,
                                       evaluation_params(train.opt_state, train.params)),
                  snapshot_states=_write_row(carry.snapshot_states, slot, train.state),
                  losses=column(carry.losses, loss),
                  learning_rates=column(carry.learning_rates, lr),
                  aux=jax.tree.map(column, carry.aux, aux))


def _init(static: _Static, params: PyTree, state: PyTree, data: PyTree, init_value: jax.Array,
          key: jax.Array) -> tuple[_Carry, _Consts]:
    """The carry before step 0 (new buffers: the user's arrays are never written) and the
    keys of the consts (``data`` and ``slots`` are filled in by the caller)."""
    _, tx = _schedule_and_tx(static, init_value)
    data_key, step_key = jax.random.split(key)
    train = TrainCarry(params, tx.init(params), state)
    consts = _Consts(data, None, init_value, data_key, step_key)
    aux = jax.eval_shape(lambda: _train_step(static, train, consts, jnp.int32(0))[2])
    carry = _Carry(train=jax.tree.map(jnp.copy, train),  # fresh buffers, never the user's
                   snapshots=_empty_buffer(params, static.num_kept),
                   snapshot_states=_empty_buffer(state, static.num_kept),
                   losses=jnp.zeros(static.num_steps, jnp.float32),
                   learning_rates=jnp.zeros(static.num_steps, jnp.float32),
                   aux=_empty_buffer(aux, static.num_steps))
    return carry, (data_key, step_key)


class _Programs:
    """One configuration's programs: the initial carry, and the steps run either way.

    Cached in the engine's :data:`~lrjax._engine.cache.PROGRAMS`; every user function it
    calls is a weak proxy, so it keeps none of them (nor any array) alive.
    """

    def __init__(self, static: _Static) -> None:
        self.static = static
        self.init = jax.jit(functools.partial(_init, static))
        self.body = functools.partial(_body, static)
        self.choices: dict[Any, str] = {}  # abstract inputs -> the "auto" strategy
        self._programs: dict[str, Callable[..., Any]] = {}

    def _get(self, name: str, build: Callable[[], Callable[..., Any]]) -> Callable[..., Any]:
        if name not in self._programs:
            self._programs[name] = build()
        return self._programs[name]

    def compiled(self) -> Callable[..., Any]:
        """``program(params, state, data, slots, init_value, key) -> carry``: the initial
        carry and the engine's :func:`compiled_loop` over every step, as one program."""

        def build() -> Callable[..., Any]:
            static, loop = self.static, compiled_loop(self.body)

            def run(params: PyTree, state: PyTree, data: PyTree, slots: jax.Array,
                    init_value: jax.Array, key: jax.Array) -> _Carry:
                carry, (data_key, step_key) = _init(static, params, state, data, init_value, key)
                consts = _Consts(data, slots, init_value, data_key, step_key)
                return loop(carry, consts, 0, static.num_steps)

            return jax.jit(run)

        return self._get("compiled", build)

    def host(self) -> Callable[..., Any]:
        """The engine's one-step :func:`host_steps` program."""
        return self._get("host", lambda: host_steps(self.body))

    def choose(self, execution: str, *args: Any) -> str:
        """``execution``, or for ``"auto"`` the engine's choice for one step (cached on the
        shapes of ``args = (params, state, data, slots, init_value, key)``)."""
        if execution != "auto":
            return execution
        leaves, tree = jax.tree.flatten(args)
        signature = (tree, tuple((jnp.shape(x), jnp.result_type(x)) for x in leaves))
        if signature not in self.choices:
            params, state, data, slots, init_value, key = args
            carry, (data_key, step_key) = jax.eval_shape(self.init, params, state, data,
                                                         init_value, key)
            consts = jax.eval_shape(lambda *c: _Consts(*c), data, slots, init_value, data_key,
                                    step_key)
            self.choices[signature] = choose_execution(
                "auto", self.body, carry, consts, jax.ShapeDtypeStruct((), jnp.int32))
        return self.choices[signature]


def _model_key(params: Any) -> Any:
    """What the pure loss closes over besides ``loss_fn``: nnx's graph, Equinox's static part.

    Equal keys give equal pure losses, so a repeated call reuses the compiled program; an
    unhashable model gives an unhashable key (built anew every call, never cached).
    """
    kind = model_kind(params)
    if kind == "pytree":
        return kind
    if kind == "nnx":
        nnx = sys.modules["flax.nnx"]
        static = nnx.split(params, nnx.Param, ...)[0]
    else:
        eqx = sys.modules["equinox"]
        static = eqx.partition(params, eqx.is_inexact_array)[1]
    try:
        hash(static)
    except TypeError:
        return [kind]  # unhashable on purpose: PROGRAMS builds without keeping it
    return kind, static


def _programs(loss_fn: LossFn, params: Any, state: PyTree, has_aux: bool, stochastic: bool,
              optimizer: OptimizerFactory, schedule: optax.Schedule | None,
              data_fn: Callable | None, sizes: dict) -> _Programs:
    """This configuration's :class:`_Programs`, from the engine's cache.

    Keyed on the user's functions (weakly, :func:`~lrjax._engine.cache.fn_key`), the
    model's static structure and the static options; the programs call the functions
    through :func:`~lrjax._engine.cache.weak`.
    """
    key = ("train_snapshots", fn_key(loss_fn), fn_key(optimizer), fn_key(schedule),
           fn_key(data_fn), _model_key(params), state is None, has_aux, stochastic,
           *sorted(sizes.items()))

    def build() -> _Programs:
        model = pure_model(weak(loss_fn), params, state=state, has_aux=has_aux,
                           stochastic=stochastic)
        return _Programs(_Static(loss=model.loss, optimizer=weak(optimizer),
                                 schedule=weak(schedule), data_fn=weak(data_fn),
                                 stochastic=stochastic, **sizes))

    return PROGRAMS.get(key, build)


def _prepare_data(data: Any, num_steps: int, accumulation_steps: int,
                  mesh: Mesh | None, data_axis: str) -> tuple[PyTree, Any, Mesh | None]:
    """``(stacked data or None, data function or None, mesh)``, data placed on device."""
    needed = num_steps * accumulation_steps
    form = _data_form(data)
    if form == "function":
        return None, data, mesh
    if form == "iterable":
        iterator = iter(data)
        data = _stack_chunk(_pull(iterator, needed, needed, 0), needed)
    else:
        data = _stacked_steps(data, needed)
    if accumulation_steps > 1:
        data = jax.tree.map(
            lambda x: jnp.reshape(x, (num_steps, accumulation_steps) + np.shape(x)[1:]), data)
    leading = 1 if accumulation_steps == 1 else 2
    # Under jax.distributed each process passes its share of the batch axis.
    processes.check_same_shapes("data", data)
    sizes = _batch_sizes(data, leading)  # arrays assembled over every process: whole
    mesh = (_resolve_mesh(mesh, data_axis, set(), sizes) if processes.is_global(data)
            else _resolve_mesh(mesh, data_axis, sizes))
    if mesh is None:
        return _place(data, None), None, None

    def sharding(x: Any) -> NamedSharding:
        spec = () if np.ndim(x) <= leading else (None,) * leading + (data_axis,)
        return NamedSharding(mesh, PartitionSpec(*spec))

    return _place(data, sharding), None, mesh


def _resolve_ends(num_steps: int, num_cycles: int, schedule: optax.Schedule | None,
                  cycle_ends: Sequence[int] | None) -> np.ndarray:
    if cycle_ends is not None:
        return _check_cycle_ends(cycle_ends, num_steps, num_cycles)
    if schedule is None:
        return snapshot_cycle_ends(num_steps, num_cycles)
    ends = schedule_cycle_ends(schedule, num_steps)
    if ends.size != num_cycles:
        raise ValueError(
            f"num_cycles={num_cycles}, but the schedule has {ends.size} cycles in {num_steps} "
            f"steps (ending at steps {ends.tolist()[:10]}{'...' if ends.size > 10 else ''}); "
            "pass num_cycles to match, or cycle_ends=[...] explicitly."
        )
    return ends


def train_snapshots(
    loss_fn: LossFn,
    params: PyTree,
    optimizer: OptimizerFactory,
    data: Any,
    *,
    num_steps: int,
    num_cycles: int,
    init_value: float | None = None,
    schedule: optax.Schedule | None = None,
    cycle_ends: Sequence[int] | None = None,
    keep_last: int | None = None,
    state: PyTree = None,
    has_aux: bool = False,
    stochastic: bool = False,
    accumulation_steps: int = 1,
    key: jax.Array | int | None = None,
    devices: Devices | None = None,
    execution: str = "auto",
    **deprecated: Any,
) -> SnapshotResult:
    """Trains once on a cyclic schedule and keeps the params at the end of every cycle.

    By default the schedule is :func:`snapshot_schedule` ``(init_value, num_steps,
    num_cycles)`` and the snapshots are taken after steps ``C - 1, 2C - 1, ..., T - 1``
    (:func:`snapshot_cycle_ends`). With ``schedule=`` (any SGDR / CLR / custom cyclic
    schedule) the ends are ``cycle_ends`` or, by default, read off the schedule
    (:func:`schedule_cycle_ends`). Step ``t`` is the train step of
    :func:`lrjax.engine.make_train_step` on batch ``t`` with ``optimizer(learning_rate=schedule)``.

    Execution: the steps run on lrjax's engine (:mod:`lrjax._engine.execution`), one of two
    ways with the same arithmetic. ``execution="compiled"`` runs all steps as one compiled
    loop (``lax.while_loop``), ``"host"`` as a Python loop over one compiled step (data,
    params and the snapshot buffers stay on device; nothing comes back to the host until
    the end). ``"auto"`` (default) takes ``"host"`` on a CPU when the step contains a
    convolution (read off its jaxpr: XLA's CPU backend runs convolution gradients inside
    loop bodies several times slower, jax-ml/jax#12868) and ``"compiled"`` otherwise (any
    GPU/TPU, dense models on CPU); :attr:`SnapshotResult.execution` tells which ran.
    The programs are compiled once per configuration and kept in lrjax's one compile
    cache (``init_value`` and the data's values are runtime inputs: changing them never
    recompiles; the callables are keys, held weakly, so pass the same ``loss_fn``,
    ``optimizer``, ``schedule`` and data function objects again, or equal
    ``functools.partial`` s, to reuse the programs; :func:`lrjax.clear_caches` drops them).

    Memory: the snapshots are a buffer of ``num_cycles`` (or ``keep_last``) copies of
    the params on device, besides the params and optimizer state being trained.

    Data forms, as :func:`lrjax.range_test`: a pytree of arrays with a leading step axis
    of length ``>= num_steps * accumulation_steps``; an iterable of batches (the
    ``num_steps * accumulation_steps`` batches are pulled and stacked on the host up
    front); or a function ``(key, i) -> batch`` run on device with
    ``key = fold_in(data_key, i)``. Real models take the forms of :func:`lrjax.range_test`
    (through :func:`lrjax.pure_model`): ``state=`` (linen ``batch_stats``),
    ``stochastic=True`` (a dropout key per step), or an ``nnx.Module`` / ``eqx.Module`` as
    ``params`` with ``loss_fn(model, batch)``. With several devices the batch axis of
    stacked or iterable data is sharded over them when it divides evenly (no mesh),
    or over ``devices.mesh``'s ``data_axis``; params, state and snapshots are replicated.

    Args:
      loss_fn: ``(params, batch) -> scalar loss`` (or ``(loss, aux)`` with ``has_aux``).
      params: initial params pytree (never modified or donated).
      optimizer: factory taking ``learning_rate``, e.g. ``optax.sgd`` or
        ``functools.partial(optax.sgd, momentum=0.9)``.
      data: stacked pytree, iterable of batches, or ``(key, i) -> batch``.
      num_steps: steps to train, ``T >= 1``.
      num_cycles: cycles (snapshots), ``M`` in ``[1, T]``.
      init_value: the restart learning rate of the default schedule (``>= 0``).
      schedule: a cyclic schedule used instead (then leave ``init_value`` out).
      cycle_ends: the ``num_cycles`` steps after which to take the snapshots, increasing.
      keep_last: keep only the last ``m`` snapshots (memory ``m`` copies), ``1 <= m <= M``.
      state: initial threaded state (e.g. Flax linen ``batch_stats``): then
        ``loss_fn(params, state, batch) -> (loss, new_state)``; snapshotted with the params.
      has_aux: whether ``loss_fn`` returns aux (``(loss, aux)``, with state
        ``(loss, (new_state, aux))``); aux is returned per step.
      stochastic: pass ``loss_fn`` a keyword ``key=`` (e.g. dropout), a fresh key each
        step: ``fold_in(k, step)`` of a key split from ``key``, reproducible.
      accumulation_steps: micro-batches averaged per step (data's step axis holds
        ``num_steps * accumulation_steps`` micro-batches).
      key: seed (int) or PRNG key of the data function's keys (default 0).
      devices: an :class:`lrjax.Devices` ``(mesh, data_axis)``: the mesh whose
        ``data_axis`` the batch axis is sharded over (default: automatic). ``mesh=`` and
        ``data_axis=`` are its deprecated spelling.
      execution: ``"auto"`` (default), ``"compiled"`` (one compiled loop) or ``"host"`` (a
        host loop over a compiled step); see Execution above.

    Returns:
      A :class:`SnapshotResult`: ``params`` (stacked snapshots on device, oldest first),
      ``losses``, ``learning_rates``, ``steps`` (of the kept snapshots), ``cycle_ends``,
      ``execution`` (the strategy that ran).

    Example:
      >>> def loss_fn(w, batch):
      ...     return jnp.mean((batch["x"] @ w - batch["y"]) ** 2)
      >>> data = {"x": jnp.ones((40, 8, 3)), "y": jnp.ones((40, 8))}
      >>> snaps, losses = train_snapshots(loss_fn, jnp.zeros(3), optax.sgd, data,
      ...                                 num_steps=40, num_cycles=4, init_value=0.1)
      >>> snaps.shape, losses.shape
      ((4, 3), (40,))

    References:
      Huang et al., `Snapshot Ensembles: Train 1, get M for free
      <https://arxiv.org/abs/1704.00109>`_, ICLR 2017.
    """
    mesh, data_axis = resolve_devices("train_snapshots", devices, deprecated)
    _check_callables(loss_fn, optimizer, None, None)
    num_steps = check_steps("num_steps", num_steps)
    num_cycles = check_steps("num_cycles", num_cycles, 1, num_steps)
    accumulation_steps = check_steps("accumulation_steps", accumulation_steps)
    if num_steps * accumulation_steps > MAX_COUNT:
        raise ValueError(f"num_steps * accumulation_steps = {num_steps * accumulation_steps} "
                         "micro-batches: at most 2**31 - 1 (they are counted in int32).")
    if keep_last is not None:
        keep_last = check_steps("keep_last", keep_last, 1, num_cycles)
    if schedule is None:
        if init_value is None:
            raise ValueError("give init_value (the snapshot schedule's restart value) or a schedule.")
        check_value("init_value", init_value, low=0.0)
    elif init_value is not None:
        raise ValueError("give either init_value (snapshot schedule) or schedule, not both.")
    elif not callable(schedule):
        raise ValueError(f"schedule must be an optax schedule (callable), got {schedule!r}.")
    has_aux, stochastic = check_flag("has_aux", has_aux), check_flag("stochastic", stochastic)
    key = as_prng_key(key)
    ends = _resolve_ends(num_steps, num_cycles, schedule, cycle_ends)
    kept = ends[num_cycles - (keep_last or num_cycles):]
    slots = np.full(num_steps, -1, np.int32)
    slots[kept] = np.arange(kept.size, dtype=np.int32)

    execution = check_execution(execution)
    if not isinstance(data_axis, str):
        raise TypeError(f"data_axis must be a str, got {type(data_axis).__name__}.")
    if model_kind(params) == "pytree":
        check_numeric_leaves("params", params)
    if state is not None:
        check_numeric_leaves("state", state)
    stacked, data_fn, mesh = _prepare_data(data, num_steps, accumulation_steps, mesh, data_axis)
    model = pure_model(loss_fn, params, state=state, has_aux=has_aux, stochastic=stochastic)
    if not jax.tree.leaves(model.params):
        raise ValueError("params has no trainable arrays.")
    sizes = dict(num_steps=num_steps, cycle_length=-(-num_steps // num_cycles),
                 num_kept=int(kept.size), accumulation_steps=accumulation_steps)
    programs = _programs(loss_fn, params, state, has_aux, stochastic, optimizer, schedule,
                         data_fn, sizes)
    trained = jax.tree.map(lambda x: x if isinstance(x, jax.Array) else jnp.asarray(x),
                           (model.params, model.state))
    if mesh is not None:  # params, state, key, slots replicated, the batch sharded
        trained, key, slots = processes.replicate((trained, key, slots), mesh)
    value = np.asarray(0.0 if init_value is None else init_value, np.float32)  # a runtime input
    if mesh is not None:
        value = processes.replicate(value, mesh)
    args = (*trained, stacked, slots, value, key)
    execution = programs.choose(execution, *args)
    if execution == "compiled":
        carry = programs.compiled()(*args)
    else:  # no early stop: done is never read, so the host never waits for the device
        carry, (data_key, step_key) = programs.init(*trained, stacked, value, key)
        if mesh is None:  # on a mesh they are replicated already
            slots, value = jax.device_put((slots, value))
        consts = _Consts(stacked, slots, value, data_key, step_key)
        carry, _ = run_host(programs.host(), carry, consts, 0, num_steps, lag=num_steps)
    losses, lrs = processes.fetch((carry.losses, carry.learning_rates))
    # Whole on this process's device: single-process code (an ensemble) can use them.
    carry = processes.local(carry)
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size:
        warnings.warn(f"train_snapshots: the loss is not finite from step {bad[0]} on (lr "
                      f"{float(lrs[bad[0]]):.3g}); snapshots taken after it may be NaN/inf: "
                      "lower init_value or the schedule's peak.", RuntimeWarning, stacklevel=2)
    return SnapshotResult(
        params=carry.snapshots, losses=np.asarray(losses), learning_rates=np.asarray(lrs),
        steps=kept, cycle_ends=ends, state=carry.snapshot_states,
        aux=carry.aux if has_aux else None, opt_state=carry.train.opt_state,
        merge=None if model.kind == "pytree" else model.merge, execution=execution)
