"""Where a training's batch runs: :class:`Devices`, the device options of every data-parallel trainer.

The range test and :func:`lrjax.train_snapshots` shard the batch axis of their data over
devices; what they need to know is the mesh and its batch axis. The two travel together as
one value, ``devices=lrjax.Devices(mesh, data_axis)``, instead of two keyword arguments of
every trainer. The old keywords (``mesh=``, ``data_axis=``) still work for one release and
warn.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, NamedTuple

from jax.sharding import Mesh


class Devices(NamedTuple):
    """The devices a training's batch is sharded over.

    Attributes:
        mesh: a ``jax.sharding.Mesh``; the batch axis of the data is sharded over its
            ``data_axis`` and everything else (params, state, optimizer state) is
            replicated. ``None`` (the default): every device of the default backend when
            the batch divides evenly over them, else the default device; a one-device mesh
            forces one device.
        data_axis: the mesh axis the batch is sharded over.

    Example:
        >>> import jax, numpy as np
        >>> from jax.sharding import Mesh
        >>> mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
        >>> Devices(mesh).data_axis
        'data'
    """

    mesh: Mesh | None = None
    data_axis: str = "data"


_LEGACY = ("mesh", "data_axis")


def resolve_devices(where: str, devices: Devices | None,
                    legacy: Mapping[str, Any]) -> tuple[Mesh | None, str]:
    """``(mesh, data_axis)`` from ``devices=`` or the deprecated ``mesh=``/``data_axis=``.

    ``legacy`` holds the trainer's extra keyword arguments: anything but the two old
    keywords is refused as Python refuses an unknown keyword.
    """
    unknown = [name for name in legacy if name not in _LEGACY]
    if unknown:
        raise TypeError(f"{where}() got an unexpected keyword argument {unknown[0]!r}")
    if devices is not None and not isinstance(devices, Devices):
        raise TypeError(f"devices must be an lrjax.Devices(mesh, data_axis), got "
                        f"{type(devices).__name__}.")
    if legacy:
        if devices is not None:
            raise TypeError(f"{where}: pass devices=lrjax.Devices(mesh, data_axis) or the "
                            f"deprecated {'/'.join(legacy)}=, not both.")
        warnings.warn(
            f"{where}({', '.join(f'{name}=' for name in legacy)}) is deprecated and will be "
            "removed in lrjax 0.3; pass devices=lrjax.Devices(mesh, data_axis).",
            DeprecationWarning, stacklevel=3)
        devices = Devices(**legacy)
    devices = Devices() if devices is None else devices
    return devices.mesh, devices.data_axis  # each trainer checks them as it always has
