"""Models as pure functions: one calling convention for pytrees, Flax nnx and Equinox.

Every training loop in lrjax (the range test, :func:`lrjax.make_model_step`, snapshot
ensembles) runs one function,

    ``loss(params, state, batch, key) -> (loss, (new_state, aux))``,

where ``params`` are the trainable float arrays (what the optimizer sees), ``state`` is
everything else that changes from step to step and is threaded, never optimized
(linen ``batch_stats``, an nnx model's batch statistics and RNG counters, an
``equinox.nn.State``), and ``key`` is the step's PRNG key (``None`` unless
``stochastic``). :func:`pure_model` turns what the user passes into that form:

* a pytree of params with ``loss_fn(params, batch)``; with ``state=``,
  ``loss_fn(params, state, batch) -> (loss, new_state)`` (``has_aux``:
  ``(loss, (new_state, aux))``); with ``stochastic=True`` a keyword ``key=`` is added;
* an ``nnx.Module`` with ``loss_fn(model, batch)``: ``nnx.split(model, nnx.Param, ...)``
  gives the params and the state (its RNG streams included, so dropout draws a fresh
  mask each step); the model is rebuilt from copies inside the function, so the user's
  module is never mutated;
* an ``eqx.Module`` with ``loss_fn(model, batch)`` (``state=``: an ``eqx.nn.State``,
  ``loss_fn(model, state, batch)``): ``eqx.partition(model, eqx.is_inexact_array)``.

Flax and Equinox are never imported here: a module of theirs can only exist when the
user has imported them, so their classes are looked up in ``sys.modules``.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any
PureLoss = Callable[[PyTree, PyTree, PyTree, Any], tuple[jax.Array, tuple[PyTree, Any]]]


class PureModel(NamedTuple):
    """A model in lrjax's pure calling convention (see the module docstring).

    Attributes:
        params: the trainable arrays (what the optimizer updates).
        state: the threaded, non-optimized state (``None`` when there is none).
        loss: ``(params, state, batch, key) -> (loss, (new_state, aux))``.
        evaluate: ``(params, state, batch) -> loss``, deterministic (no key, the state
            is read only; nnx and Equinox models run in eval/inference mode); ``None``
            when ``loss_fn`` is stochastic and no ``eval_fn`` was given.
        split: ``obj -> (params, state)`` for another object of the same kind (what an
            ``init_fn`` returns); ``state`` is ``None`` for pytrees and Equinox (their
            ``init_fn`` returns params only, the given state is shared).
        merge: ``(params, state) -> obj``: a new model (nnx, Equinox) or the params.
        kind: ``"pytree"``, ``"nnx"`` or ``"equinox"``.
        static: what the functions close over besides ``loss_fn``/``eval_fn``: the nnx
            graph definition, the Equinox non-array part, ``None`` for pytrees.
    """

    params: PyTree
    state: PyTree
    loss: PureLoss
    evaluate: Callable[[PyTree, PyTree, PyTree], jax.Array] | None
    split: Callable[[Any], tuple[PyTree, PyTree]]
    merge: Callable[[PyTree, PyTree], Any]
    kind: str
    static: Any = None


def model_kind(obj: Any) -> str:
    """``"nnx"``, ``"equinox"`` or ``"pytree"`` (anything else), without importing either."""
    nnx = sys.modules.get("flax.nnx")
    if nnx is not None and isinstance(obj, nnx.Module):
        return "nnx"
    eqx = sys.modules.get("equinox")
    if eqx is not None and isinstance(obj, eqx.Module):
        return "equinox"
    return "pytree"


def _describe(out: Any) -> str:
    if out is None:
        return "None"
    if isinstance(out, dict):
        return f"a dict with keys {sorted(map(str, out))}"
    if isinstance(out, (tuple, list)):
        return f"a {type(out).__name__} of length {len(out)}"
    return f"{type(out).__name__} of shape {getattr(out, 'shape', '?')}"


def _scalar_loss(loss: Any, where: str) -> jax.Array:
    """``loss`` as a scalar floating array, or a ValueError saying what came back."""
    if loss is None or isinstance(loss, (dict, tuple, list)):
        raise ValueError(f"{where} must return a scalar floating loss, got {_describe(loss)}.")
    loss = jnp.asarray(loss)
    if loss.shape != () or not jnp.issubdtype(loss.dtype, jnp.floating):
        raise ValueError(f"{where} must return a scalar floating loss, got shape {loss.shape} "
                         f"and dtype {loss.dtype}.")
    return loss


def _split_output(out: Any, has_aux: bool, has_state: bool) -> tuple[Any, Any, Any]:
    """``(loss, new_state, aux)`` from what ``loss_fn`` returned, checked."""
    shapes = {(False, False): "loss", (True, False): "(loss, aux)",
              (False, True): "(loss, new_state)", (True, True): "(loss, (new_state, aux))"}
    want = shapes[has_aux, has_state]
    pair = isinstance(out, (tuple, list)) and len(out) == 2
    if not has_aux and not has_state:
        if isinstance(out, (tuple, list)):
            raise ValueError(f"loss_fn returned {_describe(out)}; pass has_aux=True for "
                             "(loss, aux).")
        return _scalar_loss(out, "loss_fn"), None, None
    if not pair or (has_aux and has_state
                    and not (isinstance(out[1], (tuple, list)) and len(out[1]) == 2)):
        raise ValueError(f"loss_fn must return {want}, got {_describe(out)}.")
    loss = _scalar_loss(out[0], "loss_fn")
    if has_aux and has_state:
        return loss, out[1][0], out[1][1]
    return (loss, out[1], None) if has_state else (loss, None, out[1])


def _check_state(new: PyTree, old: PyTree) -> None:
    """The state ``loss_fn`` returns must be shaped like the one it got (it is carried).

    Compared leaf by leaf (shape and dtype) and by tree structure, never by the objects
    themselves: an ``eqx.nn.State`` compares by identity, so two equal states are unequal.
    """
    got, want = _leaf_summary(new), _leaf_summary(old)
    if jax.tree.structure(new) != jax.tree.structure(old) or got != want:
        differ = [g for g in got if g not in want] or ["a different tree structure"]
        raise ValueError("loss_fn must return a new state with the structure, shapes and "
                         f"dtypes of `state`; got {differ} where `state` has "
                         f"{[w for w in want if w not in got] or jax.tree.structure(old)}.")


def _call(loss_fn: Callable, stochastic: bool, args: tuple, key: Any) -> Any:
    return loss_fn(*args, key=key) if stochastic else loss_fn(*args)


def _fresh(tree: PyTree) -> PyTree:
    """A structural copy (new containers and nnx Variables around the same arrays), so
    that a module merged from it can mutate its Variables without touching the user's."""
    return jax.tree.map(lambda x: x, tree)


def pure_model(loss_fn: Callable, params: Any, *, state: PyTree = None, has_aux: bool = False,
               stochastic: bool = False, eval_fn: Callable | None = None) -> PureModel:
    """``loss_fn`` and ``params`` (a pytree, an ``nnx.Module`` or an ``eqx.Module``) in
    lrjax's pure form ``loss(params, state, batch, key) -> (loss, (new_state, aux))``.

    Args:
        loss_fn: ``(params, batch)``; with ``state``: ``(params, state, batch)``; for a
            module ``(model, batch)`` (Equinox with ``state``: ``(model, state, batch)``).
            Returns ``loss``, ``(loss, aux)`` (``has_aux``), ``(loss, new_state)``
            (``state``) or ``(loss, (new_state, aux))`` (both). With ``stochastic`` it
            is called with a keyword ``key=``.
        params: the params pytree, or the model.
        state: the initial threaded state (pytrees and Equinox; an nnx model carries
            its own).
        has_aux: ``loss_fn`` returns aux.
        stochastic: ``loss_fn`` takes ``key=``.
        eval_fn: deterministic evaluation, same arguments as ``loss_fn`` without ``key``,
            returning the loss (default: ``loss_fn``'s loss; for nnx and Equinox models
            run in eval/inference mode).

    Returns:
        A :class:`PureModel`.

    Example:
        >>> import jax.numpy as jnp
        >>> pm = pure_model(lambda p, b: jnp.sum((p["w"] * b) ** 2), {"w": jnp.ones(2)})
        >>> loss, (state, aux) = pm.loss(pm.params, pm.state, jnp.ones(2), None)
        >>> float(loss), state, aux
        (2.0, None, None)

    References:
        Flax NNX "functional API" (``nnx.split`` / ``nnx.merge``); Equinox
        ``eqx.partition`` / ``eqx.combine``.
    """
    kind = model_kind(params)
    if kind == "pytree" and params is not None:
        check_trainable("params", params)
    if kind == "nnx":
        return _nnx_model(loss_fn, params, state, has_aux, stochastic, eval_fn)
    if kind == "equinox":
        eqx = sys.modules["equinox"]
        trainable, static = eqx.partition(params, eqx.is_inexact_array)
        combine = lambda p: eqx.combine(p, static)  # noqa: E731
        infer = getattr(eqx.nn, "inference_mode", None) or eqx.tree_inference
        return _functional(loss_fn, trainable, state, has_aux, stochastic, eval_fn, combine,
                           lambda m: infer(m, True), "equinox",
                           lambda m: eqx.partition(m, eqx.is_inexact_array)[0], static)
    return _functional(loss_fn, params, state, has_aux, stochastic, eval_fn, lambda p: p,
                       lambda p: p, "pytree", lambda p: p, None)


def _functional(loss_fn: Callable, params: PyTree, state: PyTree, has_aux: bool,
                stochastic: bool, eval_fn: Callable | None, build: Callable, eval_mode: Callable,
                kind: str, trainable: Callable, static: Any) -> PureModel:
    """Pytrees and Equinox: ``build(params)`` is what ``loss_fn`` receives."""
    has_state = state is not None

    def loss(p: PyTree, s: PyTree, batch: PyTree, key: Any) -> tuple:
        args = (build(p), s, batch) if has_state else (build(p), batch)
        value, new_state, aux = _split_output(_call(loss_fn, stochastic, args, key), has_aux,
                                              has_state)
        if has_state:
            _check_state(new_state, s)
        return value, (new_state, aux)

    def evaluate(p: PyTree, s: PyTree, batch: PyTree) -> jax.Array:
        model = eval_mode(build(p))
        args = (model, s, batch) if has_state else (model, batch)
        if eval_fn is not None:
            return _scalar_loss(eval_fn(*args), "eval_fn")
        return _split_output(loss_fn(*args), has_aux, has_state)[0]

    return PureModel(params=params, state=state, loss=loss,
                     evaluate=None if stochastic and eval_fn is None else evaluate,
                     split=lambda obj: (trainable(obj), None),
                     merge=lambda p, s: build(p), kind=kind, static=static)


def _nnx_model(loss_fn: Callable, model: Any, state: PyTree, has_aux: bool, stochastic: bool,
               eval_fn: Callable | None) -> PureModel:
    nnx = sys.modules["flax.nnx"]
    if state is not None:
        raise ValueError("state: an nnx model carries its own state (batch statistics, RNG "
                         "streams); pass state=None.")
    _warn_if_eval_mode(nnx, model)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    check_trainable("params", params)

    def build(p: PyTree, s: PyTree) -> Any:
        return nnx.merge(graphdef, *_fresh((p, s)))

    def loss(p: PyTree, s: PyTree, batch: PyTree, key: Any) -> tuple:
        module = build(p, s)
        value, _, aux = _split_output(_call(loss_fn, stochastic, (module, batch), key), has_aux,
                                      False)
        # The RNG counters and batch statistics the call advanced are the new state.
        return value, (nnx.split(module, nnx.Param, ...)[2], aux)

    def evaluate(p: PyTree, s: PyTree, batch: PyTree) -> jax.Array:
        module = build(p, s)
        module.eval()  # Dropout off, BatchNorm on its running averages
        if eval_fn is not None:
            return _scalar_loss(eval_fn(module, batch), "eval_fn")
        return _split_output(loss_fn(module, batch), has_aux, False)[0]

    def split(obj: Any) -> tuple[PyTree, PyTree]:
        if model_kind(obj) != "nnx":
            raise ValueError(f"init_fn must return an nnx.Module like `params`, got "
                             f"{type(obj).__name__}.")
        other, p, s = nnx.split(obj, nnx.Param, ...)
        if other != graphdef:
            raise ValueError("init_fn(key) must return a model with the same structure as "
                             "`params` (the nnx graph definitions differ).")
        return p, s

    return PureModel(params=_fresh(params), state=_fresh(rest), loss=loss,
                     evaluate=None if stochastic and eval_fn is None else evaluate,
                     split=split, merge=build, kind="nnx", static=graphdef)


def check_trainable(name: str, params: PyTree) -> None:
    """Every trainable leaf must be a floating (or complex) array: the optimizer
    differentiates them. An integer leaf (``{"w": jnp.int32(3)}``, an ``nnx.Param(int)``)
    would otherwise reach JAX's raw "grad requires real- or complex-valued inputs"."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        try:
            dtype = jnp.result_type(leaf)
        except TypeError:  # not an array at all: the callers' array checks say so
            continue
        if not jnp.issubdtype(dtype, jnp.inexact):
            raise ValueError(
                f"{name}{jax.tree_util.keystr(path)} has dtype {dtype}: trainable params must "
                "be floating arrays (gradients are taken of them). Keep integer values out of "
                "the params (in the state, or as constants of loss_fn), or cast them to float.")


def _warn_if_eval_mode(nnx: Any, model: Any) -> None:
    """An nnx model left in eval mode (``model.eval()``) would be trained so: say it."""
    iterate = getattr(nnx, "iter_modules", None)
    modules = iterate(model) if iterate is not None else model.iter_modules()
    frozen = sorted({type(module).__name__ for _, module in modules
                     if getattr(module, "deterministic", None) is True
                     or getattr(module, "use_running_average", None) is True})
    if frozen:
        warnings.warn(
            f"the nnx model is in eval mode ({', '.join(frozen)}: dropout off, batch "
            "statistics frozen) and will be trained that way; call model.train() first "
            "unless that is what you want.", UserWarning, stacklevel=4)


def is_model(obj: Any) -> bool:
    """Whether ``obj`` is an nnx or Equinox module (not a plain params pytree)."""
    return model_kind(obj) != "pytree"


def _leaf_summary(tree: PyTree) -> list[str]:
    """``path: shape dtype`` for every leaf, for messages that show a difference."""
    return [f"{jax.tree_util.keystr(path)}: {tuple(np.shape(x))} {jnp.result_type(x)}"
            for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]]


def eval_model(model: PureModel, params: PyTree, state: PyTree) -> Any:
    """The trained thing of ``model`` in evaluation mode, rebuilt from ``(params, state)``.

    An nnx model: a fresh module (copies of the containers, so the caller's arrays are
    untouched) switched to ``.eval()`` (Dropout off, BatchNorm on its running averages);
    an Equinox model: ``eqx.nn.inference_mode`` of the combined model; a pytree: the params.

    Example:
        >>> import jax.numpy as jnp
        >>> pm = pure_model(lambda p, b: jnp.sum(p * b), jnp.ones(2))
        >>> eval_model(pm, pm.params, pm.state).tolist()
        [1.0, 1.0]
    """
    built = model.merge(params, state)
    if model.kind == "nnx":
        built.eval()
    elif model.kind == "equinox":
        eqx = sys.modules["equinox"]
        infer = getattr(eqx.nn, "inference_mode", None) or eqx.tree_inference
        built = infer(built, True)
    return built


def leaf_differences(new: PyTree, old: PyTree) -> list[str] | None:
    """``None`` when ``new`` has ``old``'s leaves (paths, shapes, dtypes, in order), else
    the ``path: shape dtype`` entries of ``new`` that ``old`` lacks (or the counts).

    Compares leaf by leaf, never the objects (an ``eqx.nn.State`` compares by identity);
    ``old`` may hold ``jax.ShapeDtypeStruct`` s.

    Example:
        >>> import jax.numpy as jnp
        >>> leaf_differences({"w": jnp.ones(2)}, {"w": jnp.zeros(2)}) is None
        True
        >>> leaf_differences({"w": jnp.ones(3)}, {"w": jnp.zeros(2)})
        ["['w']: (3,) float32"]
    """
    got, want = _leaf_summary(new), _leaf_summary(old)
    if got == want:
        return None
    return [g for g in got if g not in want] or [f"{len(got)} leaves where {len(want)} were "
                                                 "expected"]
