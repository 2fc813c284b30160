"""The learning-rate range test as one compiled program (``jit`` of a loop over steps).

The test trains from ``min_lr`` to ``max_lr`` over ``num_steps`` optimizer steps, records
the loss, and reads a learning rate off the curve (Smith 2017, sec. 3.3; fastai
``lr_find``; torch-lr-finder). Here the ramp is an optax schedule handed to the user's
optimizer factory, and all steps run inside one compiled ``lax.while_loop``: no
per-step Python, no host round trip per step.

Semantics (the choices the references leave open):

* **Ramp.** ``exp``: ``lr_t = min_lr * (max_lr/min_lr)**(t/(N-1))``; ``linear``:
  ``lr_t = min_lr + (max_lr-min_lr) * t/(N-1)``. Step 0 trains at ``min_lr``, step
  ``N-1`` at ``max_lr``; ``result.lrs[t]`` is the rate step ``t`` trained at.
* **Smoothing.** Bias-corrected EMA: ``avg_t = beta*avg_{t-1} + (1-beta)*loss_t``,
  ``smoothed_t = avg_t / (1 - beta**(t+1))``.
* **Divergence.** Step ``t`` diverges when ``loss_t`` is not finite or
  ``smoothed_t > diverge_threshold * best_t`` with ``best_t = min_{s<=t} smoothed_s``
  (computed as ``smoothed_t - best_t > (diverge_threshold - 1) * |best_t|``, the same for
  a positive loss and still meaningful for a negative one; ``inf`` disables it). That
  step is recorded; the loop then exits, so no later step does any work (a scan that
  skips every later step with ``lax.cond``, as first specified, computes the same but
  was measured 5-10% slower), and the later steps are recorded
  as NaN. ``diverged_at`` is the step index, ``None`` when a single curve never diverged
  (``-1`` entries in the array of a batched result).
* **Data.** (1) a pytree of arrays (a dict, tuple, NamedTuple or array, but not a
  ``list``) with a leading step axis of length ``>= num_steps * accumulation_steps``;
  (2) a ``list`` or any other iterable/iterator of batches, pulled ``chunk_size`` steps
  at a time and stacked on the host: a too-short iterable raises ``ValueError`` (wrap it
  in ``itertools.cycle`` to reuse batches), and no chunk is pulled once every curve has
  diverged; (3) a function ``(key, i) -> batch`` run on device, called with the
  micro-batch index ``i = step * accumulation_steps + j`` and
  ``key = fold_in(data_key, i)``. The same batches give the same curves in every form
  (bit for bit for stacked and iterable data; to float rounding for a data function,
  which XLA compiles differently).
* **Chunks.** Iterables, a ``progress`` callback or an explicit ``chunk_size`` run the
  test in chunks of ``chunk_size`` steps (default ``min(num_steps, 50)``) with one
  compiled chunk program; the state stays on device between chunks; the test stops
  after the first chunk in which every curve has diverged. ``progress(steps_done,
  num_steps)`` is called after each chunk, and once with ``steps_done == num_steps``
  when the test stops early.
* **Curves.** ``num_seeds=S`` runs S tests in one vmapped program (seed ``s`` gets
  ``split(key, S)[s]``, split again into an ``init_fn`` key and a data key). ``sweep``
  maps hyperparameter names to value lists, set through ``optax.inject_hyperparams``;
  several names form a grid. Result arrays have shape
  ``(*sweep sizes in dict order, S if num_seeds, num_steps)``. Curves run in lockstep:
  a diverged curve keeps its state (masked) until every curve is done, and only then
  does the loop exit.
* **Devices.** With ``mesh=None`` and several devices, the batch axis (axis 1 of stacked
  data, axis 0 of a batch) is sharded over all devices when every batch leaf's batch
  size divides the device count; otherwise (or on
  one device) the test runs on the default device. Pass a one-device mesh to force one
  device. Params, optimizer state and records are replicated.
* **Caching.** Programs are cached on ``(loss_fn, optimizer, init_fn, data function,
  static options)``; ``min_lr``, ``max_lr``, ``smoothing``, ``diverge_threshold`` and the
  sweep values are runtime inputs. A ``functools.partial`` with hashable arguments is
  keyed by its contents, so an equal partial does not recompile. The validation and
  planning of a call (stacked or function data) are cached too, keyed on everything the
  checks read (the callables, pytree structures, leaf types, shapes and dtypes, the
  options): a repeated call goes straight to the compiled program.

Records are float32; aux leaves recorded after divergence are NaN (0 for integer dtypes).
The user's params and data are never mutated or donated; nothing is written to disk.

References:
    Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017, sec. 3.3.
    Smith, "A disciplined approach to neural network hyper-parameters", 2018.
"""

from __future__ import annotations

import collections
import functools
import inspect
import math
import numbers
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lrjax.range_data import (
    _batch_sizes,
    _check_array_leaves,
    _data_form,
    _place,
    _pull,
    _resolve_mesh,
    _stack_chunk,
    _stacked_steps,
)
from lrjax.range_result import RangeTestResult, _grid_points
from lrjax.models import pure_model
from lrjax.train_step import LossFn, OptimizerFactory, PyTree, TrainCarry, _check_int, pure_train_step

Progress = Callable[[int, int], None]

MODES = ("exp", "linear")
DEFAULT_CHUNK_SIZE = 50
_CACHE_SIZE = 32
_RECORD_DTYPE = jnp.float32


# --------------------------------------------------------------------------------------
# The ramp.
# --------------------------------------------------------------------------------------
def _ramp(min_lr: Any, max_lr: Any, num_steps: int, mode: str) -> optax.Schedule:
    """The ramp as a schedule; ``min_lr``/``max_lr`` may be traced (no recompiles)."""
    last = num_steps - 1

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        fraction = jnp.clip(jnp.asarray(count, jnp.float32), 0, last) / last
        if mode == "exp":
            return min_lr * (max_lr / min_lr) ** fraction
        return min_lr + (max_lr - min_lr) * fraction

    return schedule


def lr_ramp(min_lr: float, max_lr: float, num_steps: int, mode: str = "exp") -> optax.Schedule:
    """The range test's learning-rate ramp as an optax schedule.

    ``exp``: ``lr_t = min_lr * (max_lr / min_lr) ** (t / (num_steps - 1))``;
    ``linear``: ``lr_t = min_lr + (max_lr - min_lr) * t / (num_steps - 1)``; counts are
    clamped to ``[0, num_steps - 1]``.

    Args:
        min_lr: learning rate at count 0, finite and > 0.
        max_lr: learning rate at count ``num_steps - 1``, finite and > ``min_lr``.
        num_steps: number of steps, >= 2.
        mode: ``"exp"`` (geometric) or ``"linear"``.

    Returns:
        A float32 schedule ``count -> lr``.

    Example:
        >>> sched = lr_ramp(1e-7, 10.0, 100)
        >>> bool(np.isclose(sched(0), 1e-7) and np.isclose(sched(99), 10.0, rtol=1e-5))
        True

    References:
        Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017.
    """
    _check_ramp(min_lr, max_lr, num_steps, mode)
    return _ramp(np.float32(min_lr), np.float32(max_lr), int(num_steps), mode)


# --------------------------------------------------------------------------------------
# Static-argument validation (host side; traced values are never checked).
# --------------------------------------------------------------------------------------
def _is_real(value: Any) -> bool:
    # The exact-type test first: an ABC isinstance check is slow on a cold call.
    return type(value) in (float, int) or isinstance(value, numbers.Real)


def _check_ramp(min_lr: float, max_lr: float, num_steps: int, mode: str) -> None:
    for name, value in (("min_lr", min_lr), ("max_lr", max_lr)):
        if not (_is_real(value) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}.")
    if not min_lr < max_lr:
        raise ValueError(f"min_lr must be < max_lr, got min_lr={min_lr!r} >= max_lr={max_lr!r}.")
    _check_int("num_steps", num_steps, 2)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")


def _check_options(smoothing: float, diverge_threshold: float, accumulation_steps: int,
                   chunk_size: int | None, num_seeds: int | None) -> None:
    if not (_is_real(smoothing) and 0 <= smoothing < 1):
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}.")
    if not (_is_real(diverge_threshold) and diverge_threshold > 1):
        raise ValueError(
            f"diverge_threshold must be > 1 (inf disables it), got {diverge_threshold!r}.")
    _check_int("accumulation_steps", accumulation_steps, 1)
    if chunk_size is not None:
        _check_int("chunk_size", chunk_size, 1)
    if num_seeds is not None:
        _check_int("num_seeds", num_seeds, 1)


def _accepts(factory: Callable[..., Any], name: str) -> bool:
    """Whether ``factory`` takes a keyword ``name`` (True when the signature is opaque).

    Cached per factory (by content for an equal partial, see :func:`_cache_key`):
    ``inspect.signature`` costs more than the rest of a call's validation.
    """
    key = (_cache_key(factory), name)
    try:
        return _ACCEPTS[key]
    except KeyError:
        pass
    except TypeError:  # unhashable: not cached
        return _inspect_accepts(factory, name)
    if len(_ACCEPTS) >= _ACCEPTS_CACHE_SIZE:
        _ACCEPTS.clear()
    _ACCEPTS[key] = answer = _inspect_accepts(factory, name)
    return answer


def _inspect_accepts(factory: Callable[..., Any], name: str) -> bool:
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return True
    return name in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


_ACCEPTS: dict[Any, bool] = {}
_ACCEPTS_CACHE_SIZE = 256


@functools.lru_cache(maxsize=16)
def _seed_key(seed: int) -> jax.Array:
    return jax.random.key(seed)  # cached: creating a key is an eager device op


def _is_seed(key: Any) -> bool:
    return key is None or (isinstance(key, (int, np.integer)) and not isinstance(key, bool))


def _check_callables(loss_fn: Any, optimizer: Any, init_fn: Any, progress: Any) -> None:
    if isinstance(optimizer, optax.GradientTransformation):
        raise TypeError("optimizer must be a factory taking learning_rate (e.g. optax.adam), "
                        "not a GradientTransformation.")
    for name, value in (("loss_fn", loss_fn), ("optimizer", optimizer)):
        if not callable(value):
            raise TypeError(f"{name} must be callable, got {type(value).__name__}.")
    if not _accepts(optimizer, "learning_rate"):
        raise ValueError("optimizer must accept a `learning_rate` keyword argument.")
    for name, value in (("init_fn", init_fn), ("progress", progress)):
        if value is not None and not callable(value):
            raise TypeError(f"{name} must be callable or None, got {type(value).__name__}.")


_NO_SWEEP = np.zeros((1, 0), np.float32)  # one curve, no swept values
_NO_SWEEP.flags.writeable = False


def _sweep_grid(sweep: Mapping[str, Sequence[float]] | None,
                optimizer: OptimizerFactory
                ) -> tuple[tuple[str, ...], tuple[int, ...], np.ndarray, dict]:
    """Names, axis sizes, the (V, n_names) grid of values (first name slowest), and values."""
    if sweep is None:
        return (), (), _NO_SWEEP, {}
    if not isinstance(sweep, Mapping) or not sweep:
        raise ValueError("sweep must be a non-empty dict {hyperparameter name: list of values}.")
    values: dict[str, list[float]] = {}
    for name, raw in sweep.items():
        if not isinstance(name, str) or name == "learning_rate":
            raise ValueError(f"sweep: {name!r} cannot be swept (the range test owns learning_rate).")
        if not _accepts(optimizer, name):
            raise ValueError(f"sweep: the optimizer factory takes no argument {name!r}.")
        array = np.asarray(raw, dtype=np.float64)
        if array.ndim != 1 or array.size == 0 or not np.all(np.isfinite(array)):
            raise ValueError(f"sweep[{name!r}] must be a non-empty 1-D list of finite numbers.")
        values[name] = [float(v) for v in array]
    names = tuple(values)
    sizes = tuple(len(values[n]) for n in names)
    grid = _grid_points(values).astype(np.float32)
    return names, sizes, grid, values


# --------------------------------------------------------------------------------------
# The compiled programs.
# --------------------------------------------------------------------------------------
class _Static(NamedTuple):
    """Everything the compiled program depends on besides input shapes."""

    loss_fn: LossFn
    optimizer: OptimizerFactory
    init_fn: Callable[[jax.Array], PyTree] | None
    data_fn: Callable[[jax.Array, jax.Array], PyTree] | None
    mode: str
    num_steps: int
    chunk_len: int
    has_aux: bool
    accumulation_steps: int
    num_seeds: int | None
    num_curves: int
    sweep_names: tuple[str, ...]
    has_val: bool
    mesh: Mesh | None
    data_axis: str


class _Dynamic(NamedTuple):
    """Runtime inputs: changing them never recompiles."""

    scalars: jax.Array  # float32 [min_lr, max_lr, smoothing, threshold]: one transfer
    sweep_values: jax.Array | None  # (num_curves, len(sweep_names)); None: no sweep
    val_data: PyTree

    @property
    def min_lr(self) -> jax.Array:
        return self.scalars[0]

    @property
    def max_lr(self) -> jax.Array:
        return self.scalars[1]

    @property
    def smoothing(self) -> jax.Array:
        return self.scalars[2]

    @property
    def threshold(self) -> jax.Array:
        return self.scalars[3]


class _State(NamedTuple):
    params: PyTree  # every leaf has a leading curve axis
    opt_state: optax.OptState
    data_key: jax.Array
    avg: jax.Array
    best: jax.Array
    done: jax.Array
    diverged_at: jax.Array
    step: jax.Array  # scalar: the global step of the next loop iteration


class _Programs(NamedTuple):
    init: Callable[..., _State]
    chunk: Callable[..., tuple[_State, tuple[jax.Array, dict]]]
    run: Callable[..., tuple[jax.Array, Any]]  # _pack's (packed, aux)


def _over_curves(fn: Callable[..., Any], num_curves: int) -> Callable[..., Any]:
    """``vmap(fn)`` over the leading curve axis of batched state; ``fn`` for one curve.

    A single curve keeps no curve axis in its carried state: slicing and re-adding a
    size-1 axis every step (or a size-1 vmap) makes XLA copy params and optimizer state
    each step, which costs more than the step itself for small models.
    """
    return jax.vmap(fn) if num_curves > 1 else fn


def _curve_values(static: _Static, values: jax.Array | None) -> jax.Array | None:
    """Per-curve rows of ``values`` (curves, ...) in the state's layout."""
    return values if static.num_curves > 1 or values is None else values[0]


def _make_tx(static: _Static, schedule: optax.Schedule,
             hyper: jax.Array) -> optax.GradientTransformation:
    if not static.sweep_names:
        return static.optimizer(learning_rate=schedule)
    values = {name: hyper[i] for i, name in enumerate(static.sweep_names)}
    return optax.inject_hyperparams(static.optimizer)(learning_rate=schedule, **values)


def _fill_value(dtype: Any) -> Any:
    return jnp.nan if jnp.issubdtype(dtype, jnp.inexact) else 0


def _mask(active: jax.Array, new: PyTree, old: PyTree) -> PyTree:
    """Per curve: ``new`` where the curve is active, else ``old``."""
    def pick(n: jax.Array, o: jax.Array) -> jax.Array:
        return jnp.where(active.reshape(active.shape + (1,) * (n.ndim - 1)), n, o)

    return jax.tree.map(pick, new, old)


def _filled(tree: PyTree) -> PyTree:
    return jax.tree.map(lambda s: jnp.full(s.shape, _fill_value(s.dtype), s.dtype), tree)


def _batch_sharding(static: _Static, leading: int) -> Callable[[jax.Array], Any]:
    """Sharding of a batch leaf with ``leading`` non-batch axes (step, micro) in front."""
    def sharding(x: Any) -> Any:
        if np.ndim(x) <= leading:
            return NamedSharding(static.mesh, PartitionSpec())
        return NamedSharding(static.mesh, PartitionSpec(*([None] * leading), static.data_axis))

    return sharding


def _check_init_output(out: PyTree, template: PyTree) -> None:
    leaves = jax.tree.leaves(out)
    if not leaves or not all(jnp.issubdtype(x.dtype, jnp.inexact) for x in leaves):
        raise ValueError("init_fn must return a non-empty pytree of floating arrays (the params).")
    if template is None:
        return
    got = jax.tree.map(lambda x: (x.shape, jnp.dtype(x.dtype)), out)
    want = jax.tree.map(lambda x: (np.shape(x), jnp.dtype(jnp.result_type(x))), template)
    if jax.tree.structure(got) != jax.tree.structure(want) or got != want:
        raise ValueError(
            "init_fn(key) must return params with the same pytree structure, shapes and dtypes "
            f"as `params`; got {jax.tree.structure(out)} vs {jax.tree.structure(template)}."
        )


def _init(static: _Static, params: PyTree, key: jax.Array, dyn: _Dynamic) -> _State:
    seeds = static.num_seeds or 1
    seed_keys = jax.random.split(key, seeds) if static.num_seeds else key[None]
    pairs = jax.vmap(jax.random.split)(seed_keys)
    init_keys, data_keys = pairs[:, 0], pairs[:, 1]
    if static.init_fn is not None:
        seed_params = jax.vmap(static.init_fn)(init_keys)
        _check_init_output(jax.tree.map(lambda x: x[0], seed_params), params)
    else:
        seed_params = jax.tree.map(lambda x: jnp.broadcast_to(x, (seeds,) + jnp.shape(x)), params)
    # Curves are ordered sweep-major, seed-minor: curve c uses seed c % seeds.
    repeats = static.num_curves // seeds
    tile = lambda x: jnp.tile(x, (repeats,) + (1,) * (x.ndim - 1))  # noqa: E731
    curve_params = jax.tree.map(lambda x: _curve_values(static, tile(x)), seed_params)
    schedule = _ramp(dyn.min_lr, dyn.max_lr, static.num_steps, static.mode)
    opt_state = _over_curves(lambda p, h: _make_tx(static, schedule, h).init(p), static.num_curves)(
        curve_params, _curve_values(static, dyn.sweep_values))
    curves = (static.num_curves,) if static.num_curves > 1 else ()
    return _State(
        params=curve_params,
        opt_state=opt_state,
        data_key=_curve_values(static, tile(data_keys)),
        avg=jnp.zeros(curves, _RECORD_DTYPE),
        best=jnp.full(curves, jnp.inf, _RECORD_DTYPE),
        done=jnp.zeros(curves, bool),
        diverged_at=jnp.full(curves, -1, jnp.int32),
        step=jnp.zeros((), jnp.int32),
    )


def _generated_batch(static: _Static, data_key: jax.Array, step: jax.Array) -> PyTree:
    """The function data form: micro-batches ``data_fn(fold_in(key, i), i)``."""
    k = static.accumulation_steps

    def one(i: jax.Array) -> PyTree:
        return static.data_fn(jax.random.fold_in(data_key, i), i)

    batch = one(step) if k == 1 else jax.vmap(one)(step * k + jnp.arange(k, dtype=step.dtype))
    if static.mesh is not None:
        leading = 0 if k == 1 else 1
        batch = jax.tree.map(lambda x: jax.lax.with_sharding_constraint(
            x, _batch_sharding(static, leading)(x)), batch)
    return batch


def _stored_batch(static: _Static, data: PyTree, local_step: jax.Array) -> PyTree:
    """Stacked and iterable forms: step ``local_step`` of data with a leading micro axis."""
    k = static.accumulation_steps
    if k == 1:
        return jax.tree.map(lambda x: jax.lax.dynamic_index_in_dim(x, local_step, 0, False), data)
    return jax.tree.map(lambda x: jax.lax.dynamic_slice_in_dim(x, local_step * k, k, 0), data)


def _live(static: _Static, schedule: optax.Schedule, data: PyTree, offset: jax.Array,
          dyn: _Dynamic, state: _State, active: jax.Array) -> tuple[_State, dict]:
    """One step of every curve; curves that are not active keep their state."""
    step = state.step
    shared = None if static.data_fn is not None else _stored_batch(static, data, step - offset)

    def curve_step(params: PyTree, opt_state: Any, data_key: jax.Array, hyper: jax.Array) -> tuple:
        batch = shared if shared is not None else _generated_batch(static, data_key, step)
        tx = _make_tx(static, schedule, hyper)
        model = pure_model(static.loss_fn, None, has_aux=static.has_aux)
        carry, loss, aux = pure_train_step(tx, model.loss, TrainCarry(params, opt_state, None),
                                           batch, accumulation_steps=static.accumulation_steps)
        params, opt_state = carry.params, carry.opt_state
        val = model.evaluate(params, None, dyn.val_data) if static.has_val else None
        return params, opt_state, loss, aux, val

    params, opt_state, loss, aux, val = _over_curves(curve_step, static.num_curves)(
        state.params, state.opt_state, state.data_key, _curve_values(static, dyn.sweep_values))
    loss = loss.astype(_RECORD_DTYPE)
    beta = dyn.smoothing
    avg = beta * state.avg + (1 - beta) * loss
    smoothed = avg / (1 - beta ** (step + 1).astype(_RECORD_DTYPE))
    best = jnp.where(jnp.isfinite(smoothed), jnp.minimum(state.best, smoothed), state.best)
    # smoothed > threshold * best, written so that it also means "rose by (threshold - 1)
    # times |best|" for a negative best loss, and never fires for threshold = inf.
    rise = (dyn.threshold - 1) * jnp.abs(best)
    diverged = active & (~jnp.isfinite(loss) | (smoothed - best > rise))
    # A lone curve is always active here (the loop has exited otherwise), so the
    # per-curve masking, a copy of params and optimizer state per step, is only for batches.
    keep = _mask if static.num_curves > 1 else (lambda active, new, old: new)
    new_state = _State(
        params=keep(active, params, state.params),
        opt_state=keep(active, opt_state, state.opt_state),
        data_key=state.data_key,
        avg=keep(active, avg, state.avg),
        best=keep(active, best, state.best),
        done=state.done | diverged,
        diverged_at=jnp.where(diverged, step, state.diverged_at),
        step=step + 1,
    )
    records = {"loss": loss, "smoothed": smoothed, "aux": aux,
               "val": None if val is None else val.astype(_RECORD_DTYPE)}
    return new_state, keep(active, records, _filled(records))


def _chunk(static: _Static, state: _State, data: PyTree, offset: jax.Array,
           dyn: _Dynamic) -> tuple[_State, tuple[jax.Array, dict]]:
    """Up to ``chunk_len`` steps from ``state.step``, as a ``lax.while_loop``.

    The loop exits as soon as every curve has diverged (or ``num_steps`` is reached): no
    step runs after divergence. Records go into NaN-filled buffers (0 for integer aux),
    one row per step of the chunk, so the rows never run keep the fill. A ``lax.scan``
    that skips steps with ``lax.cond`` computes the same, but on the digits MLP (CPU) it
    ran 5-10% slower than a bare scanned loop; this loop runs within 1-3% of it.
    """
    schedule = _ramp(dyn.min_lr, dyn.max_lr, static.num_steps, static.mode)
    live = functools.partial(_live, static, schedule, data, offset, dyn)
    start = state.step
    lrs = schedule(start + jnp.arange(static.chunk_len, dtype=start.dtype))

    def active(state: _State) -> jax.Array:
        return ~state.done & (state.step < static.num_steps)

    def more(carry: tuple[_State, dict]) -> jax.Array:
        state, _ = carry
        return (state.step - start < static.chunk_len) & jnp.any(active(state))

    def step(carry: tuple[_State, dict]) -> tuple[_State, dict]:
        state, buffers = carry
        column = state.step - start
        state, records = live(state, active(state))
        write = lambda buffer, record: jax.lax.dynamic_update_slice_in_dim(  # noqa: E731
            buffer, jnp.reshape(record, buffer.shape[:1] + (1,) + buffer.shape[2:]), column, 1)
        return state, jax.tree.map(write, buffers, records)

    # Buffers laid out (curves, steps, ...) as the result wants them (no host transpose);
    # a lone curve's records, which have no curve axis, get one here.
    shapes = jax.eval_shape(lambda s: live(s, active(s))[1], state)

    def buffer(record: jax.ShapeDtypeStruct) -> jax.Array:
        per_curve = record.shape[1:] if static.num_curves > 1 else record.shape
        shape = (static.num_curves, static.chunk_len) + per_curve
        return jnp.full(shape, _fill_value(record.dtype), record.dtype)

    state, buffers = jax.lax.while_loop(more, step, (state, jax.tree.map(buffer, shapes)))
    return state, (lrs, buffers)


def _run(static: _Static, params: PyTree, key: jax.Array, data: PyTree,
         dyn: _Dynamic) -> tuple[jax.Array, Any]:
    state = _init(static, params, key, dyn)
    state, (lrs, records) = _chunk(static, state, data, jnp.zeros((), jnp.int32), dyn)
    return _pack(state.diverged_at, lrs, records)


def _pack(diverged_at: jax.Array, lrs: jax.Array, records: dict) -> tuple[jax.Array, Any]:
    """The results but aux as ONE int32 vector (floats bit-cast, exact): one host copy.

    Layout: ``diverged_at`` (C), ``lrs`` (S), then ``loss``, ``smoothed`` and, when
    recorded, ``val``, each (C, S) flattened. Every fetched array costs a fixed host
    overhead comparable to 1% of a 200-step test, so the results come back as one.
    """
    floats = [lrs, records["loss"], records["smoothed"]]
    if records["val"] is not None:
        floats.append(records["val"])
    bits = [jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.int32).reshape(-1)
            for x in floats]
    packed = jnp.concatenate([jnp.reshape(diverged_at, (-1,)).astype(jnp.int32)] + bits)
    return packed, records["aux"]


def _unpack(packed: np.ndarray, aux: Any, num_curves: int,
            has_val: bool) -> tuple[np.ndarray, np.ndarray, dict]:
    """Inverts :func:`_pack` on the host (views, no copies)."""
    rows = 3 if has_val else 2
    steps = (packed.size - num_curves) // (1 + rows * num_curves)
    diverged_at, lrs = packed[:num_curves], packed[num_curves : num_curves + steps]
    curves = packed[num_curves + steps :].view(np.float32).reshape(rows, num_curves, steps)
    records = {"loss": curves[0], "smoothed": curves[1], "val": curves[2] if has_val else None,
               "aux": aux}
    return diverged_at, lrs.view(np.float32), records


_pack_jit = jax.jit(_pack)  # for the chunked path, whose parts are joined eagerly


def _cache_key(fn: Any) -> Any:
    """A partial with hashable contents is keyed by its contents, anything else by itself."""
    if isinstance(fn, functools.partial):
        key = ("partial", _cache_key(fn.func), fn.args, tuple(sorted(fn.keywords.items())))
        try:
            hash(key)
        except TypeError:
            return fn
        return key
    return fn


_PROGRAMS: collections.OrderedDict[Any, _Programs] = collections.OrderedDict()


def _programs(static: _Static) -> _Programs:
    """The compiled programs for ``static``, cached (LRU) so repeated calls reuse them."""
    key = static._replace(**{name: _cache_key(getattr(static, name))
                             for name in ("loss_fn", "optimizer", "init_fn", "data_fn")})
    if key in _PROGRAMS:
        _PROGRAMS.move_to_end(key)
        return _PROGRAMS[key]
    programs = _Programs(
        init=jax.jit(functools.partial(_init, static)),
        chunk=jax.jit(functools.partial(_chunk, static)),
        run=jax.jit(functools.partial(_run, static)),
    )
    _remember(_PROGRAMS, key, programs)
    return programs


def _remember(cache: collections.OrderedDict, key: Any, value: Any) -> None:
    """Adds ``key: value`` to an LRU cache of ``_CACHE_SIZE`` entries."""
    cache[key] = value
    if len(cache) > _CACHE_SIZE:
        cache.popitem(last=False)


def _host_records(packed: jax.Array, aux: Any,
                  static: _Static) -> tuple[np.ndarray, np.ndarray, dict]:
    """One transfer to the host of what the program returned (see :func:`_pack`)."""
    packed, aux = jax.device_get((packed, aux))
    return _unpack(np.asarray(packed), aux, static.num_curves, static.has_val)


# --------------------------------------------------------------------------------------
# The public entry point.
# --------------------------------------------------------------------------------------
def range_test(
    loss_fn: LossFn,
    params: PyTree,
    optimizer: OptimizerFactory,
    data: Any,
    *,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    num_steps: int = 100,
    mode: str = "exp",
    smoothing: float = 0.98,
    diverge_threshold: float = 4.0,
    has_aux: bool = False,
    key: jax.Array | None = None,
    init_fn: Callable[[jax.Array], PyTree] | None = None,
    num_seeds: int | None = None,
    sweep: Mapping[str, Sequence[float]] | None = None,
    val_data: PyTree | None = None,
    accumulation_steps: int = 1,
    chunk_size: int | None = None,
    mesh: Mesh | None = None,
    data_axis: str = "data",
    progress: Progress | None = None,
) -> RangeTestResult:
    """Runs the learning-rate range test as one compiled loop and returns the curves.

    Step ``t`` trains with ``lr_t`` (see :func:`lr_ramp`) through
    ``optimizer(learning_rate=ramp)``, records ``loss_t``, the bias-corrected EMA
    ``smoothed_t = avg_t / (1 - beta**(t+1))`` with ``avg_t = beta*avg_{t-1} + (1-beta)*loss_t``,
    and stops (skips all later steps, recorded as NaN) once ``loss_t`` is not finite or
    ``smoothed_t > diverge_threshold * min_{s<=t} smoothed_s``. See the module docstring
    for the data forms, seeds, sweeps, chunks, devices and caching.

    Args:
        loss_fn: ``(params, batch) -> scalar loss``, or ``(loss, aux)`` with ``has_aux``.
        params: initial params (never modified); may be ``None`` when ``init_fn`` is
            given (then params, if given, only checks the structure ``init_fn`` returns).
        optimizer: factory taking ``learning_rate``, e.g. ``optax.adam``.
        data: stacked pytree, iterable of batches, or ``(key, i) -> batch``.
        min_lr: first learning rate (> 0).
        max_lr: last learning rate (> min_lr).
        num_steps: optimizer steps (>= 2).
        mode: ``"exp"`` or ``"linear"`` ramp.
        smoothing: EMA factor ``beta`` in ``[0, 1)``.
        diverge_threshold: divergence factor over the best smoothed loss (> 1; inf disables).
        has_aux: ``loss_fn`` returns ``(loss, aux)``; aux is recorded in ``result.aux``
            (averaged over micro-batches when ``accumulation_steps > 1``).
        key: PRNG key (or an int seed) for ``init_fn``, seeds and data functions
            (default ``jax.random.key(0)``).
        init_fn: ``key -> params``, used instead of ``params`` (required for seeds
            unless the data is a function of the key).
        num_seeds: run this many tests in one vmapped program.
        sweep: ``{hyperparameter: values}`` set with ``optax.inject_hyperparams``.
        val_data: one held-out batch, evaluated after each update.
        accumulation_steps: micro-batches averaged per optimizer step.
        chunk_size: steps per compiled chunk (iterables, progress).
        mesh: device mesh to shard the batch over (None: automatic, see above).
        data_axis: mesh axis name for the batch.
        progress: host callback ``progress(steps_done, num_steps)``.

    Returns:
        A :class:`RangeTestResult` (host numpy arrays).

    Example:
        >>> result = range_test(loss_fn, params, optax.adam, batches, num_steps=100)  # doctest: +SKIP
        >>> lr = result.suggest("valley")  # doctest: +SKIP

    References:
        Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017, sec. 3.3.
    """
    _check_ramp(min_lr, max_lr, num_steps, mode)
    _check_options(smoothing, diverge_threshold, accumulation_steps, chunk_size, num_seeds)
    key = _seed_key(0 if key is None else int(key)) if _is_seed(key) else key
    options = dict(mode=mode, num_steps=int(num_steps), has_aux=bool(has_aux),
                   accumulation_steps=int(accumulation_steps), num_seeds=num_seeds,
                   chunk_size=chunk_size, mesh=mesh, data_axis=data_axis)
    plan_key = _plan_key(loss_fn, params, optimizer, data, key, init_fn, sweep, val_data,
                         progress, options)
    plan = _PLANS.get(plan_key) if plan_key is not None else None
    iterator = first = None
    if plan is None:
        plan, data, iterator, first = _make_plan(loss_fn, params, optimizer, data, key, init_fn,
                                                 sweep, val_data, progress, options)
        if plan_key is not None:
            _remember(_PLANS, plan_key, plan)
    elif plan.cut:
        data = jax.tree.map(lambda x: x[: plan.needed], data)
    static, programs, form, needed = plan.static, plan.programs, plan.form, plan.needed
    mesh, chunked, seeds = static.mesh, plan.chunked, num_seeds or 1
    sweep_sizes, sweep_grid, sweep_values = plan.sweep_sizes, plan.sweep_grid, plan.sweep_values
    scalars = np.array([min_lr, max_lr, smoothing, diverge_threshold], np.float32)
    # Without a sweep no values are passed: every argument costs the call a transfer.
    curve_values = (None if not static.sweep_names else
                    sweep_grid if seeds == 1 else np.repeat(sweep_grid, seeds, axis=0))
    dyn = _Dynamic(scalars=scalars, sweep_values=curve_values, val_data=val_data)
    stacked = data if form == "stacked" else None
    params, key, data, dyn = _device_inputs(static, params, key, stacked, dyn)
    stored = None if mesh is None else _batch_sharding(static, 1)

    if chunked:
        chunks = _chunk_inputs(form, data, iterator, first, static, needed, stored)
        diverged_at, (lrs, records) = _run_chunks(programs, static, params, key, dyn, chunks, progress)
        packed, aux = _pack_jit(diverged_at, lrs, records)
    else:
        packed, aux = programs.run(params, key, data, dyn)
    # Host work that needs no result runs here, while the device computes.
    batch_shape = sweep_sizes + ((num_seeds,) if num_seeds is not None else ())
    settings = dict(min_lr=float(min_lr), max_lr=float(max_lr), num_steps=int(num_steps),
                    mode=mode, smoothing=float(smoothing),
                    diverge_threshold=float(diverge_threshold),
                    accumulation_steps=static.accumulation_steps)
    diverged_at, lrs, records = _host_records(packed, aux, static)
    steps_run = lrs.shape[0]
    lrs, records = _complete(lrs, records, steps_run, static, settings["min_lr"],
                             settings["max_lr"])
    return _make_result(lrs, records, diverged_at, batch_shape, static, sweep_values, settings)


class _Plan(NamedTuple):
    """What validation and planning derive from the options and the inputs' structure."""

    static: _Static
    programs: _Programs
    form: str
    needed: int  # micro-batches the test consumes
    cut: bool  # stacked data longer than needed: cut to ``needed`` steps
    chunked: bool
    sweep_sizes: tuple[int, ...]
    sweep_grid: np.ndarray
    sweep_values: dict


_PLANS: collections.OrderedDict[Any, _Plan] = collections.OrderedDict()


def _signature(tree: PyTree) -> tuple:
    """Structure, and type, shape and dtype of every leaf: all that validation reads."""
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple(map(_leaf_signature, leaves))


def _leaf_signature(leaf: Any) -> tuple:
    # Arrays answer .shape directly (np.shape is a Python-level wrapper); scalars do not.
    shape = getattr(leaf, "shape", None)
    return type(leaf), np.shape(leaf) if shape is None else shape, getattr(leaf, "dtype", None)


def _plan_key(loss_fn: LossFn, params: PyTree, optimizer: OptimizerFactory, data: Any,
              key: Any, init_fn: Any, sweep: Any, val_data: Any, progress: Any,
              options: dict) -> Any:
    """Key of a validated plan, or None when the call cannot reuse one (iterables).

    Everything a check reads is in the key (the callables themselves, the pytree
    structures and leaf types, shapes and dtypes, the options), so a call that hits it
    would pass every check again: repeated calls skip the validation and planning,
    which costs about as much as 5% of a 200-step test on a small model.
    """
    if type(data) in (dict, tuple) or isinstance(data, (np.ndarray, jax.Array)):
        data_key = _signature(data)
    elif callable(data):
        data_key = _cache_key(data)
    else:
        return None  # an iterable is validated as it is pulled
    try:
        sweep_key = None if sweep is None else tuple((n, tuple(v)) for n, v in sweep.items())
        plan_key = (_cache_key(loss_fn), _cache_key(optimizer), _cache_key(init_fn), data_key,
                    _signature(params), _signature(key), sweep_key, _signature(val_data),
                    progress is None, callable(progress), tuple(options.items()))
        hash(plan_key)
    except (TypeError, ValueError, AttributeError):
        return None  # unhashable or odd input: validate in full (and raise if it is bad)
    return plan_key


def _make_plan(loss_fn: LossFn, params: PyTree, optimizer: OptimizerFactory, data: Any,
               key: jax.Array, init_fn: Any, sweep: Any, val_data: Any, progress: Any,
               options: dict) -> tuple[_Plan, Any, Iterator | None, list | None]:
    """Validates the call and plans it; also returns the data, iterator and first chunk."""
    num_steps, num_seeds, chunk_size = (options["num_steps"], options["num_seeds"],
                                        options["chunk_size"])
    mesh, data_axis = options["mesh"], options["data_axis"]
    _check_callables(loss_fn, optimizer, init_fn, progress)
    form = _data_form(data)
    _check_sources(params, init_fn, num_seeds, form, data_axis)
    sweep_names, sweep_sizes, sweep_grid, sweep_values = _sweep_grid(sweep, optimizer)
    curves = len(sweep_grid) * (num_seeds or 1)
    k = options["accumulation_steps"]
    needed = num_steps * k
    chunked = form == "iterable" or progress is not None or chunk_size is not None
    chunk_len = min(chunk_size or DEFAULT_CHUNK_SIZE, num_steps) if chunked else num_steps

    prepared, iterator, first, sizes = _prepare_data(form, data, needed, chunk_len * k, key,
                                                     mesh is not None or jax.device_count() > 1)
    if val_data is not None:
        _check_array_leaves("val_data", val_data, 0)
        sizes = sizes | _batch_sizes(val_data, 0)
    mesh = _resolve_mesh(mesh, data_axis, sizes)
    static = _Static(
        loss_fn=loss_fn, optimizer=optimizer, init_fn=init_fn,
        data_fn=data if form == "function" else None, mode=options["mode"], num_steps=num_steps,
        chunk_len=chunk_len, has_aux=options["has_aux"], accumulation_steps=k,
        num_seeds=num_seeds, num_curves=curves, sweep_names=sweep_names,
        has_val=val_data is not None, mesh=mesh, data_axis=data_axis,
    )
    plan = _Plan(static=static, programs=_programs(static), form=form, needed=needed,
                 cut=form == "stacked" and prepared is not data, chunked=chunked,
                 sweep_sizes=sweep_sizes, sweep_grid=sweep_grid, sweep_values=sweep_values)
    return plan, prepared, iterator, first


def _check_sources(params: PyTree, init_fn: Any, num_seeds: int | None, form: str,
                   data_axis: Any) -> None:
    if params is None and init_fn is None:
        raise ValueError("params is None: pass params or an init_fn(key) -> params.")
    if num_seeds is not None and init_fn is None and form != "function":
        raise ValueError("num_seeds needs init_fn (or data given as a function of the key): "
                         "otherwise every seed would train the same curve.")
    if params is not None:
        _check_array_leaves("params", params, 0)
    if not isinstance(data_axis, str):
        raise TypeError(f"data_axis must be a str, got {type(data_axis).__name__}.")


def _prepare_data(form: str, data: Any, needed: int, first_pull: int, key: jax.Array,
                  want_sizes: bool) -> tuple[PyTree, Iterator | None, list | None, set[int]]:
    """Validates the data; returns it, the iterator and its first chunk, and batch sizes."""
    if form == "stacked":
        data = _stacked_steps(data, needed)
        return data, None, None, _batch_sizes(data, 1)
    if form == "iterable":
        iterator = iter(data)
        first = _pull(iterator, first_pull, needed, 0)
        return None, iterator, first, _batch_sizes(first[0], 0)
    # A data function's batch shape is only needed to decide the sharding.
    if not want_sizes:
        return data, None, None, set()
    return data, None, None, _batch_sizes(jax.eval_shape(data, key, jnp.zeros((), jnp.int32)), 0)


def _device_inputs(static: _Static, params: PyTree, key: jax.Array, data: PyTree,
                   dyn: _Dynamic) -> tuple[PyTree, jax.Array, PyTree, _Dynamic]:
    """Places the inputs: on a mesh replicated (the batch sharded); else only the data.

    Without a mesh, params, key and the scalars go to the compiled call as they are (its
    own transfer is cheaper than eager copies); the data is copied once when several
    chunks reuse it.
    """
    mesh = static.mesh
    if mesh is None:
        reused = data is not None and static.chunk_len < static.num_steps
        return params, key, _place(data, None) if reused else data, dyn
    replicated = None if mesh is None else (lambda x: NamedSharding(mesh, PartitionSpec()))
    batch = None if mesh is None else _batch_sharding(static, 0)
    stored = None if mesh is None else _batch_sharding(static, 1)
    val_data = _place(dyn.val_data, batch) if static.has_val else None
    dyn = _place(dyn._replace(val_data=None), replicated)._replace(val_data=val_data)
    params = None if params is None else _place(params, replicated)
    data = None if data is None else _place(data, stored)
    return params, _place(key, replicated), data, dyn


def _chunk_inputs(form: str, data: PyTree, iterator: Iterator | None, first: list | None,
                  static: _Static, needed: int,
                  sharding: Callable[[Any], Any] | None) -> Iterator[tuple[PyTree, int]]:
    """``(data, data_offset)`` per chunk; iterables are pulled lazily, one chunk at a time.

    Stacked data (on device already) holds every step from 0; an iterable's chunk holds
    steps ``offset ..``; function data needs none.
    """
    count = static.chunk_len * static.accumulation_steps
    for offset in range(0, static.num_steps, static.chunk_len):
        if form != "iterable":
            yield data, 0
            continue
        batches = first if offset == 0 else _pull(iterator, count, needed,
                                                  offset * static.accumulation_steps)
        yield _place(_stack_chunk(batches, count), sharding), offset


def _run_chunks(programs: _Programs, static: _Static, params: PyTree, key: jax.Array,
                dyn: _Dynamic, chunks: Iterator[tuple[PyTree, int]],
                progress: Progress | None) -> tuple[jax.Array, tuple[jax.Array, dict]]:
    """Runs the chunk program until the steps are done or every curve has diverged."""
    state = programs.init(params, key, dyn)
    parts, total = [], static.num_steps
    for index, (data, data_offset) in enumerate(chunks):
        state, part = programs.chunk(state, data, np.int32(data_offset), dyn)
        parts.append(part)
        steps_done = min((index + 1) * static.chunk_len, total)
        stop = steps_done < total and bool(jnp.all(state.done))
        if progress is not None:
            progress(total if stop else steps_done, total)
        if stop:
            break
    lrs = jnp.concatenate([part[0] for part in parts])
    records = jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=1), *[part[1] for part in parts])
    return jnp.reshape(state.diverged_at, (-1,)), (lrs, records)


def _complete(lrs: np.ndarray, records: dict, steps_run: int, static: _Static, min_lr: float,
              max_lr: float) -> tuple[np.ndarray, dict]:
    """Cuts chunk padding and fills the steps never run (early stop) with NaN."""
    n = static.num_steps
    if steps_run == n:
        return lrs, records
    if steps_run > n:
        return lrs[:n], jax.tree.map(lambda x: x[:, :n], records)
    ramp = np.asarray(_ramp(np.float32(min_lr), np.float32(max_lr), n, static.mode)(np.arange(n)))
    lrs = np.concatenate([lrs, ramp[steps_run:]])

    def pad(x: np.ndarray) -> np.ndarray:
        fill = np.full((x.shape[0], n - steps_run) + x.shape[2:], _fill_value(x.dtype), x.dtype)
        return np.concatenate([x, fill], axis=1)

    return lrs, jax.tree.map(pad, records)


def _make_result(lrs: np.ndarray, records: dict, diverged_at: np.ndarray,
                 batch_shape: tuple[int, ...], static: _Static, sweep_values: dict,
                 settings: dict) -> RangeTestResult:
    shape = lambda x: x.reshape(batch_shape + x.shape[1:])  # noqa: E731
    records = jax.tree.map(shape, records)
    diverged = diverged_at.reshape(batch_shape)
    if not batch_shape:
        diverged = None if int(diverged) < 0 else int(diverged)
    axes = static.sweep_names + (("seed",) if static.num_seeds is not None else ())
    return RangeTestResult(
        lrs=lrs, losses=records["loss"], smoothed_losses=records["smoothed"],
        diverged_at=diverged, val_losses=records["val"], aux=records["aux"],
        batch_axes=axes, sweep=sweep_values or None, settings=settings,
    )
