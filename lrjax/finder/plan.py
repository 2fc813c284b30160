"""The range test's validation and planning (host side; traced values are never checked).

Every argument is checked here before anything is compiled: the ramp (including what
float32 can hold), the options, the callables, the key, the sweep (which hyperparameters
can be traced and which must be static), the data and the model; the result is a
:class:`_Plan`: the compiled programs' static description and how to feed them.
"""

from __future__ import annotations

import functools
import itertools
import math
import numbers
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lrjax._engine.model import PureModel, is_model, pure_model
from lrjax._engine.data import (
    _batch_sizes,
    _check_array_leaves,
    _data_form,
    _take,
    _resolve_mesh,
    _stacked_steps,
)
from lrjax._engine.checks import MAX_COUNT
from lrjax._engine.processes import check_same_shapes, is_global
from lrjax._engine.cache import fn_key, weak
from lrjax._engine.factory_checks import _accepts, _memo
from lrjax.finder.program import _programs, _Programs, _Static
from lrjax.finder.result import _grid_points
from lrjax._engine.step import OptimizerFactory, PyTree, _check_int

MODES = ("exp", "linear")
DEFAULT_CHUNK_SIZE = 50
_F32_TINY, _F32_MAX = float(np.finfo(np.float32).tiny), float(np.finfo(np.float32).max)
# Known ranges of common optimizer hyperparameters, checked for swept values (optax's
# factories check nothing, so a swept weight_decay of -1 would otherwise run).
_SWEEP_RANGES = {"weight_decay": (0.0, math.inf), "momentum": (0.0, 1.0), "b1": (0.0, 1.0),
                 "b2": (0.0, 1.0), "eps": (0.0, math.inf), "decay": (0.0, 1.0)}


# --------------------------------------------------------------------------------------
# Numbers.
# --------------------------------------------------------------------------------------
def _as_real(name: str, value: Any) -> float:
    """A concrete real number (Python, numpy or a concrete 0-d JAX array) as a float."""
    if type(value) in (float, int):  # the fast path of a cold call
        return float(value)
    if isinstance(value, jax.core.Tracer):
        raise TypeError(f"{name} must be a concrete number (the range test is planned on the "
                        "host), got a traced value.")
    if isinstance(value, bool) or not (isinstance(value, numbers.Real) or (
            np.ndim(value) == 0 and hasattr(value, "dtype")
            and np.issubdtype(value.dtype, np.number)
            and not np.issubdtype(value.dtype, np.complexfloating))):
        raise ValueError(f"{name} must be a real number, got {value!r}.")
    return float(value)


def _check_ramp(min_lr: Any, max_lr: Any, num_steps: int, mode: str) -> tuple[float, float]:
    """The ramp's bounds as floats, checked against what a float32 ramp can hold."""
    lo, hi = _as_real("min_lr", min_lr), _as_real("max_lr", max_lr)
    for name, value in (("min_lr", lo), ("max_lr", hi)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}.")
        if not _F32_TINY <= value <= _F32_MAX:
            raise ValueError(f"{name}={value!r} is outside float32's normal range "
                             f"[{_F32_TINY:.3g}, {_F32_MAX:.3g}] (the ramp runs in float32).")
    if not lo < hi:
        raise ValueError(f"min_lr must be < max_lr, got min_lr={min_lr!r} >= max_lr={max_lr!r}.")
    if not np.float32(lo) < np.float32(hi):
        raise ValueError(f"min_lr={lo!r} and max_lr={hi!r} are equal in float32.")
    _check_int("num_steps", num_steps, 2)
    if num_steps > MAX_COUNT:
        raise ValueError(f"num_steps must be in [2, 2**31 - 1] (steps are counted in int32), "
                         f"got {num_steps!r}.")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
    if mode == "exp" and not hi / lo <= _F32_MAX:
        raise ValueError(f"max_lr / min_lr = {hi / lo:.3g} overflows float32 (max "
                         f"{_F32_MAX:.3g}): the exp ramp would train at inf; narrow the range.")
    return lo, hi


def _check_options(smoothing: Any, diverge_threshold: Any, accumulation_steps: int,
                   chunk_size: int | None, num_seeds: int | None) -> tuple[float, float]:
    beta = _as_real("smoothing", smoothing)
    if not (0 <= beta < 1 and np.float32(beta) < 1):
        raise ValueError(f"smoothing must be in [0, 1) in float32 (1 - 2**-24 at most), got "
                         f"{smoothing!r}.")
    threshold = _as_real("diverge_threshold", diverge_threshold)
    if not threshold > 1:
        raise ValueError(
            f"diverge_threshold must be > 1 (inf disables it), got {diverge_threshold!r}.")
    _check_int("accumulation_steps", accumulation_steps, 1)
    if accumulation_steps > MAX_COUNT:
        raise ValueError(f"accumulation_steps must be in [1, 2**31 - 1], got "
                         f"{accumulation_steps!r}.")
    if chunk_size is not None:
        _check_int("chunk_size", chunk_size, 1)
    if num_seeds is not None:
        _check_int("num_seeds", num_seeds, 1)
    return beta, threshold


# --------------------------------------------------------------------------------------
# Callables.
# --------------------------------------------------------------------------------------
# --------------------------------------------------------------------------------------
# Sweeps.
# --------------------------------------------------------------------------------------
_NO_SWEEP = np.zeros((1, 0), np.float32)  # one curve, no swept values
_NO_SWEEP.flags.writeable = False


def _traceable(optimizer: Any, name: str) -> bool:
    """Whether ``optimizer``'s ``name`` can be a traced value (``inject_hyperparams``).

    Arguments that fix a shape or a Python branch (``adamwr``'s ``steps_per_epoch``, a
    bool such as ``nesterov``) cannot: those are swept by one program per value.
    """
    def init(value: jax.Array) -> Any:
        tx = optax.inject_hyperparams(optimizer)(learning_rate=1e-3, **{name: value})
        return tx.init({"w": jnp.zeros(2, jnp.float32)})

    try:
        jax.eval_shape(init, jax.ShapeDtypeStruct((), jnp.float32))
    except Exception:  # noqa: BLE001  any failure to trace means: keep it static
        return False
    return True


def _check_sweep(sweep: Any, optimizer: OptimizerFactory) -> tuple[dict, tuple[str, ...]]:
    """The validated sweep ``{name: values}`` and the names that must stay static."""
    if not isinstance(sweep, Mapping) or not sweep:
        raise ValueError("sweep must be a non-empty dict {hyperparameter name: list of values}.")
    values, static = {}, []
    for name, raw in sweep.items():
        if not isinstance(name, str) or name == "learning_rate":
            raise ValueError(f"sweep: {name!r} cannot be swept (the range test owns learning_rate).")
        if not _accepts(optimizer, name):
            raise ValueError(f"sweep: the optimizer factory takes no argument {name!r}.")
        items = list(raw) if isinstance(raw, (Sequence, np.ndarray)) and not isinstance(
            raw, str) else None
        if not items:
            raise ValueError(f"sweep[{name!r}] must be a non-empty 1-D list of numbers.")
        flags = [isinstance(v, (bool, np.bool_)) for v in items]
        if any(flags):
            if not all(flags):
                raise ValueError(f"sweep[{name!r}] mixes bools and numbers: {items!r}.")
            values[name] = [bool(v) for v in items]
        else:
            numbers_ = [_as_real(f"sweep[{name!r}]", v) for v in items]
            if not all(map(math.isfinite, numbers_)):
                raise ValueError(f"sweep[{name!r}] must contain finite numbers, got {items!r}.")
            lo, hi = _SWEEP_RANGES.get(name, (-math.inf, math.inf))
            if any(not lo <= v <= hi for v in numbers_):
                raise ValueError(f"sweep[{name!r}] values must be in [{lo}, {hi}], got {items!r}.")
            integral = all(isinstance(v, (int, np.integer)) for v in items)
            values[name] = [int(v) for v in numbers_] if integral else numbers_
        for value in values[name]:  # the factory's own checks, on concrete values
            try:
                optimizer(learning_rate=1e-3, **{name: value})
            except (ValueError, TypeError) as error:
                raise ValueError(f"sweep[{name!r}]: the optimizer rejects {value!r}: {error}"
                                 ) from None
        if any(flags) or not _memo("traceable", optimizer, name,
                                   functools.partial(_traceable, optimizer, name)):
            static.append(name)
    return values, tuple(static)


def _traced_grid(values: dict) -> tuple[tuple[str, ...], tuple[int, ...], np.ndarray]:
    """Names, axis sizes and the (V, n_names) float32 grid (first name slowest)."""
    if not values:
        return (), (), _NO_SWEEP
    names = tuple(values)
    return names, tuple(len(values[n]) for n in names), _grid_points(values).astype(np.float32)


def _static_points(values: dict, static: tuple[str, ...]) -> list[dict]:
    """Every combination of the static names' values, the first name slowest."""
    return [dict(zip(static, combo)) for combo in itertools.product(*(values[n] for n in static))]


# --------------------------------------------------------------------------------------
# The plan.
# --------------------------------------------------------------------------------------
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


def _model_key(model: PureModel, loss_fn: Any, eval_fn: Any, options: dict) -> Any:
    """What the compiled program depends on in the model, hashable."""
    parts = (model.kind, fn_key(loss_fn), fn_key(eval_fn), options["has_aux"],
             options["has_state"])
    if model.static is None:
        return parts
    leaves, treedef = jax.tree.flatten(model.static)
    try:
        signature = (treedef, tuple(leaves))
        hash(signature)
    except TypeError:  # unhashable leaves (e.g. integer arrays of an Equinox model)
        # The cached program keeps this object alive, so its id is not reused meanwhile.
        return parts + (("id", id(model.static)),)
    return parts + (signature,)


def _make_plan(loss_fn: Any, model: PureModel, optimizer: OptimizerFactory, data: Any,
               key: jax.Array, init_fn: Any, sweep_values: dict, val_data: Any,
               progress: Any, eval_fn: Any, options: dict
               ) -> tuple[_Plan, Any, Iterator | None, list | None]:
    """Validates the call and plans it; also returns the data, iterator and first chunk."""
    num_steps, num_seeds, chunk_size = (options["num_steps"], options["num_seeds"],
                                        options["chunk_size"])
    mesh, data_axis = options["mesh"], options["data_axis"]
    form = _data_form(data)
    _check_sources(model, init_fn, num_seeds, form, data_axis)
    if val_data is not None and model.evaluate is None:
        raise ValueError("val_data with stochastic=True needs eval_fn: the evaluation must be "
                         "deterministic (no key), e.g. the model in eval mode.")
    sweep_names, sweep_sizes, sweep_grid = _traced_grid(sweep_values)
    curves = len(sweep_grid) * (num_seeds or 1)
    k = options["accumulation_steps"]
    needed = num_steps * k
    if needed > MAX_COUNT:
        raise ValueError(f"num_steps * accumulation_steps = {needed} micro-batches: at most "
                         "2**31 - 1 (micro-batches are counted in int32).")
    chunked = form == "iterable" or progress is not None or chunk_size is not None
    chunk_len = min(chunk_size or DEFAULT_CHUNK_SIZE, num_steps) if chunked else num_steps

    prepared, iterator, first, sizes = _prepare_data(form, data, needed, chunk_len * k, key,
                                                     mesh is not None or jax.device_count() > 1)
    # A data function returns the whole batch, and so do arrays assembled over every
    # process; other stacked data, batches and val_data are this process's share of it
    # under jax.distributed.
    whole_data = form == "function" or is_global(prepared)
    whole, sizes = (sizes, set()) if whole_data else (set(), sizes)
    share = prepared if form == "stacked" else first[0] if form == "iterable" else None
    check_same_shapes("data and val_data", (share, val_data))
    if val_data is not None:
        _check_array_leaves("val_data", val_data, 0)
        (whole if is_global(val_data) else sizes).update(_batch_sizes(val_data, 0))
    mesh = _resolve_mesh(mesh, data_axis, sizes, whole)
    static = _Static(
        model=model, model_key=_model_key(model, loss_fn, eval_fn, options), optimizer=optimizer,
        init_fn=init_fn, data_fn=data if form == "function" else None, mode=options["mode"],
        num_steps=num_steps, chunk_len=chunk_len, stochastic=options["stochastic"],
        accumulation_steps=k, num_seeds=num_seeds, num_curves=curves, sweep_names=sweep_names,
        has_val=val_data is not None, mesh=mesh, data_axis=data_axis,
        execution=options["execution"],
    )
    weak_model = functools.partial(_weak_model, model, loss_fn, eval_fn, options)
    plan = _Plan(static=static, programs=_programs(static, weak_model), form=form, needed=needed,
                 cut=form == "stacked" and prepared is not data, chunked=chunked,
                 sweep_sizes=sweep_sizes, sweep_grid=sweep_grid, sweep_values=sweep_values)
    return plan, prepared, iterator, first


def _weak_model(model: PureModel, loss_fn: Any, eval_fn: Any, options: dict) -> PureModel:
    """``model`` again around weak proxies of the user's functions (for cached programs)."""
    state = None if model.kind == "nnx" else model.state  # nnx: the module carries its own
    return _adapt(weak(loss_fn), model.merge(model.params, model.state), state, options,
                  weak(eval_fn))


def _adapt(loss_fn: Any, params: Any, state: Any, options: dict, eval_fn: Any) -> PureModel:
    if eval_fn is not None and not callable(eval_fn):
        raise TypeError(f"eval_fn must be callable or None, got {type(eval_fn).__name__}.")
    if state is not None and not is_model(params):
        _check_array_leaves("state", state, 0)
    return pure_model(loss_fn, params, state=state, has_aux=options["has_aux"],
                      stochastic=options["stochastic"], eval_fn=eval_fn)


def _check_sources(model: PureModel, init_fn: Any, num_seeds: int | None, form: str,
                   data_axis: Any) -> None:
    if model.params is None and init_fn is None:
        raise ValueError("params is None: pass params or an init_fn(key) -> params.")
    if num_seeds is not None and init_fn is None and form != "function":
        raise ValueError("num_seeds needs init_fn (or data given as a function of the key): "
                         "otherwise every seed would train the same curve.")
    if model.params is not None:
        _check_array_leaves("params", model.params, 0)
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
        first = _take(iterator, first_pull, needed, 0)
        return None, iterator, first, _batch_sizes(first[0], 0)
    # A data function's batch shape is only needed to decide the sharding.
    if not want_sizes:
        return data, None, None, set()
    return data, None, None, _batch_sizes(jax.eval_shape(data, key, jnp.zeros((), jnp.int32)), 0)
