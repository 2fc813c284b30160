"""The learning-rate range test as one compiled program (``jit`` of a loop over steps).

The test trains from ``min_lr`` to ``max_lr`` over ``num_steps`` optimizer steps, records
the loss, and reads a learning rate off the curve (Smith 2017, sec. 3.3; fastai
``lr_find``; torch-lr-finder). Here the ramp is an optax schedule handed to the user's
optimizer factory, and all steps run inside one compiled ``lax.while_loop``: no
per-step Python, no host round trip per step. This module is the host-side driver;
validation and planning live in :mod:`lrjax.finder.plan`, the compiled program in
:mod:`lrjax.finder.program`, the data forms in :mod:`lrjax._engine.data`.

Semantics (the choices the references leave open):

* **Ramp.** ``exp``: ``lr_t = min_lr * (max_lr/min_lr)**(t/(N-1))``; ``linear``:
  ``lr_t = min_lr + (max_lr-min_lr) * t/(N-1)``. Step 0 trains at ``min_lr``, step
  ``N-1`` at ``max_lr``; ``result.lrs[t]`` is the rate step ``t`` trained at (the rates
  are computed on the host in float64 and looked up on device, so every program and data
  form trains at bit-identical rates). Bounds
  outside float32's normal range, or an exp ramp whose ratio overflows float32, are
  refused before anything runs.
* **Smoothing.** Bias-corrected EMA: ``avg_t = beta*avg_{t-1} + (1-beta)*loss_t``,
  ``smoothed_t = avg_t / (1 - beta**(t+1))`` (``beta`` must stay below 1 in float32).
* **Divergence.** Step ``t`` diverges when ``loss_t`` is not finite or
  ``smoothed_t > diverge_threshold * best_t`` with ``best_t = min_{s<=t} smoothed_s``
  (computed as ``smoothed_t - best_t > (diverge_threshold - 1) * |best_t|``, the same for
  a positive loss and still meaningful for a negative one; ``inf`` disables it; a best of
  exactly 0 has no scale, so only a non-finite loss stops such a curve). That
  step is recorded; the loop then exits, so no later step does any work (a scan that
  skips every later step with ``lax.cond`` computes the same but was measured 5-10%
  slower), and the later steps are recorded as NaN. ``diverged_at`` is the step index,
  ``None`` when a single curve never diverged (``-1`` entries in a batched result).
* **Models.** ``state=`` threads a pytree (linen ``batch_stats``) through the steps:
  ``loss_fn(params, state, batch) -> (loss, new_state)``, never optimized.
  ``stochastic=True`` calls ``loss_fn(..., key=k_t)`` with ``k_t = fold_in(k_c, t)``,
  ``k_c = fold_in(seed key, 2)`` the curve's key: reproducible from ``key``, fresh each
  step and seed (sweep rows of one seed share masks: paired comparisons). An
  ``nnx.Module`` or ``eqx.Module`` may be ``params`` (``loss_fn(model, batch)``), see
  :func:`lrjax.pure_model`: its float arrays are trained, the rest (nnx batch stats and
  RNG streams, advanced every step) is threaded; the user's model is never mutated.
  ``val_data`` runs ``eval_fn`` (default ``loss_fn``; nnx / Equinox in eval mode), with
  no key and the state read only.
* **Data.** (1) a pytree of arrays (a dict, tuple, NamedTuple or array, but not a
  ``list``) with a leading step axis of length ``>= num_steps * accumulation_steps``;
  (2) a ``list`` or any other iterable/iterator of batches, pulled ``chunk_size`` steps
  at a time (exactly the batches used, never more) and stacked on the host: a too-short
  iterable, or a batch shaped unlike the first, raises ``ValueError`` (wrap it in
  ``itertools.cycle`` to reuse batches), and no chunk is pulled once every curve has
  diverged; (3) a function ``(key, i) -> batch`` run on device, called with the
  micro-batch index ``i = step * accumulation_steps + j`` and ``key = fold_in(data_key,
  i)``. The same batches give the same curves in every form.
* **Chunks.** Iterables, a ``progress`` callback or an explicit ``chunk_size`` run the
  test in chunks of ``chunk_size`` steps (default ``min(num_steps, 50)``) with one
  compiled chunk program; the state stays on device between chunks; the test stops
  after the first chunk in which every curve has diverged. ``progress(steps_done,
  num_steps)`` is called after each chunk, and once with ``steps_done == num_steps``
  when the test stops early.
* **Curves.** ``num_seeds=S`` runs S tests in one vmapped program (seed ``s`` gets
  ``split(key, S)[s]``, split again into an ``init_fn`` key and a data key). ``sweep``
  maps hyperparameter names to value lists, set through ``optax.inject_hyperparams``;
  several names form a grid. Arguments that cannot be traced (bools, ``adamwr``'s
  ``steps_per_epoch``) run one program per value, stacked into the same grid. Result
  arrays have shape ``(*sweep sizes in dict order, S if num_seeds, num_steps)``. Curves
  run in lockstep: a diverged curve keeps its state (masked) until every curve is done.
* **Devices.** ``devices=lrjax.Devices(mesh, data_axis)`` shards the batch axis (axis 1
  of stacked data, axis 0 of a batch) over ``mesh``'s ``data_axis``. Without a mesh and
  with several devices, it is sharded over all devices when every batch leaf's batch
  size divides the device count; otherwise (or on one device) the test runs on the
  default device. Pass a one-device mesh to force one device. Params, state, optimizer
  state and records are replicated.
* **Caching.** Programs are cached on ``(loss_fn, eval_fn, optimizer, init_fn, data
  function, the model's structure, static options)``; ``min_lr``, ``max_lr``,
  ``smoothing``, ``diverge_threshold``, the sweep values, params and state are runtime
  inputs. A ``functools.partial`` with hashable arguments is keyed by its contents.

Records are float32; aux leaves recorded after divergence are NaN (0 for integer dtypes).
The user's params, state, model and data are never mutated or donated.

References:
    Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017, sec. 3.3.
    Smith, "A disciplined approach to neural network hyper-parameters", 2018.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec

from lrjax._engine.model import PureModel
from lrjax._engine.data import _data_form, _place, _stack_chunk, _take
from lrjax._engine.devices import Devices, resolve_devices
from lrjax.finder.plan import (
    _adapt,
    _check_options,
    _check_ramp,
    _check_sweep,
    _make_plan,
    _static_points,
)
from lrjax._engine.factory_checks import _check_callables
from lrjax.finder.program import (
    _batch_sharding,
    _Dynamic,
    _fill_value,
    _pack_jit,
    _Programs,
    _ramp,
    _ramp_table,
    _Static,
    _unpack,
)
from lrjax.finder.result import RangeTestResult
from lrjax.finder.optimizer_probe import optimizer_settings
from lrjax.finder.suggest import baseline_check as _baseline
from lrjax._engine.checks import as_prng_key, check_flag
from lrjax._engine.execution import check_execution, run_host
from lrjax._engine.processes import fetch
from lrjax._engine.step import LossFn, OptimizerFactory, PyTree

Progress = Callable[[int, int], None]


def lr_ramp(min_lr: float, max_lr: float, num_steps: int, mode: str = "exp") -> optax.Schedule:
    """The range test's learning-rate ramp as an optax schedule.

    ``exp``: ``lr_t = min_lr * (max_lr / min_lr) ** (t / (num_steps - 1))``;
    ``linear``: ``lr_t = min_lr + (max_lr - min_lr) * t / (num_steps - 1)``; counts are
    clamped to ``[0, num_steps - 1]``.

    Args:
        min_lr: learning rate at count 0, finite and > 0 (a normal float32).
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
    lo, hi = _check_ramp(min_lr, max_lr, num_steps, mode)
    return _ramp(np.float32(lo), np.float32(hi), int(num_steps), mode)


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
    state: PyTree = None,
    stochastic: bool = False,
    eval_fn: Callable[..., Any] | None = None,
    key: jax.Array | int | None = None,
    init_fn: Callable[[jax.Array], PyTree] | None = None,
    num_seeds: int | None = None,
    sweep: Mapping[str, Sequence[float]] | None = None,
    val_data: PyTree | None = None,
    accumulation_steps: int = 1,
    chunk_size: int | None = None,
    devices: Devices | None = None,
    progress: Progress | None = None,
    execution: str = "auto",
    baseline_loss: float | None = None,
    **deprecated: Any,
) -> RangeTestResult:
    """Runs the learning-rate range test as one compiled loop and returns the curves.

    Step ``t`` trains with ``lr_t`` (see :func:`lr_ramp`) through
    ``optimizer(learning_rate=ramp)``, records ``loss_t``, the bias-corrected EMA
    ``smoothed_t = avg_t / (1 - beta**(t+1))`` with ``avg_t = beta*avg_{t-1} + (1-beta)*loss_t``,
    and stops (skips all later steps, recorded as NaN) once ``loss_t`` is not finite or
    ``smoothed_t > diverge_threshold * min_{s<=t} smoothed_s``. See the module docstring
    for models, data forms, seeds, sweeps, chunks, devices and caching.

    Args:
        loss_fn: ``(params, batch) -> scalar loss``, or ``(loss, aux)`` with ``has_aux``;
            with ``state``: ``(params, state, batch) -> (loss, new_state)`` (``has_aux``:
            ``(loss, (new_state, aux))``); for an nnx / Equinox model ``(model, batch)``;
            with ``stochastic``: called with a keyword ``key=``.
        params: initial params or an ``nnx.Module`` / ``eqx.Module`` (never modified);
            may be ``None`` when ``init_fn`` is given (then params, if given, only checks
            what ``init_fn`` returns).
        optimizer: factory taking ``learning_rate``, e.g. ``optax.adam``.
        data: stacked pytree, iterable of batches, or ``(key, i) -> batch``.
        min_lr: first learning rate (> 0).
        max_lr: last learning rate (> min_lr).
        num_steps: optimizer steps (>= 2).
        mode: ``"exp"`` or ``"linear"`` ramp.
        smoothing: EMA factor ``beta`` in ``[0, 1)``.
        diverge_threshold: divergence factor over the best smoothed loss (> 1; inf disables).
        has_aux: ``loss_fn`` returns aux; recorded in ``result.aux`` (averaged over
            micro-batches when ``accumulation_steps > 1``).
        state: a pytree threaded through the steps (e.g. linen ``batch_stats``), never
            optimized; shared by every seed and sweep curve at the start.
        stochastic: pass ``loss_fn`` a fresh ``key=`` each step (dropout).
        eval_fn: the deterministic loss ``val_data`` is evaluated with (``(params,
            batch)``, with state ``(params, state, batch)``; default ``loss_fn``).
        key: PRNG key or an int seed for ``init_fn``, seeds, data functions and
            ``stochastic`` keys (default ``jax.random.key(0)``).
        init_fn: ``key -> params`` (or a model like ``params``), used instead of ``params``.
        num_seeds: run this many tests in one vmapped program.
        sweep: ``{hyperparameter: values}`` set with ``optax.inject_hyperparams``.
        val_data: one held-out batch, evaluated after each update.
        accumulation_steps: micro-batches averaged per optimizer step.
        chunk_size: steps per compiled chunk (iterables, progress).
        devices: an :class:`lrjax.Devices` ``(mesh, data_axis)``: the mesh whose
            ``data_axis`` the batch is sharded over (default: automatic, see above).
            ``mesh=`` and ``data_axis=`` are its deprecated spelling.
        execution: how the steps run (the same numbers either way): ``"compiled"``, one
            compiled ``lax.while_loop`` that exits at divergence; ``"host"``, a Python
            loop over a compiled one-step program (the state stays on device, the stop is
            read a few steps behind, so at most two steps run after it, their records
            NaN); ``"auto"`` (default), ``"host"`` on a CPU when the step contains a
            convolution (XLA:CPU runs a convolution's gradient inside a loop body many
            times slower, jax-ml/jax#12868), else ``"compiled"``. The strategy used is
            ``result.settings["execution"]``.
        progress: host callback ``progress(steps_done, num_steps)`` (once per program
            when static sweep values run one program each; an iterable is then read
            once, in full, and shared).
        baseline_loss: the loss of the best CONSTANT prediction on ``val_data`` (on the
            training data without it): for cross-entropy the entropy of the class
            frequencies (``log(num_classes)`` when balanced), for squared error the
            targets' variance. Optional (a finite nonzero number); kept in
            ``result.settings["baseline_loss"]``, and ``suggest()`` and ``peak_lr()``
            then warn (``lrjax.NoLearningWarning``) when the curve never got clearly below
            it (:attr:`RangeTestResult.beyond_baseline`).

    Returns:
        A :class:`RangeTestResult` (host numpy arrays).

    Example:
        >>> import optax, jax.numpy as jnp
        >>> loss_fn = lambda p, b: jnp.mean((b[0] * p - b[1]) ** 2)
        >>> x = np.linspace(-1, 1, 20 * 8, dtype=np.float32).reshape(20, 8)
        >>> result = range_test(loss_fn, jnp.float32(0.0), optax.sgd, (x, 3 * x),
        ...                     min_lr=1e-3, max_lr=1e2, num_steps=20)
        >>> result.losses.shape, result.diverged_at is not None
        ((20,), True)

    References:
        Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017, sec. 3.3.
    """
    mesh, data_axis = resolve_devices("range_test", devices, deprecated)
    lo, hi = _check_ramp(min_lr, max_lr, num_steps, mode)
    beta, threshold = _check_options(smoothing, diverge_threshold, accumulation_steps,
                                     chunk_size, num_seeds)
    key = as_prng_key(key)
    has_aux, stochastic = check_flag("has_aux", has_aux), check_flag("stochastic", stochastic)
    _check_callables(loss_fn, optimizer, init_fn, progress)
    check_execution(execution)
    baseline = _baseline.check_baseline(baseline_loss)
    options = dict(mode=mode, num_steps=int(num_steps), has_aux=has_aux,
                   has_state=state is not None, stochastic=stochastic,
                   accumulation_steps=int(accumulation_steps), num_seeds=num_seeds,
                   chunk_size=chunk_size, mesh=mesh, data_axis=data_axis, execution=execution)
    model = _adapt(loss_fn, params, state, options, eval_fn)
    values, static_names = ({}, ()) if sweep is None else _check_sweep(sweep, optimizer)
    settings = dict(min_lr=lo, max_lr=hi, num_steps=int(num_steps), mode=mode,
                    smoothing=beta, diverge_threshold=threshold,
                    accumulation_steps=int(accumulation_steps),
                    **optimizer_settings(_probe_optimizer(optimizer, values),
                                         _probe_params(model, init_fn, key)))
    if baseline is not None:
        settings["baseline_loss"] = baseline
    run = functools.partial(_range_test, loss_fn, model, data=data, key=key, init_fn=init_fn,
                            val_data=val_data, progress=progress, eval_fn=eval_fn,
                            options=options, settings=settings)
    if not static_names:
        return run(optimizer, values)
    traced = {n: v for n, v in values.items() if n not in static_names}
    if _data_form(data) == "iterable":  # every program must see the same batches
        needed = int(num_steps) * int(accumulation_steps)
        run = functools.partial(run, data=_take(iter(data), needed, needed, 0))
    parts = [run(functools.partial(optimizer, **point), traced)
             for point in _static_points(values, static_names)]
    return _join_static(parts, values, static_names, num_seeds)


def _probe_optimizer(optimizer: OptimizerFactory, values: dict) -> OptimizerFactory:
    """The factory the optimizer probe builds: with a sweep, at its first point (a factory
    may need the swept argument: ``lambda learning_rate, momentum: ...``)."""
    if not values:
        return optimizer
    return functools.partial(optimizer, **{name: items[0] for name, items in values.items()})


def _probe_params(model: PureModel, init_fn: Any, key: jax.Array) -> Any:
    """The trainable params' shapes for the optimizer probe: ``params``, or what
    ``init_fn`` would return (``jax.eval_shape``: nothing runs); ``None`` if unknown."""
    if model.params is not None:
        return model.params
    if init_fn is None:
        return None
    try:
        return jax.eval_shape(lambda k: model.split(init_fn(k))[0], key)
    except Exception:  # noqa: BLE001 - the plan reports a bad init_fn; the probe just skips
        return None


def _range_test(loss_fn: LossFn, model: PureModel, optimizer: OptimizerFactory,
                sweep_values: dict, *, data: Any, key: jax.Array, init_fn: Any, val_data: Any,
                progress: Any, eval_fn: Any, options: dict, settings: dict) -> RangeTestResult:
    """One compiled range test (every swept value traced)."""
    plan, data, iterator, first = _make_plan(loss_fn, model, optimizer, data, key, init_fn,
                                             sweep_values, val_data, progress, eval_fn, options)
    static, programs, form, needed = plan.static, plan.programs, plan.form, plan.needed
    num_seeds = static.num_seeds
    seeds = num_seeds or 1
    table = _ramp_table(settings["min_lr"], settings["max_lr"], static.num_steps, static.mode)
    scalars = np.concatenate([np.array([settings["smoothing"], settings["diverge_threshold"]],
                                       np.float32), table])
    # Without a sweep no values are passed: every argument costs the call a transfer.
    curve_values = (None if not static.sweep_names else
                    plan.sweep_grid if seeds == 1 else np.repeat(plan.sweep_grid, seeds, axis=0))
    dyn = _Dynamic(scalars=scalars, sweep_values=curve_values, val_data=val_data)
    stacked = data if form == "stacked" else None
    host = programs.resolve(model.params, model.state, key,
                            _first_data(form, stacked, first, static), dyn) == "host"
    params, model_state, key, data, dyn = _device_inputs(static, model.params, model.state,
                                                         key, stacked, dyn, host)
    stored = None if static.mesh is None else _batch_sharding(static, 1)

    chunks = _chunk_inputs(form, data, iterator, first, static, needed, stored)
    # Host work that needs no result runs here, while the device computes.
    batch_shape = plan.sweep_sizes + ((num_seeds,) if num_seeds is not None else ())
    if host:
        diverged_at, lrs, records = _run_host(programs, static, params, model_state, key, dyn,
                                              chunks, progress, table)
    else:
        if plan.chunked:
            diverged_at, (lrs, records) = _run_chunks(programs, static, params, model_state,
                                                      key, dyn, chunks, progress)
            packed, aux = _pack_jit(diverged_at, lrs, records)
        else:
            packed, aux = programs.run(params, model_state, key, data, dyn)
        packed, aux = fetch((packed, aux))
        diverged_at, lrs, records = _unpack(np.asarray(packed), aux, static.num_curves,
                                            static.has_val)
    lrs, records = _complete(lrs, records, table, static)
    _warn_first_step(records["loss"], settings["min_lr"])
    return _make_result(lrs, records, diverged_at, batch_shape, static, plan.sweep_values,
                        dict(settings, execution=programs.execution))


def _warn_first_step(losses: np.ndarray, min_lr: float) -> None:
    """Warns when a curve's loss is not finite at step 0: no learning rate is to blame.

    Step 0 trains at ``min_lr``; a NaN/inf loss there comes from the data (NaN/inf values,
    an empty batch), the params or ``loss_fn``, and the curve has nothing to read.
    """
    first = np.asarray(losses)[:, 0]
    bad = int(np.count_nonzero(~np.isfinite(first)))
    if bad:
        curves = "" if first.size == 1 else f" in {bad} of {first.size} curves"
        warnings.warn(
            f"range_test: the loss is not finite at step 0 (lr {min_lr:.3g}){curves}, before "
            "the learning rate can matter: check data (NaN/inf values, empty batches), params "
            "and loss_fn; such a curve stops at once and has nothing to read.",
            RuntimeWarning, stacklevel=4)


def _device_inputs(static: _Static, params: PyTree, model_state: PyTree, key: jax.Array,
                   data: PyTree, dyn: _Dynamic, host: bool = False) -> tuple:
    """Places the inputs: on a mesh replicated (the batch sharded); else only the data.

    Without a mesh, params, state, key and the scalars go to the compiled call as they
    are (its own transfer is cheaper than eager copies); the data (and, for the host
    loop, the scalars) is copied once when several calls reuse it.
    """
    mesh = static.mesh
    if mesh is None:
        reused = data is not None and (host or static.chunk_len < static.num_steps)
        if host:  # every step's call reads them: one copy to device, not one per step
            dyn = _place(dyn, None)
        return params, model_state, key, _place(data, None) if reused else data, dyn
    replicated = lambda x: NamedSharding(mesh, PartitionSpec())  # noqa: E731
    val_data = _place(dyn.val_data, _batch_sharding(static, 0)) if static.has_val else None
    dyn = _place(dyn._replace(val_data=None), replicated)._replace(val_data=val_data)
    params, model_state, key = _place((params, model_state, key), replicated)
    data = None if data is None else _place(data, _batch_sharding(static, 1))
    return params, model_state, key, data, dyn


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
        pulled = offset * static.accumulation_steps
        batches = first if offset == 0 else _take(iterator, count, needed, pulled)
        yield _place(_stack_chunk(batches, count, first[0], pulled), sharding), offset


def _run_chunks(programs: _Programs, static: _Static, params: PyTree, model_state: PyTree,
                key: jax.Array, dyn: _Dynamic, chunks: Iterator[tuple[PyTree, int]],
                progress: Progress | None) -> tuple[jax.Array, tuple[jax.Array, dict]]:
    """Runs the chunk program until the steps are done or every curve has diverged."""
    state = programs.init(params, model_state, key, dyn)
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


def _first_data(form: str, data: PyTree, first: list | None, static: _Static) -> PyTree:
    """Data shaped as one chunk's (for tracing the step); None for function data."""
    if form != "iterable":
        return data
    count = static.chunk_len * static.accumulation_steps
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct((count,) + np.shape(x),
                                                       np.result_type(x)), first[0])


def _run_host(programs: _Programs, static: _Static, params: PyTree, model_state: PyTree,
              key: jax.Array, dyn: _Dynamic, chunks: Iterator[tuple[PyTree, int]],
              progress: Progress | None, table: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """The host strategy: a Python loop over the one-step program, chunk by chunk.

    The state and the record buffers stay on device until the end; the loop stops (a
    few steps late, whose records are NaN) once every curve has diverged. Returns host
    ``(diverged_at, lrs, records)`` (the rates are the table the device read).
    """
    carry, total = None, static.num_steps
    for index, (data, data_offset) in enumerate(chunks):
        if carry is None:
            carry = programs.host_init(params, model_state, key, data, dyn)
        start = index * static.chunk_len
        count = min(static.chunk_len, total - start)
        carry, ran = run_host(programs.host_step, carry, (data, np.int32(data_offset), dyn),
                              start, count)
        stop = ran < count
        if progress is not None:
            progress(total if stop else start + count, total)
        if stop:
            break
    state, buffers = fetch((carry[0], carry[1]))
    # Sliced on the host: a program for it would cost a compile for a copy.
    records = jax.tree.map(lambda x: np.asarray(x)[:, :total], buffers)
    return np.reshape(np.asarray(state.diverged_at), (-1,)), table[:total], records


def _complete(lrs: np.ndarray, records: dict, table: np.ndarray,
              static: _Static) -> tuple[np.ndarray, dict]:
    """Cuts chunk padding and fills the steps never run (early stop) with NaN."""
    n, steps_run = static.num_steps, lrs.shape[0]
    if steps_run == n:
        return lrs, records
    if steps_run > n:
        return lrs[:n], jax.tree.map(lambda x: x[:, :n], records)
    lrs = np.concatenate([lrs, table[steps_run:]])

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
        batch_axes=axes, sweep=sweep_values or None, settings=dict(settings),
    )


def _join_static(parts: list[RangeTestResult], values: dict, static_names: tuple[str, ...],
                 num_seeds: int | None) -> RangeTestResult:
    """One result from one run per static point: axes in the sweep's dict order."""
    traced = [n for n in values if n not in static_names]
    static_shape = tuple(len(values[n]) for n in static_names)
    # Stacked axes: (static names..., traced names..., seed?, steps, ...); wanted: dict order.
    order = [static_names.index(n) if n in static_names else len(static_names) + traced.index(n)
             for n in values]
    lead = len(values)

    def join(*xs: Any) -> np.ndarray:
        stacked = np.stack([np.asarray(x) for x in xs]).reshape(static_shape + np.shape(xs[0]))
        return np.transpose(stacked, order + list(range(lead, stacked.ndim)))

    first = parts[0]
    diverged = join(*[p._diverged_array() for p in parts])
    val = None if first.val_losses is None else join(*[p.val_losses for p in parts])
    aux = None if first.aux is None else jax.tree.map(join, *[p.aux for p in parts])
    return RangeTestResult(
        lrs=first.lrs, losses=join(*[p.losses for p in parts]),
        smoothed_losses=join(*[p.smoothed_losses for p in parts]), diverged_at=diverged,
        val_losses=val, aux=aux,
        batch_axes=tuple(values) + (("seed",) if num_seeds is not None else ()),
        sweep={n: list(v) for n, v in values.items()}, settings=first.settings)
