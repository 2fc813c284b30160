"""Stochastic weight averaging (SWA) as an optax wrapper, and batch statistics for the average.

:func:`swa` wraps any optimizer: its updates pass through unchanged (training follows the
inner optimizer's trajectory) while its state keeps the equal-weight running mean of the
iterates from ``start_step`` on, every ``every_steps`` steps (Izmailov et al. 2018, Alg. 1).
:func:`swa_params` reads that mean out of any optimizer state that holds it (inside
``optax.chain``, ``optax.MultiSteps``, ``optax.inject_hyperparams``, ...).

An averaged network's batch-norm running statistics belong to none of the averaged
iterates; :func:`update_batch_stats` recomputes them for the averaged params with one pass
over the data (PyTorch's ``torch.optim.swa_utils.update_bn``).

References:
    Izmailov, Podoprikhin, Garipov, Vetrov & Wilson, `Averaging Weights Leads to Wider
    Optima and Better Generalization <https://arxiv.org/abs/1803.05407>`_, UAI 2018.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lrjax._engine.data import _check_array_leaves, _data_form, _stack_chunk
from lrjax._engine.checks import check_steps
from lrjax._engine.eval_params import evaluation_params

PyTree = Any


class SWAState(NamedTuple):
    """State of :func:`swa`.

    Attributes:
      count: int32, the updates applied so far (the next update's index).
      num_averaged: int32, the iterates in ``mean`` (0 before ``start_step``).
      mean: the running mean of the averaged iterates, shaped (and sharded) like the
        params; the initial params until the first iterate is averaged.
      inner_state: the wrapped optimizer's state.
      accumulator: the running mean in float32 (at least) when a param is of a narrower
        float type (bfloat16, float16), else None. A mean kept in bfloat16 stops moving once
        ``(iterate - mean) / n`` rounds to 0 (2000 iterates alternating 1 and 1.5 averaged
        to 1.0); ``mean`` is this accumulator cast to the params' dtypes.
    """

    count: jax.Array
    num_averaged: jax.Array
    mean: PyTree
    inner_state: optax.OptState
    accumulator: PyTree = None


def _wide(dtype: Any) -> Any:
    """The accumulation dtype: float32 at least."""
    return jnp.promote_types(dtype, jnp.float32)


def swa(inner: optax.GradientTransformation, start_step: int,
        every_steps: int = 1) -> optax.GradientTransformationExtraArgs:
    """Stochastic weight averaging: ``inner``'s updates, plus the running mean of the iterates.

    With ``w_{t+1} = w_t + u_t`` the params after update ``t`` (counted from 0), the
    iterate ``w_{t+1}`` joins the average when ``t >= start_step`` and
    ``(t - start_step) % every_steps == 0`` (the convention of TensorFlow Addons' SWA)::

        n <- n + 1
        mean <- mean + (w_{t+1} - mean) / n       (the equal-weight mean of the n iterates)

    Updates pass through unchanged. The mean has the params' shapes and dtypes (it is
    accumulated in float32 when a param is bfloat16 or float16, see
    :class:`SWAState`), and is computed elementwise from them, so under ``jit`` it is sharded like the params. Wrap
    the whole optimizer (or put ``swa`` last in an ``optax.chain``): the iterate is
    ``params + updates``, which is the new params only if no later transformation changes
    the updates. Inside ``optax.MultiSteps`` a step is one real (accumulated) update.

    Args:
      inner: the optimizer to wrap.
      start_step: index of the first update whose result is averaged, an integer ``>= 0``.
      every_steps: average every this many updates from ``start_step``, an integer ``>= 1``
        (e.g. the cycle length of a cyclic schedule, to average the cycles' ends).

    Returns:
      An optax ``GradientTransformationExtraArgs`` with :class:`SWAState`; ``update`` needs
      ``params``. Read the average with :func:`swa_params`.

    Example:
      >>> tx = swa(optax.sgd(0.1), start_step=2)
      >>> params = jnp.zeros(2)
      >>> state = tx.init(params)
      >>> for _ in range(4):
      ...     updates, state = tx.update(-jnp.ones(2), state, params)
      ...     params = optax.apply_updates(params, updates)
      >>> [round(float(v), 4) for v in swa_params(state)]  # mean of the iterates .3 and .4
      [0.35, 0.35]

    References:
      Izmailov et al., `Averaging Weights Leads to Wider Optima and Better Generalization
      <https://arxiv.org/abs/1803.05407>`_, UAI 2018, Algorithm 1.
    """
    if not isinstance(inner, optax.GradientTransformation):
        raise ValueError(f"inner must be an optax GradientTransformation, got {inner!r}.")
    start_step = check_steps("start_step", start_step, 0)
    every_steps = check_steps("every_steps", every_steps, 1)
    inner = optax.with_extra_args_support(inner)

    def init(params: PyTree) -> SWAState:
        zero = jnp.zeros((), jnp.int32)
        # A copy (not an alias) of the params, so the mean never shares a user's buffer.
        mean = jax.tree.map(lambda p: jnp.array(p, copy=True), params)
        narrow = any(jnp.issubdtype(jnp.result_type(p), jnp.floating)
                     and jnp.result_type(p) != _wide(jnp.result_type(p))
                     for p in jax.tree.leaves(params))
        accumulator = (jax.tree.map(lambda p: jnp.asarray(p, _wide(jnp.result_type(p))), params)
                       if narrow else None)
        return SWAState(count=zero, num_averaged=zero, mean=mean, inner_state=inner.init(params),
                        accumulator=accumulator)

    def update(updates: PyTree, state: SWAState, params: PyTree | None = None,
               **extra_args: Any) -> tuple[PyTree, SWAState]:
        if params is None:
            raise ValueError("swa needs the params: call update(updates, state, params).")
        if jax.tree.structure(params) != jax.tree.structure(state.mean) or any(
                np.shape(p) != np.shape(m)
                for p, m in zip(jax.tree.leaves(params), jax.tree.leaves(state.mean))):
            raise ValueError("params must have the structure and shapes of the params swa's "
                             "state was initialised with (init(params)).")
        updates, inner_state = inner.update(updates, state.inner_state, params, **extra_args)
        step = state.count
        take = (step >= start_step) & ((step - start_step) % every_steps == 0)
        num_averaged = state.num_averaged + take.astype(jnp.int32)
        # 1/n in float32 is exact enough: n <= 2**31 iterates, weights for the running mean.
        weight = 1.0 / jnp.maximum(num_averaged, 1).astype(jnp.float32)

        def average(mean: jax.Array, iterate: jax.Array) -> jax.Array:
            # The iterate in the accumulator's precision.
            moved = mean + (jnp.asarray(iterate, mean.dtype) - mean) * weight.astype(mean.dtype)
            return jnp.where(take, moved, mean)

        # The new params (p + u rounds as apply_updates does); a schedule-free inner
        # optimizer's iterate is its evaluation params.
        iterates = evaluation_params(inner_state, jax.tree.map(
            lambda p, u: jnp.asarray(p + u, jnp.result_type(p)), params, updates))
        if state.accumulator is None:
            accumulator, mean = None, jax.tree.map(average, state.mean, iterates)
        else:
            accumulator = jax.tree.map(average, state.accumulator, iterates)
            mean = jax.tree.map(lambda a, m: a.astype(m.dtype), accumulator, state.mean)
        return updates, SWAState(count=optax.safe_int32_increment(step),
                                 num_averaged=num_averaged, mean=mean, inner_state=inner_state,
                                 accumulator=accumulator)

    return optax.GradientTransformationExtraArgs(init, update)


def swa_state(opt_state: optax.OptState) -> SWAState:
    """The one :class:`SWAState` inside ``opt_state`` (chain, MultiSteps, inject, ... states).

    Args:
      opt_state: an optimizer state containing exactly one :func:`swa` state.

    Returns:
      That :class:`SWAState`.

    Example:
      >>> tx = optax.chain(optax.clip(1.0), swa(optax.sgd(0.1), start_step=0))
      >>> swa_state(tx.init(jnp.zeros(2))).num_averaged.tolist()
      0

    References:
      Izmailov et al., `SWA <https://arxiv.org/abs/1803.05407>`_, UAI 2018.
    """
    found = [node for node in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, SWAState))
             if isinstance(node, SWAState)]
    if len(found) != 1:
        raise ValueError(
            f"opt_state must contain exactly one SWA state (from lrjax.swa), found {len(found)}"
            + ("." if found else ": wrap the optimizer in lrjax.swa(...)."))
    return found[0]


def swa_params(opt_state: optax.OptState) -> PyTree:
    """The averaged params held by :func:`swa` in ``opt_state``.

    Before the first averaged update (``num_averaged == 0``) these are the initial params.

    Args:
      opt_state: the state of ``swa(...)``, or of a ``chain``/``MultiSteps``/
        ``inject_hyperparams`` (or any pytree) holding exactly one.

    Returns:
      The running mean, a pytree like the params.

    Example:
      >>> tx = optax.MultiSteps(swa(optax.sgd(0.1), start_step=0), every_k_schedule=2)
      >>> swa_params(tx.init(jnp.ones(2))).tolist()
      [1.0, 1.0]

    References:
      Izmailov et al., `SWA <https://arxiv.org/abs/1803.05407>`_, UAI 2018.
    """
    return swa_state(opt_state).mean


def update_batch_stats(
    apply_fn: Callable[[PyTree, PyTree, PyTree], PyTree],
    params: PyTree,
    batch_stats: PyTree,
    data: Any,
    *,
    momentum: float | None = None,
    num_batches: int | None = None,
) -> PyTree:
    """Recomputes batch-norm running statistics for ``params`` (e.g. SWA's average).

    Every statistic ``r`` is replaced by the equal-weight mean of its per-batch values
    over the ``K`` batches of ``data``, ``r = 1/K * sum_k b_k`` (PyTorch's ``update_bn``,
    which sets ``momentum=None`` for a cumulative average). The per-batch values come from
    the model's own train-mode update, assumed to be ``r' = m * r + (1 - m) * b`` (Flax
    linen and nnx ``BatchNorm``): one pass from ``r = 0`` gives ``(1 - m) * b_k``, and
    ``m`` is ``momentum`` or, when None, measured as ``r'(1) - r'(0)`` on the first batch.
    Means and variances follow the module's conventions (Flax: the biased batch variance).
    One ``jit`` of a ``lax.scan`` over the batches.

    Args:
      apply_fn: ``(params, batch_stats, batch) -> new batch_stats``, a train-mode forward
        pass; for linen: ``model.apply({"params": p, "batch_stats": s}, batch["x"],
        train=True, mutable=["batch_stats"])[1]["batch_stats"]``.
      params: the params to compute the statistics for (not modified).
      batch_stats: the current statistics (their structure, shapes and dtypes).
      data: batches stacked on a leading axis (a pytree of arrays), or an iterable of
        batches (stacked on the host).
      momentum: the modules' ``m`` in ``[0, 1)``, or None to measure it.
      num_batches: use the first this many batches (an integer ``>= 1``). An iterable is
        read until it ends, until ``num_batches``, or until it yields its first batch
        again (``itertools.cycle`` over a list: one pass), whichever comes first, so an
        endless iterator never reads without limit; one that never repeats its objects
        needs ``num_batches`` (refused past 100,000 batches without it).

    Returns:
      New ``batch_stats`` (a pytree like ``batch_stats``).

    Example:
      >>> def apply_fn(p, s, batch):  # a running mean of x * p with momentum 0.9
      ...     return {"mean": 0.9 * s["mean"] + 0.1 * jnp.mean(batch * p)}
      >>> stats = update_batch_stats(apply_fn, 2.0, {"mean": 0.0}, jnp.arange(3.0)[:, None])
      >>> round(float(stats["mean"]), 4)  # mean of 0, 2, 4
      2.0

    References:
      Izmailov et al., `SWA <https://arxiv.org/abs/1803.05407>`_, UAI 2018, sec. 3.2;
      PyTorch ``torch.optim.swa_utils.update_bn``.
    """
    if not callable(apply_fn):
        raise ValueError(f"apply_fn must be callable, got {apply_fn!r}.")
    if momentum is not None and not (isinstance(momentum, (int, float, np.floating))
                                     and not isinstance(momentum, bool) and 0 <= momentum < 1):
        raise ValueError(f"momentum must be None or a number in [0, 1), got {momentum!r}.")
    if not jax.tree.leaves(batch_stats):
        raise ValueError("batch_stats is empty (no statistics to update).")
    if num_batches is not None:
        num_batches = check_steps("num_batches", num_batches)
    if _data_form(data) == "iterable":
        batches = _one_pass(iter(data), num_batches)
        data = _stack_chunk(batches, len(batches))
    elif num_batches is not None and _data_form(data) == "stacked":
        data = jax.tree.map(lambda x: x[:num_batches], data)
    elif _data_form(data) == "function":
        raise ValueError("data must be stacked batches or an iterable of batches, not a function.")
    _check_array_leaves("data", data, 1)
    stats = _batch_stats_pass(apply_fn, params, jax.tree.map(jnp.asarray, batch_stats), data,
                              momentum)
    if momentum is None:
        stats, measured = stats
        low = min(float(np.min(1.0 - np.asarray(m))) for m in jax.tree.leaves(measured))
        if not low > 1e-4:
            raise ValueError(
                "update_batch_stats: a statistic does not follow r' = m * r + (1 - m) * b with "
                f"m < 1 (measured 1 - m = {low:.3g}); pass momentum= or check apply_fn.")
    return stats


_UNBOUNDED_LIMIT = 100_000


def _one_pass(iterator: Any, num_batches: int | None) -> list:
    """The iterator's batches up to its end, ``num_batches``, or its first batch again."""
    batches: list = []
    for batch in iterator:
        if batches and batch is batches[0]:  # itertools.cycle: the pass is over
            break
        batches.append(batch)
        if num_batches is not None and len(batches) == num_batches:
            break
        if num_batches is None and len(batches) > _UNBOUNDED_LIMIT:
            raise ValueError(f"data yielded more than {_UNBOUNDED_LIMIT} batches without "
                             "repeating: pass num_batches= (an endless iterator?).")
    if not batches:
        raise ValueError("data is empty: the iterable yielded no batches.")
    return batches


def _batch_stats_pass(apply_fn: Callable, params: PyTree, batch_stats: PyTree, data: PyTree,
                      momentum: float | None) -> Any:
    num_batches = {np.shape(x)[0] for x in jax.tree.leaves(data)}
    if len(num_batches) != 1:
        raise ValueError(f"data: every leaf needs the same leading batch axis, got {num_batches}.")
    (count,) = num_batches
    # Accumulate in float32 at least: bf16 statistics summed over many batches drift.
    dtype = lambda x: jnp.promote_types(x.dtype, jnp.float32)  # noqa: E731
    zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, dtype(x)), batch_stats)
    total = _apply_scan(apply_fn, params, zeros, data)
    if momentum is not None:
        keep = jax.tree.map(lambda x: jnp.asarray(momentum, x.dtype), zeros)
    else:
        first = jax.tree.map(lambda x: x[0], data)
        ones = jax.tree.map(jnp.ones_like, zeros)
        keep = jax.tree.map(jnp.subtract, _apply_once(apply_fn, params, ones, first),
                            _apply_once(apply_fn, params, zeros, first))
    stats = jax.tree.map(lambda t, m, s: (t / (count * (1 - m))).astype(s.dtype),
                         total, keep, batch_stats)
    return stats if momentum is not None else (stats, keep)


def _checked_stats(out: PyTree, stats: PyTree) -> PyTree:
    """``apply_fn``'s statistics must be shaped like ``batch_stats`` (they replace them)."""
    if jax.tree.structure(out) != jax.tree.structure(stats) or any(
            jnp.shape(o) != jnp.shape(s) for o, s in zip(jax.tree.leaves(out),
                                                        jax.tree.leaves(stats))):
        raise ValueError(
            "apply_fn must return new batch statistics with the structure and shapes of "
            f"batch_stats: got {jax.tree.structure(out)} with shapes "
            f"{[jnp.shape(o) for o in jax.tree.leaves(out)]} for {jax.tree.structure(stats)} "
            f"with shapes {[jnp.shape(s) for s in jax.tree.leaves(stats)]}.")
    return out


def _scan_program(apply_fn: Callable, params: PyTree, zeros: PyTree, data: PyTree) -> PyTree:
    """``sum_k apply_fn(params, 0, batch_k)`` over the batches, as one scan."""
    def add(total: PyTree, batch: PyTree) -> tuple[PyTree, None]:
        new = _checked_stats(apply_fn(params, zeros, batch), zeros)
        return jax.tree.map(lambda t, n: t + jnp.asarray(n, t.dtype), total, new), None

    total, _ = jax.lax.scan(add, zeros, data)
    return total


def _once_program(apply_fn: Callable, params: PyTree, stats: PyTree, batch: PyTree) -> PyTree:
    out = _checked_stats(apply_fn(params, stats, batch), stats)
    return jax.tree.map(lambda o, s: jnp.asarray(o, s.dtype), out, stats)


# Module-level jits keyed on apply_fn (static): a repeated call reuses the compiled pass.
_apply_scan = jax.jit(_scan_program, static_argnums=0)
_apply_once = jax.jit(_once_program, static_argnums=0)
