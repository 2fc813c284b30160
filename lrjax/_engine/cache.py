"""The engine's one compile cache: programs keyed on the user's functions, held weakly.

Every trainer (range test, snapshots, search, halving) caches its compiled programs here,
keyed on what the programs depend on: the user's callables (``loss_fn``, ``eval_fn``,
``init_fn``, the optimizer factory, a data function) and hashable static options. So a
repeated call with the same functions and shapes reuses its executables and never
recompiles.

Two rules keep the cache from owning anything of the user's:

* **Keys hold user functions weakly.** :func:`fn_key` turns a callable into a weak
  reference (a bound method into a :class:`weakref.WeakMethod`; a ``functools.partial``
  with hashable arguments into its contents, so two equal partials share a program). When
  any function of a key is garbage-collected, its entry is dropped.
* **Programs call user functions through weak proxies** (:func:`weak`), so a cached
  program does not keep the function alive either. A program only calls the function
  while it traces, which happens while the caller holds the function.

Nothing is stored on user objects. :func:`clear_caches` empties the cache (and JAX's own
caches of the programs), forcing a recompile on the next call.

Example:
    >>> import lrjax
    >>> lrjax.clear_caches()
    >>> len(PROGRAMS)
    0
"""

from __future__ import annotations

import collections
import functools
import inspect
import threading
import types
import weakref
from collections.abc import Callable
from typing import Any

import jax

__all__ = ["PROGRAMS", "ProgramCache", "clear_caches", "fn_key", "weak"]


class _WeakCall:
    """A callable that calls ``fn`` through a weak reference; equal for the same ``fn``.

    Identity semantics: two proxies are equal when they refer to the same function object
    (for a bound method, the same ``__self__`` and ``__func__``, as a new bound-method object
    is made on every attribute access), never by ``==`` on the objects, which may be
    unhashable or compare arrays.
    """

    __slots__ = ("_ref", "_ident", "__weakref__")

    def __init__(self, fn: Callable) -> None:
        if isinstance(fn, types.MethodType):
            self._ref = weakref.WeakMethod(fn)
            self._ident = (id(fn.__self__), id(fn.__func__))
        else:
            self._ref = weakref.ref(fn)
            self._ident = (id(fn),)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        fn = self._ref()
        if fn is None:  # only a program traced again after its function died gets here
            raise RuntimeError("lrjax: a cached program's function was garbage-collected.")
        return fn(*args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature:
        # optax.inject_hyperparams reads the factory's signature to find its arguments.
        return inspect.signature(self._ref())

    def __eq__(self, other: object) -> bool:
        # Ids are only unique among live objects: both referents must still be alive.
        return (isinstance(other, _WeakCall) and self._ident == other._ident
                and self._ref() is not None and other._ref() is not None)

    def __hash__(self) -> int:
        return hash(self._ident)

    def __repr__(self) -> str:
        return f"weak({self._ref()!r})"


def _weakrefable(fn: Any) -> bool:
    try:
        weakref.ref(fn)
    except TypeError:
        return False
    return True


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def weak(fn: Any) -> Any:
    """``fn`` as a callable that does not keep it alive (a partial keeps its arguments).

    ``None`` and callables that cannot be weakly referenced (builtins) come back as they
    are; they own no user state worth freeing.
    """
    if fn is None:
        return None
    if isinstance(fn, functools.partial) and _hashable((fn.args, tuple(fn.keywords.items()))):
        return functools.partial(weak(fn.func), *fn.args, **fn.keywords)
    if isinstance(fn, types.MethodType) or _weakrefable(fn):
        return _WeakCall(fn)
    return fn


def fn_key(fn: Any) -> Any:
    """The cache-key part of a callable: weak, and by contents for hashable partials."""
    if isinstance(fn, functools.partial):
        parts = ("partial", fn_key(fn.func), fn.args, tuple(sorted(fn.keywords.items())))
        if _hashable(parts):
            return parts
    if fn is None:
        return None
    if isinstance(fn, types.MethodType) or _weakrefable(fn):
        return _WeakCall(fn)
    return fn


def _referents(key: Any) -> list[Any]:
    """The live objects a key refers to weakly (to drop the entry when one dies)."""
    if isinstance(key, _WeakCall):
        target = key._ref()
        if isinstance(key._ref, weakref.WeakMethod):
            target = getattr(target, "__self__", None)
        return [] if target is None else [target]
    if isinstance(key, tuple):  # NamedTuples included
        return [r for part in key for r in _referents(part)]
    return []


class ProgramCache:
    """A bounded LRU of compiled programs whose entries go when a key's function goes.

    Args:
        maxsize: entries kept; the least recently used is dropped past it.
    """

    def __init__(self, maxsize: int = 64) -> None:
        self.maxsize = maxsize
        self._entries: collections.OrderedDict[Any, tuple[Any, list]] = collections.OrderedDict()
        self._lock = threading.RLock()
        self.builds = 0  # programs built (a test's compile counter for the trainers)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Any, build: Callable[[], Any]) -> Any:
        """The program for ``key``, built by ``build()`` the first time; unhashable: built."""
        if not _hashable(key):
            self.builds += 1
            return build()
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key][0]
        value = build()
        with self._lock:
            self.builds += 1
            finalizers = [weakref.finalize(obj, self._drop, key) for obj in _referents(key)
                          if _weakrefable(obj)]
            self._entries[key] = (value, finalizers)
            while len(self._entries) > self.maxsize:
                self._evict(next(iter(self._entries)))
        return value

    def _drop(self, key: Any) -> None:
        with self._lock:
            if key in self._entries:
                self._evict(key)

    def _evict(self, key: Any) -> None:
        _, finalizers = self._entries.pop(key)
        for finalizer in finalizers:
            finalizer.detach()

    def clear(self) -> None:
        with self._lock:
            for key in list(self._entries):
                self._evict(key)


PROGRAMS = ProgramCache()
"""The one cache every trainer keeps its compiled programs in."""


def clear_caches() -> None:
    """Empties lrjax's compile cache and JAX's, so the next call compiles anew.

    Example:
        >>> import lrjax
        >>> lrjax.clear_caches()
    """
    PROGRAMS.clear()
    jax.clear_caches()
