"""Checks of the callables a trainer is given: the loss, and the optimizer factory.

Every trainer that builds its optimizer from a factory taking ``learning_rate`` (the range
test, :func:`lrjax.train_snapshots`) refuses the same mistakes with the same messages: a
``GradientTransformation`` passed where a factory belongs, a factory without a
``learning_rate`` keyword, one that does not build a transformation. What is read off a
factory (its signature, whether it builds) is cached per factory in the engine's cache.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import optax

from lrjax._engine.cache import PROGRAMS, fn_key
from lrjax._engine.checks import check_transformation


def _memo(what: str, fn: Any, name: str, compute: Callable[[], Any]) -> Any:
    """``compute()`` cached in the engine's cache per ``(what, fn, name)``.

    For answers read off a factory (its signature, whether an argument traces), which
    cost more than the rest of a call's validation.
    """
    return PROGRAMS.get(("range_test.memo", what, fn_key(fn), name), compute)


def _accepts(factory: Callable[..., Any], name: str) -> bool:
    """Whether ``factory`` takes a keyword ``name`` (True when the signature is opaque)."""
    return _memo("accepts", factory, name, functools.partial(_inspect_accepts, factory, name))


def _inspect_accepts(factory: Any, name: str) -> bool:
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return True
    return name in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


_CHAIN_HINT = ("optimizer=lambda learning_rate: optax.chain(optax.clip_by_global_norm(1.0), "
               "optax.adam(learning_rate))")


def _check_callables(loss_fn: Any, optimizer: Any, init_fn: Any, progress: Any) -> None:
    if isinstance(optimizer, optax.GradientTransformation):
        raise TypeError("optimizer must be a factory taking learning_rate (e.g. optax.adam), "
                        f"not a GradientTransformation; for a chain, wrap it: {_CHAIN_HINT}.")
    for name, value in (("loss_fn", loss_fn), ("optimizer", optimizer)):
        if not callable(value):
            raise TypeError(f"{name} must be callable, got {type(value).__name__}.")
    if not _accepts(optimizer, "learning_rate"):
        raise ValueError("optimizer must accept a `learning_rate` keyword argument (the "
                         f"range test passes its ramp there); for a chain: {_CHAIN_HINT}.")
    _memo("returns", optimizer, "learning_rate", functools.partial(_check_returns, optimizer))
    for name, value in (("init_fn", init_fn), ("progress", progress)):
        if value is not None and not callable(value):
            raise TypeError(f"{name} must be callable or None, got {type(value).__name__}.")


def _check_returns(optimizer: Any) -> bool:
    """Whether ``optimizer(learning_rate=1e-3)`` builds a transformation (once per factory).

    A factory that cannot be called so on the host (it needs a swept argument, or reads the
    rate as a schedule) is not judged here: its own error comes when the program is traced.
    """
    try:
        tx = optimizer(learning_rate=1e-3)
    except Exception:  # noqa: BLE001  not callable this way: the trace reports it
        return False
    check_transformation("optimizer(learning_rate=...)", tx)
    return True
