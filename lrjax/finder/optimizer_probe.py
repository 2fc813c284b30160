"""How an optimizer's step responds to the gradient: its scale, and a weak signal in noise.

The range test records both for the suggestion rules (``result.settings``):

* ``update_scaling`` (:func:`update_scaling`): an optimizer whose step grows in proportion
  to the gradient (SGD, heavy-ball momentum, Nesterov, SGDW) trains best at a constant
  rate well above where a short ramp's loss falls fastest, where an adaptive one (Adam,
  AdamW, RMSProp, Adagrad past its start, Lion, LAMB, LARS) does not
  (``lrjax.finder.suggest.vote``, ``SGD_FACTOR``);
* ``noise_response`` (:func:`noise_response`): among adaptive optimizers, how much of a
  weak mean gradient the step keeps once the gradient is mostly noise, as late in a
  training, against how it steps on a steady gradient, as early in a range test (Adam 1;
  Adamax and AdaBelief keep less, Lion more; ``lrjax.finder.suggest.vote``,
  ``NOISE_EXPONENT``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lrjax._engine.factory_checks import _memo

#: ``update_scaling`` above this: the optimizer steps like SGD (the ``fall`` rule's SGD
#: factor applies; ``noise_response`` is measured only below it).
GRADIENT_PROPORTIONAL = 0.5

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


def optimizer_settings(optimizer: Any, params: Any) -> dict[str, float | None]:
    """What the range test records of its optimizer (cached per optimizer and shapes):
    ``update_scaling``, and ``noise_response`` where the step does not scale like SGD's
    (``None`` where it does, or where it cannot be measured)."""
    scaling = _cached(update_scaling, optimizer, params)
    adaptive = scaling is not None and scaling <= GRADIENT_PROPORTIONAL
    response = _cached(noise_response, optimizer, params) if adaptive else None
    return {"update_scaling": scaling, "noise_response": response}


def _cached(probe: Callable[[Any, Any], float | None], optimizer: Any,
            params: Any) -> float | None:
    """``probe(optimizer, params)``, cached in the engine's cache per probe, optimizer and
    the parameters' tree and (cut) shapes and dtypes."""
    leaves, treedef = jax.tree.flatten(params)
    shapes = (str(treedef), tuple((_shape(x), str(getattr(x, "dtype", type(x))))
                                  for x in leaves))
    return _memo(probe.__name__, optimizer, shapes, functools.partial(probe, optimizer, params))


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


# noise_response's probe: a steady gradient of per-coordinate size _SCALE for _STEADY_STEPS
# steps (a range test's default length), then, from a fresh state, a mean of _SIGNAL x
# _SCALE under Gaussian noise of _SCALE for _NOISY_STEPS steps, the step averaged over the
# last _MEASURED of them, over enough replicas of the (cut) parameter tree to hold about
# _COORDINATES coordinates (the mean's standard error stays near 2%).
_STEADY_STEPS = 100
_NOISY_STEPS = 300
_MEASURED = 100
_SIGNAL = 0.1
_COORDINATES = 8192
_MAX_REPLICAS = 256


def noise_response(optimizer: Any, params: Any) -> float | None:
    """How much of a weak mean gradient an optimizer's step keeps under noise, relative to a steady gradient.

    Two runs from a fresh state, parameters as in :func:`update_scaling` (the user's tree,
    ranks and dtypes, each axis cut to 64, filled with 0.1; ``learning_rate=1``), each
    coordinate's gradient ``g_t = mu + s * xi_t`` with ``xi_t`` standard normal:

    * steady: ``mu = s = 1e-3``, no noise, 100 steps: the last step's mean ``d_steady``;
    * noisy: ``mu = 0.1 s``, 300 steps: the mean step over the last 100, ``d_noisy``;

    ::

        r = (d_noisy / 0.1) / d_steady

    the step's drift along the mean per unit of mean gradient under noise, over the same
    on a steady gradient of the noise's size. A step linear in the gradient (SGD,
    momentum) gives 1, and so does Adam (it divides by the gradient's root mean square,
    ``s`` in both runs); Adamax about 0.37 (it divides by the largest recent gradient,
    about 3 ``s`` in the noise), AdaBelief about 0.22 (it divides by the gradient's
    deviation from its mean, small on a steady gradient: it steps large early and shrinks
    in the noise), Lion about 6 (a sign: the noise does not shrink it). Training moves
    from the first regime (a range test's ramp) to the second (most of a long training).

    Args:
        optimizer: the range test's factory taking ``learning_rate``.
        params: the trainable parameters (a pytree of arrays or ``jax.ShapeDtypeStruct``;
            only shapes and dtypes are used).

    Returns:
        ``r`` rounded to 3 decimals, or ``None`` when it cannot be measured (the factory
        needs other arguments, the optimizer fails on the probe or under ``vmap``, no
        floating parameters, a step that does not move or is not finite).

    Example:
        >>> import optax, jax.numpy as jnp
        >>> round(noise_response(optax.sgd, {"w": jnp.zeros(3)}), 1)
        1.0
        >>> 0.3 < noise_response(optax.adamax, {"w": jnp.zeros(3)}) < 0.45
        True

    References:
        Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015 (section 7.1:
        AdaMax's infinity-norm denominator); Zhuang et al., "AdaBelief Optimizer", NeurIPS
        2020; Chen et al., "Symbolic Discovery of Optimization Algorithms", 2023 (Lion);
        McCandlish et al., "An Empirical Model of Large-Batch Training", 2018 (the noise
        comes to dominate the gradient as training goes on).
    """
    try:
        return _measure_noise(optimizer, params)
    except Exception:  # noqa: BLE001 - any factory, optimizer or params we cannot probe
        return None


def _measure_noise(optimizer: Any, params: Any) -> float | None:
    leaves, treedef = jax.tree.flatten(params)
    if not leaves or not any(_floating(leaf) for leaf in leaves):
        return None
    shapes = [_shape(x) for x in leaves]
    # float64 leaves without jax_enable_x64 run as JAX would train them (float32), quietly.
    dtypes = [jax.dtypes.canonicalize_dtype(_dtype(x)) for x in leaves]
    floating = [_floating(x) for x in leaves]
    size = sum(math.prod(shape) for shape, f in zip(shapes, floating) if f)
    replicas = int(min(_MAX_REPLICAS, max(1, -(-_COORDINATES // max(size, 1)))))
    probe_params = jax.tree.unflatten(treedef, [
        jnp.full(shape, _PARAM_VALUE if f else 0, dtype)
        for shape, dtype, f in zip(shapes, dtypes, floating)])
    tx = optimizer(learning_rate=1.0)

    def run(key: jax.Array, mean: jax.Array, noise: jax.Array) -> jax.Array:
        """The summed step of each of _NOISY_STEPS steps from a fresh state."""
        def step(state: Any, t: jax.Array) -> tuple[Any, jax.Array]:
            keys = jax.random.split(jax.random.fold_in(key, t), len(leaves))
            grads = jax.tree.unflatten(treedef, [
                (mean + noise * jax.random.normal(k, shape, jnp.float32)).astype(dtype)
                if f else jnp.zeros(shape, dtype)
                for k, shape, dtype, f in zip(keys, shapes, dtypes, floating)])
            updates, state = tx.update(grads, state, probe_params)
            total = sum(jnp.sum(jnp.real(u).astype(jnp.float32))
                        for u, f in zip(jax.tree.leaves(updates), floating) if f)
            return state, total

        return jax.lax.scan(step, tx.init(probe_params), jnp.arange(_NOISY_STEPS))[1]

    # One program for both runs: (steady, noisy) x replicas.
    means = jnp.asarray([_SCALE, _SIGNAL * _SCALE], jnp.float32)
    noises = jnp.asarray([0.0, _SCALE], jnp.float32)
    keys = jax.random.split(jax.random.key(0), replicas)
    totals = jax.jit(jax.vmap(jax.vmap(run, (0, None, None)), (None, 0, 0)))(keys, means, noises)
    totals = np.asarray(totals, np.float64) / -(size * np.asarray(means)[:, None, None])
    steady = float(totals[0, :, _STEADY_STEPS - 1].mean())
    noisy = float(totals[1, :, _NOISY_STEPS - _MEASURED:].mean())
    if not (math.isfinite(steady) and math.isfinite(noisy)) or steady <= 0:
        return None
    return round(noisy / steady, 3) + 0.0


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
