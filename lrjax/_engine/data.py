"""The range test's host side: the data forms it accepts and placing them on devices.

Separate from ``finder/driver.py`` because it runs only on the host, before and between the
compiled steps: telling stacked, iterable and function data apart, checking and cutting
the step axis, pulling and stacking chunks of batches, and choosing the mesh and copying
data to device.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from lrjax._engine import processes

PyTree = Any


def _is_pytree_node(data: Any) -> bool:
    """Whether ``data`` is a pytree container (dict, tuple, registered class), quietly."""
    with warnings.catch_warnings():
        # JAX warns (and may later refuse) when flattening a plain iterable as a leaf.
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return not jax.tree_util.treedef_is_leaf(jax.tree.structure(data))
        except (TypeError, ValueError):
            return False


def _data_form(data: Any) -> str:
    if type(data) in (dict, tuple) or isinstance(data, (np.ndarray, jax.Array)):
        return "stacked"
    if callable(data):
        return "function"
    if isinstance(data, (list, Iterator)):
        return "iterable"
    if _is_pytree_node(data):
        return "stacked"
    if isinstance(data, (str, bytes)) or not hasattr(data, "__iter__"):
        raise TypeError(
            "data must be a pytree of arrays with a leading step axis, an iterable of batches, "
            f"or a function (key, step) -> batch; got {type(data).__name__}."
        )
    return "iterable"


def _numeric(leaf: Any) -> bool:
    """Whether ``leaf`` holds numbers JAX can compute with (numeric, bool or a PRNG key)."""
    if isinstance(leaf, (bool, int, float, complex)):
        return True
    dtype = getattr(leaf, "dtype", None)
    if dtype is None:
        return False
    try:
        return bool(jnp.issubdtype(dtype, jnp.number) or jnp.issubdtype(dtype, jnp.bool_)
                    or jnp.issubdtype(dtype, jax.dtypes.prng_key))
    except TypeError:
        return False


def check_numeric_leaves(name: str, tree: PyTree) -> None:
    """Refuses a leaf of ``tree`` that is not numeric or bool (str, object, datetime, ...).

    The one dtype check of the range test, :func:`lrjax.train_snapshots` and
    :func:`lrjax.make_train_fn`: without it such a leaf fails deep inside JAX with the repr
    of an internal function. The message names the leaf by its path in ``tree``.

    Args:
      name: the argument's name (``"data"``), quoted with the leaf's path.
      tree: the pytree to check.

    Raises:
      TypeError: a leaf whose dtype is not numeric or bool.
    """
    if all(map(_numeric, jax.tree.leaves(tree))):
        return
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if not _numeric(leaf):
            dtype = getattr(leaf, "dtype", None)
            what = f"dtype {dtype}" if dtype is not None else f"a {type(leaf).__name__}"
            raise TypeError(f"{name}{jax.tree_util.keystr(path)} has {what}: only numeric and "
                            "bool arrays can be trained on (encode strings or objects as "
                            "numbers first).")


def _check_array_leaves(name: str, tree: PyTree, min_ndim: int) -> list:
    leaves = jax.tree.leaves(tree)
    if not leaves:
        raise ValueError(f"{name} is empty (no arrays).")
    for leaf in leaves:
        array_like = isinstance(leaf, (np.ndarray, jax.Array, np.generic, int, float))
        if not array_like or np.ndim(leaf) < min_ndim:
            raise ValueError(
                f"{name} must contain arrays with at least {min_ndim} axes, got "
                f"{type(leaf).__name__} of shape {np.shape(leaf)}."
            )
    check_numeric_leaves(name, tree)
    return leaves


def _stacked_steps(data: PyTree, needed: int) -> PyTree:
    """Validates the step axis and cuts it to ``needed`` (views for numpy leaves)."""
    leaves = _check_array_leaves("data", data, 1)
    lengths = {np.shape(x)[0] for x in leaves}
    if len(lengths) != 1:
        raise ValueError("data: every leaf needs the same leading step axis, got lengths "
                         f"{sorted(lengths)}.")
    (length,) = lengths
    if length < needed:
        raise ValueError(
            f"data has {length} steps along its leading axis; num_steps * accumulation_steps = "
            f"{needed} are needed."
        )
    return data if length == needed else jax.tree.map(lambda x: x[:needed], data)


def _pull(iterator: Iterator, count: int, needed: int, pulled: int) -> list:
    """Up to ``count`` batches; a short iterable is an error when batches are still needed."""
    batches = list(itertools.islice(iterator, count))
    if pulled == 0 and not batches:
        raise ValueError("data is empty: the iterable yielded no batches.")
    for index, batch in enumerate(batches):
        check_numeric_leaves(f"data (batch {pulled + index})", batch)
    if len(batches) < min(count, needed - pulled):
        raise ValueError(
            f"data ran out after {pulled + len(batches)} batches; num_steps * accumulation_steps = "
            f"{needed} are needed (wrap the iterable in itertools.cycle to reuse batches)."
        )
    return batches


def _take(iterator: Iterator, count: int, needed: int, pulled: int) -> list:
    """The next ``min(count, needed - pulled)`` batches: never more than are used."""
    return _pull(iterator, min(count, needed - pulled), needed, pulled)


def _shapes(batch: PyTree) -> list:
    return [(np.shape(x), np.result_type(x)) for x in jax.tree.leaves(batch)]


def _stack_chunk(batches: list, count: int, template: PyTree = None, pulled: int = 0) -> PyTree:
    """Stacks batches on the host, padding a short last chunk by repeating its last batch.

    Every batch must have the structure, shapes and dtypes of ``template`` (default: the
    first batch): the compiled loop has one batch shape, and a smaller last batch would
    otherwise fail deep inside XLA (or in the sharding over devices).
    """
    template = batches[0] if template is None else template
    if processes.is_global(batches[0]):
        raise ValueError(
            "data: an iterable's batches are stacked on the host, so under jax.distributed "
            "each must be this process's share as host (numpy) arrays, not arrays spanning "
            "every process; for arrays assembled already, pass them stacked (a pytree with a "
            "leading step axis) instead of an iterable.")
    structure, shapes = jax.tree.structure(template), _shapes(template)
    for index, batch in enumerate(batches):
        if jax.tree.structure(batch) != structure:
            raise ValueError(f"every batch must have the structure {structure}, got "
                             f"{jax.tree.structure(batch)} (batch {pulled + index}).")
        if _shapes(batch) != shapes:
            raise ValueError(
                f"data: batch {pulled + index} has leaf shapes/dtypes {_shapes(batch)}, the "
                f"first batch {shapes}; every batch must have the same shapes (drop an "
                "incomplete last batch, e.g. drop_last=True).")
    _check_array_leaves("each batch", batches[0], 0)
    batches = batches + [batches[-1]] * (count - len(batches))
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *batches)


def _batch_sizes(tree: PyTree, axis: int) -> set[int]:
    return {np.shape(x)[axis] for x in jax.tree.leaves(tree) if np.ndim(x) > axis}


def _resolve_mesh(mesh: Mesh | None, data_axis: str, sizes: set[int],
                  whole: set[int] = frozenset()) -> Mesh | None:
    """The mesh the batch axis is sharded over, or None (one device).

    ``sizes`` are the batch sizes of what this process passed (its share under
    ``jax.distributed``), ``whole`` those that are already the whole batch (a data
    function's). With several processes the mesh spans the devices of all of them: the
    automatic one always, and a share that does not split over them is an error.
    """
    shares = sizes
    if mesh is not None:
        if not isinstance(mesh, Mesh):
            raise TypeError(f"mesh must be a jax.sharding.Mesh or None, got {type(mesh).__name__}.")
        if data_axis not in mesh.axis_names:
            raise ValueError(f"data_axis {data_axis!r} is not an axis of the mesh {mesh.axis_names}.")
        devices = mesh.shape[data_axis]
        sizes = processes.global_sizes(shares, mesh, data_axis) | set(whole)
        if any(size % devices for size in sizes):
            raise ValueError(
                f"the batch sizes {sorted(sizes)} must be divisible by the mesh's {data_axis!r} "
                f"axis size {devices}."
            )
        return mesh
    count = jax.device_count()
    sizes = processes.global_sizes(shares) | set(whole)
    if count > 1 and sizes and all(size % count == 0 for size in sizes):
        return _all_devices_mesh(data_axis)
    if not processes.multiprocess():
        return None
    if not shares:
        # Only a data function's whole batch, which does not split: every process runs
        # the whole test on its own first device, with the same numbers. Nothing with a
        # batch axis: every process holds the same data, replicated on the mesh.
        return None if whole else _all_devices_mesh(data_axis)
    processes_ = jax.process_count()
    raise ValueError(
        f"under jax.distributed the batch axis is sharded over the {count} devices of all "
        f"{processes_} processes, so each process's share must split over its "
        f"{jax.local_device_count()} devices: this process passed batch sizes "
        f"{sorted(shares)} (the whole batch is {processes_} times that)"
        + (f", and the data function's whole batch has {sorted(whole)} rows" if whole else "")
        + f"; pass shares that are multiples of {jax.local_device_count()}, or a mesh= "
        "whose data_axis fits them.")


def _all_devices_mesh(data_axis: str) -> Mesh:
    """A mesh of every device (of every process, in process order) on one axis."""
    return processes.all_devices_mesh(data_axis)


def _place(tree: PyTree, sharding: Callable[[Any], Any] | None) -> PyTree:
    """Copies ``tree`` to device (never donating); with a mesh, sharded.

    With several processes (``jax.distributed``) the arrays are assembled from each
    process's share of the sharded axes (:func:`lrjax._engine.processes.put`).
    """
    return processes.put(tree, sharding)
