"""Several processes under ``jax.distributed``: placing their data, fetching results, process 0.

With ``jax.distributed.initialize()`` every process runs the same program over a mesh that
spans the devices of all processes (a TPU pod slice, a GPU cluster). Each process holds only
part of the inputs and sees only its own devices, so three things differ from one process:

* **Placing** (:func:`put`): an array of a sharding that spans other processes' devices is
  assembled from what each process holds, with :func:`jax.make_array_from_process_local_data`
  (each process passes its share of the sharded axes, in process order) or
  :func:`jax.make_array_from_callback` (every process holds the whole value).
  ``jax.device_put`` cannot place host data onto devices of other processes.
* **Fetching** (:func:`fetch`, :func:`local`): a result spanning every process is copied to
  the host of each process whole (all-gathered when it is not replicated), so every process
  returns the same numbers.
* **Process 0** (:func:`on_first`): what must happen once (a sampler's suggestion, a database
  write) runs on process 0 and its JSON result (or its error) reaches the others.

With one process every function here is the plain single-process call.
"""

from __future__ import annotations

import functools
import json
import zlib
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec, Sharding

PyTree = Any

__all__ = [
    "all_devices_mesh",
    "check_same_shapes",
    "fetch",
    "gather_shares",
    "global_sizes",
    "is_first",
    "is_global",
    "local",
    "multiprocess",
    "on_first",
    "put",
    "replicate",
]


def multiprocess() -> bool:
    """Whether this program runs as several JAX processes (``jax.distributed``)."""
    return jax.process_count() > 1


def is_first() -> bool:
    """Whether this is process 0 (always true with one process)."""
    return jax.process_index() == 0


@functools.lru_cache(maxsize=8)
def all_devices_mesh(axis: str) -> Mesh:
    """A 1-D mesh over every device of every process, ordered by process, then device id.

    Process order makes process ``p``'s devices hold the ``p``-th block of a sharded axis,
    so each process's share of a batch is its block of rows.
    """
    devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
    return Mesh(np.asarray(devices), (axis,))


def is_global(tree: PyTree) -> bool:
    """Whether a leaf of ``tree`` is a ``jax.Array`` spanning other processes' devices.

    Such arrays were assembled by the caller already: their shapes are the whole batch.
    """
    return any(isinstance(x, jax.Array) and not x.is_fully_addressable
               for x in jax.tree.leaves(tree))


def global_sizes(sizes: set[int], mesh: Mesh | None = None, axis: str | None = None) -> set[int]:
    """The global sizes of a batch axis of which each process holds a ``sizes`` share.

    The axis is split over the processes that ``mesh``'s ``axis`` spans (every process for
    the automatic mesh).
    """
    if not multiprocess():
        return sizes
    count = jax.process_count()
    if mesh is not None and axis in mesh.axis_names:
        count = _processes_along(mesh, axis)
    return {size * count for size in sizes}


def _processes_along(mesh: Mesh, axis: str) -> int:
    """How many processes the devices along one line of ``mesh``'s ``axis`` belong to."""
    devices = np.moveaxis(mesh.devices, mesh.axis_names.index(axis), 0)
    line = devices.reshape(devices.shape[0], -1)[:, 0]
    return len({d.process_index for d in line})


def check_same_shapes(name: str, tree: PyTree) -> None:
    """Refuses shares whose structure, shapes or dtypes differ between processes.

    Every process must pass the same layout (its share of each batch has the same size):
    otherwise the processes would build different programs and wait for each other for
    ever. One small collective (a checksum of the layout per process); nothing with one
    process.

    Raises:
        ValueError: on every process, when any two processes passed different layouts.
    """
    if not multiprocess():
        return
    from jax.experimental import multihost_utils

    layout = [(jax.tree_util.keystr(path), np.shape(x), str(np.result_type(x)))
              for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]]
    text = f"{jax.tree.structure(tree)} {layout}"
    # Two 31-bit halves of a checksum: int32 survives every jax configuration.
    digest = zlib.crc32(text.encode())
    code = np.asarray([digest & 0x7FFFFFFF, digest >> 31], np.int32)
    codes = np.asarray(multihost_utils.process_allgather(code)).reshape(-1, 2)
    if len({tuple(row) for row in codes.tolist()}) > 1:
        raise ValueError(
            f"{name}: the {jax.process_count()} processes passed shares of different "
            f"structure, shapes or dtypes; each must pass its equal share of every batch "
            f"(the same leaves and shapes on every process). Process {jax.process_index()} "
            f"passed {layout[:4]}{' ...' if len(layout) > 4 else ''}.")


def _is_key(x: Any) -> bool:
    dtype = getattr(x, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


@functools.lru_cache(maxsize=64)
def _reshard(sharding: Sharding) -> Callable[[jax.Array], jax.Array]:
    return jax.jit(lambda x: x, out_shardings=sharding)


def _put_leaf(x: Any, sharding: Sharding, shares: bool) -> jax.Array:
    if isinstance(x, jax.Array) and not x.is_fully_addressable:  # global already
        if x.sharding.is_equivalent_to(sharding, x.ndim):
            return x
        return _reshard(sharding)(x)
    if _is_key(x):  # keys travel as their raw bits
        bits = _put_leaf(jax.random.key_data(x), sharding, shares)
        return jax.random.wrap_key_data(bits, impl=jax.random.key_impl(x))
    if isinstance(x, (bool, int, float, complex)):  # keeps its weak type, as device_put does
        x = jax.numpy.asarray(x)
    value = np.asarray(x)
    if value.dtype == np.float64 or value.dtype == np.int64 or value.dtype == np.complex128:
        value = value.astype(jax.dtypes.canonicalize_dtype(value.dtype))
    if shares:
        return jax.make_array_from_process_local_data(sharding, value)
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def put(tree: PyTree, sharding: Sharding | Callable[[Any], Sharding] | None, *,
        shares: bool = True) -> PyTree:
    """``tree`` on device: with one process ``jax.device_put``, else assembled over processes.

    Args:
        tree: host values (numpy, Python numbers, JAX arrays, PRNG keys).
        sharding: one sharding for every leaf, a function ``leaf -> sharding``, or None
            (the default device; one process only).
        shares: with several processes, each process holds its share of the sharded axes
            (in process order; ``jax.make_array_from_process_local_data``); False: every
            process holds the whole value (``jax.make_array_from_callback``). Replicated
            leaves are the whole value either way.

    Returns:
        ``tree`` with every leaf a ``jax.Array`` of its sharding (never donating the input).
    """
    if sharding is None:
        return jax.device_put(tree)
    shardings = jax.tree.map(sharding if callable(sharding) else (lambda _: sharding), tree)
    if not multiprocess():
        return jax.device_put(tree, shardings)
    return jax.tree.map(lambda x, s: _put_leaf(x, s, shares), tree, shardings)


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
    """Every leaf of ``tree`` (host values or global arrays) replicated on ``mesh``."""
    return put(tree, NamedSharding(mesh, PartitionSpec()), shares=False)


def _fetch_leaf(x: Any) -> Any:
    if _is_key(x):  # no numpy form: the whole key array on a local device (device_get's way)
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            bits = _fetch_leaf(jax.random.key_data(x))
            return jax.random.wrap_key_data(bits, impl=jax.random.key_impl(x))
        return jax.device_get(x)
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
        return np.asarray(jax.device_get(x))
    if x.is_fully_replicated:
        return np.asarray(x.addressable_data(0))
    from jax.experimental import multihost_utils  # a collective: every process calls it

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def fetch(tree: PyTree) -> PyTree:
    """Every leaf of ``tree`` as a whole host numpy array, the same on every process.

    With one process this is ``jax.device_get``. With several, a leaf spanning other
    processes' devices is copied from a local replica, or all-gathered (a collective, so
    every process must fetch the same arrays in the same order).
    """
    if not multiprocess():
        return jax.device_get(tree)
    return jax.tree.map(_fetch_leaf, tree)


def gather_shares(tree: PyTree, axis: int) -> PyTree:
    """The whole of ``tree`` on every process, from each process's share of ``axis``.

    Leaves with more than ``axis`` axes are concatenated along it in process order (a
    collective); the others are the same on every process and are returned as they are.
    Every process must pass the same structure and shapes.
    """
    if not multiprocess():
        return tree
    from jax.experimental import multihost_utils

    def one(x: Any) -> Any:
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return _fetch_leaf(x)  # assembled by the caller: the whole already
        if np.ndim(x) <= axis:
            return x
        front = np.moveaxis(np.asarray(x), axis, 0)
        return np.moveaxis(np.asarray(multihost_utils.process_allgather(front, tiled=True)),
                           0, axis)

    return jax.tree.map(one, tree)


def local(tree: PyTree) -> PyTree:
    """Every leaf of ``tree`` on this process's first device, whole (results handed back).

    Arrays spanning other processes cannot be used in single-process code (an ensemble's
    prediction, a plot); their whole value is copied to a local device. With one process
    ``tree`` is returned as it is.
    """
    if not multiprocess():
        return tree

    def one(x: Any) -> Any:
        if not isinstance(x, jax.Array) or x.is_fully_addressable:
            return x
        if x.is_fully_replicated:
            return x.addressable_data(0)
        return jax.device_put(_fetch_leaf(x), jax.local_devices()[0])

    return jax.tree.map(one, tree)


# --------------------------------------------------------------------------------------
# Process 0.
# --------------------------------------------------------------------------------------
_MIN_BUFFER = 1024


def _broadcast_bytes(payload: bytes | None) -> bytes:
    """``payload`` of process 0 on every process (two collectives: its length, its bytes)."""
    from jax.experimental import multihost_utils

    first = is_first()
    size = np.asarray([len(payload) if first else 0], np.int32)
    size = int(multihost_utils.broadcast_one_to_all(size)[0])
    # Buffers are padded to a power of two, so only a few shapes are ever compiled.
    capacity = max(_MIN_BUFFER, 1 << (size - 1).bit_length())
    buffer = np.zeros(capacity, np.uint8)
    if first:
        buffer[:size] = np.frombuffer(payload, np.uint8)
    return multihost_utils.broadcast_one_to_all(buffer)[:size].tobytes()


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as JSON numbers and lists."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"on_first: {type(value).__name__} is not JSON data.")


def on_first(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` run on process 0 only; its result reaches every process.

    The result must be JSON data (numbers, str, None, lists, dicts with str keys); every
    process, 0 included, gets it decoded from the same JSON text, so all get equal values
    (tuples become lists; floats round-trip exactly, NaN and inf included). An exception on
    process 0 is raised there and, as a ``RuntimeError`` quoting it, on the others. With one
    process this is ``fn(*args, **kwargs)``.
    """
    if not multiprocess():
        return fn(*args, **kwargs)
    if not is_first():
        message = json.loads(_broadcast_bytes(None).decode())
        if "error" in message:
            raise RuntimeError(f"process 0 failed, so process {jax.process_index()} stops "
                               f"too: {message['error']}")
        return message["value"]
    try:
        text = json.dumps({"value": fn(*args, **kwargs)}, default=_plain)
    except BaseException as error:  # Ctrl-C too: the others must not wait for ever
        _broadcast_bytes(json.dumps({"error": f"{type(error).__name__}: {error}"}).encode())
        raise
    _broadcast_bytes(text.encode())
    return json.loads(text)["value"]
