"""How an optimizer's step scales with the gradient: SGD-like (proportional) or adaptive.

The range test records this for the suggestion rules (``result.settings["update_scaling"]``):
an optimizer whose step grows in proportion to the gradient (SGD, heavy-ball momentum,
Nesterov, SGDW) trains best at a constant rate well above where a short ramp's loss falls
fastest, where an adaptive one (Adam, AdamW, RMSProp, Adagrad past its start, Lion, LAMB,
LARS) does not (``lrjax.finder.suggest.vote``, ``SGD_FACTOR``).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lrjax._engine.factory_checks import _memo

# The probe's gradient: a fixed pseudo-random direction of per-coordinate scale 1e-3, and
# twice that. A global-norm clip of 1 stays off unless the probe's parameters (each axis cut
# to _MAX_AXIS) number 250k; Adam's and RMSProp's eps (1e-8, inside or outside the square
# root) are small against it.
_SCALE = 1e-3
_RATIO = 2.0
# Steps fed before the update is measured: RAdam takes plain momentum steps until its
# variance estimate is usable (its rho_t passes 5 at step 6); Adagrad's and Yogi's start
# values fade.
_STEPS = 6
# Each axis of the probe's parameters is cut to this length (a big model's probe stays small).
_MAX_AXIS = 64
# The probe's parameter values (the user's are never read: some optimizers scale by them).
_PARAM_VALUE = 0.1


def cached_update_scaling(optimizer: Any, params: Any) -> float | None:
    """:func:`update_scaling`, cached in the engine's cache per optimizer and shapes."""
    leaves, treedef = jax.tree.flatten(params)
    shapes = (str(treedef), tuple((_shape(x), str(getattr(x, "dtype", type(x))))
                                  for x in leaves))
    return _memo("update_scaling", optimizer, shapes,
                 functools.partial(update_scaling, optimizer, params))


def update_scaling(optimizer: Any, params: Any) -> float | None:
    """The exponent ``p`` of an optimizer's step's growth with the gradient: ``|du| ~ c**p``.

    From a fresh state, the 6th update ``u(g)`` when the same gradient is fed 6 times,
    for the gradients ``0``, ``g`` and ``2 g`` (``g`` a fixed pseudo-random direction of
    per-coordinate scale 1e-3; parameters of the user's tree, ranks and dtypes, each axis
    cut to 64 entries, filled with 0.1 and not updated; ``learning_rate=1``)::

        p = log(|u(2g) - u(0)| / |u(g) - u(0)|) / log(2)

    so 1 for SGD, momentum, Nesterov, schedule-free SGD and decoupled weight decay (the
    ``u(0)`` term cancels the decay), about 0 for Adam, AdamW, RAdam, AMSGrad, RMSProp,
    Lion, LAMB, LARS and Adafactor (the step is normalised). Adagrad measures 1: its
    start value 0.1 dominates gradients this small, and it does step like SGD until the
    squared gradients sum past it. A clipped SGD measures 1 until the clip is active. The
    user's parameter values are never read (shapes and dtypes only); float16 and
    bfloat16 leaves are probed in float32 (how the algorithm scales, not how a half
    format rounds), complex leaves as complex.

    Args:
        optimizer: the range test's factory taking ``learning_rate``.
        params: the trainable parameters (a pytree of arrays or ``jax.ShapeDtypeStruct``;
            only shapes and dtypes are used).

    Returns:
        ``p`` rounded to 3 decimals, or ``None`` when it cannot be measured (the factory
        needs other arguments, the optimizer fails on the probe, no floating parameters,
        or the update does not move).

    Example:
        >>> import optax, jax.numpy as jnp
        >>> update_scaling(optax.sgd, {"w": jnp.zeros(3)})
        1.0
        >>> update_scaling(optax.adam, {"w": jnp.zeros(3)})
        0.0

    References:
        Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015 (section
        2.1: Adam's step does not depend on the gradient's scale); Smith, "Cyclical
        Learning Rates for Training Neural Networks", WACV 2017 (the range test, with SGD).
    """
    try:
        return _measure(optimizer, params)
    except Exception:  # noqa: BLE001 - any factory, optimizer or params we cannot probe
        return None  # (range_test reports bad params itself, with a clear message)


def _measure(optimizer: Any, params: Any) -> float | None:
    leaves, treedef = jax.tree.flatten(params)
    if not leaves or not any(_floating(leaf) for leaf in leaves):
        return None
    rng = np.random.default_rng(0)
    fake = [np.full(_shape(x), _PARAM_VALUE, _dtype(x)) if _floating(x)
            else np.zeros(_shape(x), _dtype(x)) for x in leaves]
    direction = [(rng.standard_normal(_shape(x)) * _SCALE).astype(_dtype(x))
                 if _floating(x) else np.zeros(_shape(x), _dtype(x)) for x in leaves]
    probe_params = jax.tree.unflatten(treedef, [jnp.asarray(x) for x in fake])
    tx = optimizer(learning_rate=1.0)
    state = tx.init(probe_params)

    def step(scale: float) -> list[np.ndarray]:
        grads = jax.tree.unflatten(treedef, [jnp.asarray(d * scale) for d in direction])
        opt_state = state
        for _ in range(_STEPS):
            updates, opt_state = tx.update(grads, opt_state, probe_params)
        return [np.asarray(u).astype(np.complex128 if np.iscomplexobj(u) else np.float64)
                for u in jax.tree.leaves(updates)]

    base, small, large = step(0.0), step(1.0), step(_RATIO)
    moved_small = _norm(small, base)
    moved_large = _norm(large, base)
    if not (math.isfinite(moved_small) and math.isfinite(moved_large)) or moved_small <= 0:
        return None
    return round(math.log(moved_large / moved_small) / math.log(_RATIO), 3) + 0.0  # no -0.0


def _shape(x: Any) -> tuple[int, ...]:
    """The leaf's shape with each axis cut to ``_MAX_AXIS``: the probe costs kilobytes on a
    model of any size, and keeps each leaf's rank (what per-layer rules look at)."""
    return tuple(min(int(d), _MAX_AXIS) for d in getattr(x, "shape", np.shape(x)))


def _dtype(x: Any) -> np.dtype:
    """The probe's dtype for a leaf: its own, but float32 for a float16 or bfloat16 one.

    The probe asks how the algorithm scales, not how a half-precision format rounds: in
    float16, Adam's squared probe gradient (1e-6) and its eps (1e-8) underflow and the
    update does not move, which would hide the answer the float32 math gives.
    """
    dtype = np.dtype(getattr(x, "dtype", None) or np.asarray(x).dtype)
    if jnp.issubdtype(dtype, jnp.floating) and dtype.itemsize < 4:
        return np.dtype(np.float32)
    return dtype


def _floating(x: Any) -> bool:
    """Real or complex floating point: a leaf the optimizer updates."""
    return jnp.issubdtype(_dtype(x), jnp.inexact)


def _norm(values: list[np.ndarray], base: list[np.ndarray]) -> float:
    return float(np.sqrt(sum(float(np.sum(np.abs(v - b) ** 2)) for v, b in zip(values, base))))
