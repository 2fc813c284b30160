"""Run batches of trials as one compiled program: ``vmap(train_fn)``, compiled once.

(Or ``lax.map(train_fn)``: see ``vectorize`` in :func:`lrjax.search`.)

The program takes a batch of hyperparameters (``name -> (batch_size,)``), the trials'
numbers and the search's root key; trial ``i`` trains with ``fold_in(root, i)``, so its key
depends only on the search key and its number (not on the batch it lands in). A short last
batch is padded to ``batch_size`` with copies of its last trial, whose results are dropped,
so every batch reuses the same executable. With a mesh, the trial axis is sharded over all
its devices and data is replicated.

A :class:`~lrjax.tuning.train_fn.TrainFn` whose ``execution`` is ``"host"`` runs instead as
compiled init, step and evaluate programs driven by a Python loop over the steps
(:class:`~lrjax.tuning.train_fn.HostPrograms`). Every program lives in the engine's one cache
(:data:`lrjax._engine.PROGRAMS`) under a weak key of the user's train_fn, and calls it
through weak proxies: a repeated search reuses the executables, nothing is stored on the
function, and :func:`lrjax.clear_caches` forces a recompile.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lrjax._engine import processes
from lrjax._engine.checks import as_prng_key
from lrjax._engine.cache import PROGRAMS, fn_key, weak
from lrjax._engine.execution import run_host_interleaved, vmap_or_map
from lrjax.tuning.train_fn import HostPrograms, TrainFn

PyTree = Any


def root_key(key: Any) -> jax.Array:
    """The search's root PRNG key: :func:`lrjax._engine.checks.as_prng_key` (an int seed in
    ``[-2**63, 2**63)``, None for 0, or a JAX key, typed or raw uint32 of shape (2,))."""
    return as_prng_key(key)


def host_seed(key: jax.Array) -> int:
    """A non-negative int seed for host samplers (numpy, scipy, Optuna), derived from ``key``.

    Hashed on the host from the key's bits (numpy's SeedSequence): no JAX op runs, so no
    small program is compiled for it (an eager ``randint`` cost 0.5 s of CPU here).
    """
    bits = np.asarray(jax.random.key_data(key)).ravel().tolist()
    return int(np.random.SeedSequence([*bits, 0x5EED]).generate_state(1)[0] >> 1)


def trial_key(key: Any, number: int) -> jax.Array:
    """The PRNG key trial ``number`` of a search with ``key`` trains with: ``fold_in(key, number)``.

    Example:
        >>> import jax
        >>> trial_key(0, 3).dtype == jax.random.key(0).dtype
        True
    """
    return jax.random.fold_in(root_key(key), number)


def check_metrics(out: Any) -> dict[str, Any]:
    """One trial's output as ``name -> scalar``; a scalar becomes ``{"value": scalar}``."""
    if isinstance(out, Mapping):
        if not out:
            raise ValueError("train_fn returned an empty dict: return a scalar or a dict of scalars.")
        items = dict(out)
    elif isinstance(out, (jax.Array, np.ndarray, float, int, np.generic)) or hasattr(out, "shape"):
        items = {"value": out}
    else:
        raise TypeError(
            f"train_fn must return a scalar or a dict of scalars, got {type(out).__name__}."
        )
    for name, value in items.items():
        if not isinstance(name, str):
            raise TypeError(f"train_fn's metric names must be strings, got {name!r}.")
        shape = np.shape(value)
        if shape != ():
            raise ValueError(
                f"train_fn must return scalars, but metric {name!r} has shape {shape} "
                "(reduce it, e.g. with .mean(), or return it under another name as a scalar)."
            )
        dtype = getattr(value, "dtype", None)
        if dtype is not None and not (jnp.issubdtype(dtype, jnp.floating)
                                      or jnp.issubdtype(dtype, jnp.integer)
                                      or dtype == jnp.bool_):
            raise TypeError(f"metric {name!r} must be a real number, got dtype {dtype}.")
    return {name: jnp.asarray(value, jnp.float32) for name, value in items.items()}


class StructureRecorder:
    """Remembers the metric names of the first trace; a later trace must match them."""

    def __init__(self) -> None:
        self.names: tuple[str, ...] | None = None
        self.traces = 0
        self._lock = threading.Lock()

    def record(self, out: Any) -> dict[str, Any]:
        metrics = check_metrics(out)
        names = tuple(metrics)
        with self._lock:
            self.traces += 1
            if self.names is None:
                self.names = names
            elif names != self.names:
                raise ValueError(
                    f"train_fn returned a different structure on this call ({list(names)}) than "
                    f"before ({list(self.names)}): it must return the same metrics every time."
                )
        return metrics


def check_mesh(mesh: Any, batch_size: int) -> Mesh | None:
    if mesh is None:
        return None
    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh or None, got {mesh!r}.")
    if batch_size % mesh.size:
        raise ValueError(
            f"batch_size={batch_size} must be a multiple of the mesh's {mesh.size} devices "
            "(the trial axis is split evenly over them)."
        )
    return mesh


def trial_sharding(mesh: Mesh | None) -> tuple[Any, Any]:
    """(sharding of arrays with a leading trial axis, sharding of replicated arrays)."""
    if mesh is None:
        return None, None
    return (NamedSharding(mesh, PartitionSpec(mesh.axis_names)),
            NamedSharding(mesh, PartitionSpec()))


def trial_data(train_fn: TrainFn) -> PyTree:
    """A :class:`TrainFn`'s data as every trial reads it: the whole data set.

    Under ``jax.distributed`` each process passed its share of the batch axis (axis 1 of
    the stacked batches, axis 2 with accumulation); every trial trains on all of it, so the
    shares are gathered, in process order, on every process.
    """
    if not processes.multiprocess():
        return train_fn.data
    processes.check_same_shapes("make_train_fn's data", train_fn.data)
    return processes.gather_shares(train_fn.data, 1 if train_fn.accumulation_steps == 1 else 2)


def padded_indices(num: int, batch_size: int) -> np.ndarray:
    """``0..num-1`` padded to ``batch_size`` by repeating the last index."""
    return np.concatenate([np.arange(num), np.full(batch_size - num, num - 1)]).astype(np.int32)


def recorder_for(owner: Any) -> StructureRecorder:
    """The :class:`StructureRecorder` of ``owner`` (a train_fn), kept in the engine's cache.

    Held in :data:`lrjax._engine.PROGRAMS` under a weak key of ``owner``, so every search
    with the same train_fn checks its metric names against the first trace; nothing is
    stored on the function, and the entry goes when the function goes.
    """
    return PROGRAMS.get(("search-recorder", fn_key(owner)), StructureRecorder)


class BatchRunner:
    """``runner(hparams, numbers) -> name -> (n,) float numpy``, one executable for all batches.

    Args:
        fn: ``fn(hparams, key, *args) -> metrics`` for one trial.
        args: extra arguments of every call (e.g. the data), replicated, not vmapped.
        batch_size: trials per call of the compiled program.
        key: the search's root key.
        mesh: shard the trial axis over this mesh's devices, or None.
        vectorize: ``"vmap"`` (a batch of trainings), ``"map"`` (``lax.map``: the trials of
            a batch one after another, in the same single program) or ``"loop"`` (one
            compiled single-trial program, called once per trial of the batch).
        owner: the user's train_fn: executables are cached (in
            :data:`lrjax._engine.PROGRAMS`, weakly keyed) per owner and batch signature, and
            its metric names must stay the same across calls. A :class:`TrainFn` whose
            :attr:`~TrainFn.execution` is ``"host"`` runs as a host loop over compiled steps
            (:class:`lrjax.tuning.train_fn.HostPrograms`): vmapped over the batch with
            ``"vmap"``, one trial per program (the trials' steps interleaved) otherwise.
    """

    def __init__(self, fn: Callable, args: tuple, batch_size: int, key: jax.Array,
                 mesh: Mesh | None, owner: Any = None, vectorize: str = "vmap") -> None:
        self.batch_size, self.vectorize = batch_size, vectorize
        owner = fn if owner is None else owner
        self._fn, self._owner = fn, owner  # held while the runner lives; the cache holds neither
        self._owner_key = fn_key(owner)
        self.recorder: StructureRecorder = recorder_for(owner)
        self._mesh = mesh
        self.trial_sharding, self.replicated = trial_sharding(mesh)
        self.host = isinstance(owner, TrainFn) and owner.execution == "host"
        self._root = self._place(key, replicated=True)
        self._args = tuple(self._place(a, replicated=True) for a in args)
        self._compiled: Any = None
        if self.host:
            self._train_fn = owner
            batched = vectorize == "vmap"
            recorder = self.recorder
            self._host = PROGRAMS.get(("search-host", self._owner_key, batched),
                                      lambda: HostPrograms(owner, batched, recorder))
            return
        call = weak(fn)  # the cached program must not keep the user's function alive
        recorder = self.recorder

        def batched(hparams: dict, numbers: jax.Array, root: jax.Array, *extra: Any) -> dict:
            keys = jax.vmap(lambda n: jax.random.fold_in(root, n))(numbers)
            one = lambda h, k: recorder.record(call(h, k, *extra))  # noqa: E731
            if vectorize == "map":  # one trial after another inside the program
                return jax.lax.map(lambda hk: one(*hk), (hparams, keys))
            return vmap_or_map(one)(hparams, keys)

        def single(hparams: dict, number: jax.Array, root: jax.Array, *extra: Any) -> dict:
            return recorder.record(call(hparams, jax.random.fold_in(root, number), *extra))

        self._jitted = jax.jit(single if vectorize == "loop" else batched)

    def _place(self, tree: PyTree, *, replicated: bool) -> PyTree:
        sharding = self.replicated if replicated else self.trial_sharding
        if sharding is None:
            return tree
        # Every process holds the same whole batch of points (they came from process 0).
        return processes.put(tree, sharding, shares=False)

    def compile(self, hparams: dict[str, np.ndarray], numbers: np.ndarray) -> None:
        """Trace and compile once (checks train_fn's output before any trial runs)."""
        if self.host:  # jit's own cache keeps the host programs; trace evaluate for the names
            one = self.vectorize != "vmap"
            if one:
                hparams = {name: np.asarray(values)[0] for name, values in hparams.items()}
                numbers = np.asarray(numbers)[0]
            states = jax.eval_shape(self._host.init, hparams, numbers, self._root)
            if self.recorder.names is None:
                jax.eval_shape(self._host.evaluate, states)
            self._compiled = True
            return
        signature = (self.batch_size, self.vectorize, self._mesh,
                     tuple((k, np.asarray(v).dtype.str) for k, v in hparams.items()),
                     tuple((np.shape(a), getattr(a, "dtype", None))
                           for a in jax.tree.leaves(self._args)),
                     jax.tree.structure(self._args))

        def build() -> Any:
            h, n = hparams, numbers
            if self.vectorize == "loop":  # the program of one trial: scalars in
                h = {name: np.asarray(values)[0] for name, values in h.items()}
                n = np.asarray(n)[0]
            lowered = self._jitted.lower(self._place(h, replicated=False),
                                         self._place(n, replicated=False),
                                         self._root, *self._args)
            return lowered.compile()

        self._compiled = PROGRAMS.get(("search", self._owner_key, signature), build)

    @property
    def names(self) -> tuple[str, ...]:
        assert self.recorder.names is not None
        return self.recorder.names

    def __call__(self, hparams: dict[str, np.ndarray], numbers: np.ndarray) -> dict[str, np.ndarray]:
        num = len(numbers)
        index = padded_indices(num, self.batch_size)
        hparams = {name: np.asarray(values)[index] for name, values in hparams.items()}
        numbers = np.asarray(numbers, np.int32)[index]
        if self._compiled is None:
            self.compile(hparams, numbers)
        if self.host:
            return self._run_host(hparams, numbers, num)
        if self.vectorize == "loop":
            # On a CPU the trials of a batch gain nothing from one batched program, and the
            # single-trial program compiles fastest (benchmarks/search.py). Dispatch is
            # asynchronous: every trial is queued before the first result is read.
            outs = [self._compiled({name: values[i] for name, values in hparams.items()},
                                   numbers[i], self._root, *self._args) for i in range(num)]
            outs = jax.device_get(outs)
            return {name: np.array([o[name] for o in outs], np.float64) for name in outs[0]}
        out = self._compiled(self._place(hparams, replicated=False),
                             self._place(numbers, replicated=False), self._root, *self._args)
        out = processes.fetch(out)  # every trial's metrics on every process
        return {name: np.asarray(values, np.float64)[:num] for name, values in out.items()}

    def _run_host(self, hparams: dict[str, np.ndarray], numbers: np.ndarray,
                  num: int) -> dict[str, np.ndarray]:
        """Init, a host loop over the compiled step, evaluate: per trial or per batch."""
        programs, (data,) = self._host, self._args
        if programs.batched:
            chunks = [(self._place(hparams, replicated=False),
                       self._place(numbers, replicated=False))]
        else:  # one trial per program; padding trials are not run
            chunks = [({name: values[i] for name, values in hparams.items()}, numbers[i])
                      for i in range(num)]
        states = [programs.init(h, n, self._root) for h, n in chunks]
        states = run_host_interleaved(programs.step, states, [(h, data) for h, _ in chunks], 0,
                                      self._train_fn.num_steps)
        outs = processes.fetch([programs.evaluate(st) for st in states])
        if programs.batched:
            return {name: np.asarray(values, np.float64)[:num] for name, values in outs[0].items()}
        return {name: np.array([o[name] for o in outs], np.float64) for name in outs[0]}
