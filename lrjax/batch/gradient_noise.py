"""The gradient noise scale of McCandlish et al. (2018), measured once or during training.

The *simple noise scale* ``B_simple = tr(Sigma) / |G|^2`` (``G`` the true gradient,
``Sigma`` the per-example gradients' covariance) predicts the critical batch size: below it
a larger batch buys almost proportionally faster training, above it little. Neither part is
observable directly, but the squared norm of a batch-``B`` gradient has expectation
``E|G_B|^2 = |G|^2 + tr(Sigma) / B``, so two batch sizes ``b < B`` give unbiased estimators
(McCandlish et al. 2018, Appendix A.1)::

    |G|^2     ~ (B |G_B|^2 - b |G_b|^2) / (B - b)
    tr(Sigma) ~ (|G_b|^2 - |G_B|^2) / (1/b - 1/B)

Here the small gradients come from splitting one batch (micro-batches, or per-example
gradients through ``vmap``) or, data-parallel, from each device's own batch; the big one
is their mean (the all-reduced gradient, free in any data-parallel step). Each estimator
is unbiased; their ratio is not (and one batch's ``|G|^2`` estimate may be negative), so
training runs average the two parts over steps and divide the averages, as the paper does.

* :func:`gradient_noise_scale`: one measurement on one batch.
* :func:`gradient_noise_monitor`: an optax transformation that keeps bias-corrected moving
  averages of both parts while training (stacked split gradients, or per-device gradients
  with ``axis_name`` under ``shard_map``/``pmap``), read with :func:`gradient_noise_estimate`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

import numpy as np

from lrjax._engine.checks import check_steps, check_value, concrete_float, is_traced
from lrjax._engine.model import check_trainable

__all__ = [
    "GradientNoiseScale",
    "GradientNoiseMonitorState",
    "gradient_noise_scale",
    "gradient_noise_estimate",
    "gradient_noise_scale_from_norms",
    "gradient_noise_monitor",
]


class GradientNoiseScale(NamedTuple):
    """The simple noise scale and its parts (float32 scalars).

    Attributes:
      b_simple: ``trace_sigma / grad_norm_sq``, the simple noise scale (in examples).
      trace_sigma: the estimate of ``tr(Sigma)``, the per-example gradient variance.
      grad_norm_sq: the estimate of ``|G|^2``, the true gradient's squared norm.
      small_norm_sq: ``|G_b|^2``, the small-batch gradients' squared norm (their mean).
      big_norm_sq: ``|G_B|^2``, the big-batch gradient's squared norm.
    """

    b_simple: jax.Array
    trace_sigma: jax.Array
    grad_norm_sq: jax.Array
    small_norm_sq: jax.Array
    big_norm_sq: jax.Array


def _sq_norm(tree: Any) -> jax.Array:
    leaves = jax.tree.leaves(tree)
    return sum(jnp.sum(jnp.square(leaf.astype(jnp.float32))) for leaf in leaves)


def gradient_noise_scale_from_norms(
    small_norm_sq: Any, big_norm_sq: Any, small_batch_size: Any, big_batch_size: Any
) -> GradientNoiseScale:
    """The unbiased two-batch-size estimates of ``|G|^2`` and ``tr(Sigma)``, and their ratio.

    ``|G|^2 = (B |G_B|^2 - b |G_b|^2) / (B - b)``,
    ``tr(Sigma) = (|G_b|^2 - |G_B|^2) / (1/b - 1/B)``, ``B_simple = tr(Sigma) / |G|^2``.

    Args:
      small_norm_sq: ``|G_b|^2`` (averaged over several small batches: still unbiased).
      big_norm_sq: ``|G_B|^2``.
      small_batch_size: ``b``, ``>= 1``.
      big_batch_size: ``B``, ``> b``.

    Returns:
      A :class:`GradientNoiseScale`.

    Example:
      >>> est = gradient_noise_scale_from_norms(3.0, 1.5, small_batch_size=1, big_batch_size=4)
      >>> float(est.grad_norm_sq), float(est.trace_sigma), float(est.b_simple)
      (1.0, 2.0, 2.0)

    References:
      McCandlish, Kaplan, Amodei & OpenAI Dota Team, `An Empirical Model of Large-Batch
      Training <https://arxiv.org/abs/1812.06162>`_, 2018, Appendix A.1.
    """
    for name, norm in (("small_norm_sq", small_norm_sq), ("big_norm_sq", big_norm_sq)):
        _check_norm_sq(name, norm)
    return _from_norms(small_norm_sq, big_norm_sq, small_batch_size, big_batch_size)


def _check_norm_sq(name: str, value: Any) -> None:
    """A concrete scalar squared norm is finite, float32 and >= 0; arrays need a real dtype."""
    if is_traced(value):
        return
    if isinstance(value, (np.ndarray, jax.Array)) and value.ndim > 0:
        if not jnp.issubdtype(value.dtype, jnp.floating) and not jnp.issubdtype(value.dtype, jnp.integer):
            raise TypeError(f"{name} must hold real numbers, got dtype {value.dtype}.")
        return
    check_value(name, value, low=0.0)


def _from_norms(
    small_norm_sq: Any, big_norm_sq: Any, small_batch_size: Any, big_batch_size: Any
) -> GradientNoiseScale:
    """gradient_noise_scale_from_norms without the norms' checks (measured norms may be NaN)."""
    check_value("small_batch_size", small_batch_size, low=1.0)
    check_value("big_batch_size", big_batch_size, low=1.0)
    b, big_b = (concrete_float(name, v) for name, v in (("small_batch_size", small_batch_size),
                                                        ("big_batch_size", big_batch_size)))
    if b is not None and big_b is not None and not big_b > b:
        raise ValueError(f"big_batch_size must be > small_batch_size (the estimators divide by "
                         f"B - b), got B={big_b:g}, b={b:g}.")
    small, big = (jnp.asarray(v, jnp.float32) for v in (small_batch_size, big_batch_size))
    small_norm_sq, big_norm_sq = (jnp.asarray(v, jnp.float32) for v in (small_norm_sq, big_norm_sq))
    grad_norm_sq = (big * big_norm_sq - small * small_norm_sq) / (big - small)
    trace_sigma = (small_norm_sq - big_norm_sq) / (1.0 / small - 1.0 / big)
    return GradientNoiseScale(
        trace_sigma / grad_norm_sq, trace_sigma, grad_norm_sq, small_norm_sq, big_norm_sq
    )


def _batch_size(batch: Any) -> int:
    leaves = jax.tree.leaves(batch)
    if not leaves:
        raise ValueError("batch must hold at least one array with a leading batch axis.")
    sizes = {jnp.shape(leaf)[0] if jnp.ndim(leaf) else None for leaf in leaves}
    if None in sizes or len(sizes) != 1:
        raise ValueError(
            "every array in batch must share one leading batch axis, got sizes "
            f"{sorted(map(str, sizes))}."
        )
    return int(sizes.pop())


def _check_splits(num_splits: Any, batch_size: int) -> int:
    num_splits = check_steps("num_splits", num_splits, minimum=2)
    if batch_size % num_splits:
        raise ValueError(f"num_splits must divide the batch size {batch_size}, got {num_splits}.")
    return num_splits


def gradient_noise_scale(
    loss_fn: Callable[[Any, Any], jax.Array], params: Any, batch: Any, *, num_splits: int
) -> GradientNoiseScale:
    """McCandlish et al.'s simple noise scale ``tr(Sigma) / |G|^2`` measured on one batch.

    The batch (``B`` examples) is split into ``num_splits`` micro-batches of
    ``b = B / num_splits`` (``num_splits = B``: per-example gradients); their gradients
    come from one ``vmap``, the whole batch's gradient is their mean, and
    :func:`gradient_noise_scale_from_norms` turns ``mean_i |G_b,i|^2`` and ``|G_B|^2`` into the
    unbiased estimates. ``loss_fn`` must be the *mean* of per-example losses (so the
    whole-batch gradient is the mean of equal splits' gradients). Works under ``jit``
    and ``vmap``.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``, a mean over the batch's examples.
      params: the point where the gradients are taken.
      batch: a pytree of arrays sharing a leading batch axis of size ``B``.
      num_splits: micro-batches, in ``[2, B]``, dividing ``B``.

    Returns:
      A :class:`GradientNoiseScale` (``b_simple`` in examples).

    Example:
      >>> import jax.numpy as jnp
      >>> loss = lambda w, b: jnp.mean(0.5 * (w - b["y"]) ** 2)
      >>> batch = {"y": jnp.array([1.0, 2.0, 3.0, 4.0])}
      >>> est = gradient_noise_scale(loss, 0.0, batch, num_splits=4)  # per-example grads -y_i
      >>> [round(float(v), 4) for v in (est.trace_sigma, est.grad_norm_sq, est.b_simple)]
      [1.6667, 5.8333, 0.2857]

    ``trace_sigma`` is then the unbiased sample variance of the ``-y_i`` (5/3) and
    ``grad_norm_sq`` the squared mean less its variance (6.25 - 5/12).

    References:
      McCandlish, Kaplan, Amodei & OpenAI Dota Team, `An Empirical Model of Large-Batch
      Training <https://arxiv.org/abs/1812.06162>`_, 2018, section 2.2 and Appendix A.1.
    """
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be a callable (params, batch) -> scalar, got {loss_fn!r:.60}.")
    check_trainable("params", params)
    size = _batch_size(batch)
    num_splits = _check_splits(num_splits, size)
    split = jax.tree.map(
        lambda leaf: jnp.reshape(leaf, (num_splits, size // num_splits, *jnp.shape(leaf)[1:])),
        batch,
    )
    first = jax.tree.map(lambda leaf: leaf[0], split)
    out = jax.eval_shape(loss_fn, params, first)
    if not (hasattr(out, "shape") and out.shape == () and jnp.issubdtype(out.dtype, jnp.floating)):
        raise ValueError(f"loss_fn must return a scalar floating loss, got {out}.")
    grads = jax.vmap(jax.grad(loss_fn), in_axes=(None, 0))(params, split)
    small_norm_sq = jnp.mean(jax.vmap(_sq_norm)(grads))
    big_norm_sq = _sq_norm(jax.tree.map(lambda g: jnp.mean(g, axis=0), grads))
    return _from_norms(small_norm_sq, big_norm_sq, size // num_splits, size)


class GradientNoiseMonitorState(NamedTuple):
    """Moving averages (not yet bias-corrected) of the noise-scale parts.

    Attributes:
      count: measurements averaged so far (non-finite ones are skipped), int32.
      decay_power: ``decay**count``, for the bias correction ``1 - decay**count``.
      trace_sigma: the EMA of the ``tr(Sigma)`` estimates.
      grad_norm_sq: the EMA of the ``|G|^2`` estimates.
      small_norm_sq: the EMA of ``|G_b|^2``.
      big_norm_sq: the EMA of ``|G_B|^2``.
    """

    count: jax.Array
    decay_power: jax.Array
    trace_sigma: jax.Array
    grad_norm_sq: jax.Array
    small_norm_sq: jax.Array
    big_norm_sq: jax.Array


def gradient_noise_monitor(
    batch_size: int, *, axis_name: Any = None, decay: Any = 0.99
) -> optax.GradientTransformation:
    """Estimate the gradient noise scale while training, from gradients the step has anyway.

    Put it first in the chain, in place of the gradient averaging:

    * ``axis_name=None``: the updates carry a leading axis of ``S >= 2`` split gradients
      (micro-batches of ``batch_size`` examples, e.g. ``vmap(grad)`` over a reshaped batch;
      with that axis sharded over a mesh, ``jit`` makes the mean the all-reduce); the
      transform passes on their mean, the whole batch's gradient. Pass ``params`` to
      ``update`` and the stacking is checked against them.
    * ``axis_name="..."`` (inside ``shard_map``/``pmap``): the updates are this device's
      gradient of its ``batch_size`` examples; the transform passes on their ``pmean``
      over ``axis_name`` (the usual data-parallel all-reduce) and adds one scalar
      ``pmean`` for the norms. This is the cheap estimator of large runs: ``b`` is the
      per-device batch, ``B`` the global one.

    Each step feeds ``|G_b|^2`` (the mean over splits or devices) and ``|G_B|^2`` into
    :func:`gradient_noise_scale_from_norms`, and the two estimates into moving averages with
    ``decay``. :func:`gradient_noise_estimate` bias-corrects them (divides by
    ``1 - decay**count``, as Adam does) and divides. A step whose estimate is not finite is
    skipped (state unchanged); the gradient is passed on regardless.

    Args:
      batch_size: examples behind one small gradient (per split or per device), ``>= 1``.
      axis_name: the data-parallel axis name, or None for stacked split gradients.
      decay: the moving averages' decay, in ``[0, 1)``.

    Returns:
      An ``optax.GradientTransformation`` whose state is a :class:`GradientNoiseMonitorState`.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> opt = optax.chain(gradient_noise_monitor(batch_size=8), optax.sgd(0.1))
      >>> params = {"w": jnp.zeros(3)}
      >>> state = opt.init(params)
      >>> split_grads = {"w": jnp.array([[1.0, 0, 0], [1.0, 2.0, 0]])}  # 2 splits of 8
      >>> updates, state = opt.update(split_grads, state, params)  # sgd on their mean
      >>> est = gradient_noise_estimate(state)
      >>> float(est.trace_sigma), float(est.grad_norm_sq), float(est.b_simple)
      (16.0, 1.0, 16.0)

    References:
      McCandlish, Kaplan, Amodei & OpenAI Dota Team, `An Empirical Model of Large-Batch
      Training <https://arxiv.org/abs/1812.06162>`_, 2018, Appendix A.1 (data-parallel
      estimator, moving averages of both parts).
    """
    batch_size = check_steps("batch_size", batch_size)
    check_value("decay", decay, low=0.0, high=1.0, high_open=True)

    def init_fn(params: Any) -> GradientNoiseMonitorState:
        del params
        zero = jnp.zeros([], jnp.float32)
        return GradientNoiseMonitorState(
            jnp.zeros([], jnp.int32), jnp.ones([], jnp.float32), zero, zero, zero, zero
        )

    def update_fn(
        updates: Any, state: GradientNoiseMonitorState, params: Any = None
    ) -> tuple[Any, GradientNoiseMonitorState]:
        if axis_name is None:
            sizes = {
                jnp.shape(leaf)[0] if jnp.ndim(leaf) else None for leaf in jax.tree.leaves(updates)
            }
            stacked = params is None or all(
                jnp.shape(u)[1:] == jnp.shape(p)
                for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params))
            )
            if None in sizes or len(sizes) != 1 or sizes == {1} or not stacked:
                raise ValueError(
                    "gradient_noise_monitor with axis_name=None needs updates stacked on a leading "
                    f"axis of >= 2 split gradients (shape (S, *param.shape)), got leading sizes "
                    f"{sorted(map(str, sizes))}."
                )
            num_splits = sizes.pop()
            mean = jax.tree.map(lambda g: jnp.mean(g, axis=0), updates)
            small_norm_sq = jnp.mean(jax.vmap(_sq_norm)(updates))
        else:
            num_splits = jax.lax.psum(1, axis_name)
            mean = jax.lax.pmean(updates, axis_name)
            small_norm_sq = jax.lax.pmean(_sq_norm(updates), axis_name)
        measured = _from_norms(
            small_norm_sq, _sq_norm(mean), batch_size, batch_size * num_splits
        )
        keep = jnp.isfinite(measured.trace_sigma) & jnp.isfinite(measured.grad_norm_sq)
        d = jnp.asarray(decay, jnp.float32)

        def average(old: jax.Array, new: jax.Array) -> jax.Array:
            return jnp.where(keep, d * old + (1.0 - d) * new, old)

        new_state = GradientNoiseMonitorState(
            state.count + keep.astype(jnp.int32),
            jnp.where(keep, state.decay_power * d, state.decay_power),
            average(state.trace_sigma, measured.trace_sigma),
            average(state.grad_norm_sq, measured.grad_norm_sq),
            average(state.small_norm_sq, measured.small_norm_sq),
            average(state.big_norm_sq, measured.big_norm_sq),
        )
        return mean, new_state

    return optax.GradientTransformation(init_fn, update_fn)


def _find_state(state: Any) -> GradientNoiseMonitorState:
    found = [
        leaf
        for leaf in jax.tree.leaves(
            state, is_leaf=lambda x: isinstance(x, GradientNoiseMonitorState))
        if isinstance(leaf, GradientNoiseMonitorState)
    ]
    if len(found) != 1:
        raise ValueError(
            f"state must hold exactly one GradientNoiseMonitorState, found {len(found)}.")
    return found[0]


def gradient_noise_estimate(state: Any) -> GradientNoiseScale:
    """The monitor's bias-corrected moving averages and ``B_simple`` from them.

    ``part = ema / (1 - decay**count)`` for each part (``decay**count`` is kept in the
    state), ``b_simple = tr(Sigma) / |G|^2`` of the corrected averages; NaN before the
    first finite measurement.

    Args:
      state: a :class:`GradientNoiseMonitorState`, or any optimizer state holding exactly one
        (e.g. an ``optax.chain`` state).

    Returns:
      A :class:`GradientNoiseScale` of the averages.

    Example:
      >>> state = gradient_noise_monitor(batch_size=4).init({})
      >>> bool(jnp.isnan(gradient_noise_estimate(state).b_simple))
      True

    References:
      McCandlish, Kaplan, Amodei & OpenAI Dota Team, `An Empirical Model of Large-Batch
      Training <https://arxiv.org/abs/1812.06162>`_, 2018, Appendix A.1.
    """
    monitor = _find_state(state)
    correction = jnp.where(monitor.count > 0, 1.0 - monitor.decay_power, jnp.nan)
    trace_sigma = monitor.trace_sigma / correction
    grad_norm_sq = monitor.grad_norm_sq / correction
    return GradientNoiseScale(
        trace_sigma / grad_norm_sq,
        trace_sigma,
        grad_norm_sq,
        monitor.small_norm_sq / correction,
        monitor.big_norm_sq / correction,
    )
