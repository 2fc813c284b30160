"""Tests of lrjax.batch.gradient_noise: McCandlish et al.'s noise scale, once and as a monitor.

The truth is a closed form: linear regression with Gaussian inputs ``x ~ N(0, I_d)`` and
targets ``y = x . w* + sigma * e``. At ``w`` (``delta = w - w*``) the per-example gradient
``x (x . delta - sigma e)`` has mean ``G = delta`` and, by Isserlis' theorem
(``E[x x^T A x x^T] = tr(A) I + A + A^T``), covariance trace
``tr(Sigma) = (d + 1) |delta|^2 + d sigma^2``. Finite-batch numbers are checked against a
numpy computation of the per-example gradients.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from lrjax.batch.gradient_noise import (
    GradientNoiseMonitorState,
    gradient_noise_scale,
    gradient_noise_estimate,
    gradient_noise_scale_from_norms,
    gradient_noise_monitor,
)

D, SIGMA = 4, 1.0
DELTA = np.full(D, 0.5)  # |delta|^2 = 1
W_STAR = np.array([1.0, -1.0, 2.0, 0.0])
TRUE_GRAD_SQ = float(DELTA @ DELTA)
TRUE_TRACE = (D + 1) * TRUE_GRAD_SQ + D * SIGMA**2  # 9
TRUE_B_SIMPLE = TRUE_TRACE / TRUE_GRAD_SQ


def loss_fn(w, batch):
    return 0.5 * jnp.mean((batch["x"] @ w - batch["y"]) ** 2)


def sample(key, size):
    kx, ke = jax.random.split(key)
    x = jax.random.normal(kx, (size, D))
    return {
        "x": x,
        "y": x @ jnp.asarray(W_STAR, jnp.float32) + SIGMA * jax.random.normal(ke, (size,)),
    }


W = jnp.asarray(W_STAR + DELTA, jnp.float32)


def test_estimators_invert_the_expected_norms():
    # E|G_b|^2 = |G|^2 + tr(Sigma) / b exactly; the estimators must give back both parts.
    for small, big in [(1, 2), (8, 64), (32, 4096)]:
        est = gradient_noise_scale_from_norms(
            TRUE_GRAD_SQ + TRUE_TRACE / small, TRUE_GRAD_SQ + TRUE_TRACE / big, small, big
        )
        np.testing.assert_allclose(
            [est.grad_norm_sq, est.trace_sigma, est.b_simple],
            [TRUE_GRAD_SQ, TRUE_TRACE, TRUE_B_SIMPLE],
            rtol=1e-4,
        )


@pytest.mark.parametrize("num_splits", [4, 32])
def test_matches_numpy_per_example_gradients(num_splits):
    batch = sample(jax.random.key(1), 32)
    est = jax.jit(gradient_noise_scale, static_argnums=(0,), static_argnames="num_splits")(
        loss_fn, W, batch, num_splits=num_splits
    )
    x, y, w = (np.asarray(v, np.float64) for v in (batch["x"], batch["y"], W))
    per_example = x * (x @ w - y)[:, None]
    small = per_example.reshape(num_splits, -1, D).mean(axis=1)
    b, big_b = 32 // num_splits, 32
    small_sq, big_sq = np.mean(np.sum(small**2, axis=1)), np.sum(per_example.mean(axis=0) ** 2)
    grad_sq = (big_b * big_sq - b * small_sq) / (big_b - b)
    trace = (small_sq - big_sq) / (1 / b - 1 / big_b)
    np.testing.assert_allclose(est.small_norm_sq, small_sq, rtol=1e-5)
    np.testing.assert_allclose(est.big_norm_sq, big_sq, rtol=1e-5)
    np.testing.assert_allclose(
        [est.grad_norm_sq, est.trace_sigma, est.b_simple],
        [grad_sq, trace, trace / grad_sq],
        rtol=1e-4,
    )
    if num_splits == 32:  # per-example: tr(Sigma) is the unbiased sample variance's trace
        np.testing.assert_allclose(
            est.trace_sigma, per_example.var(axis=0, ddof=1).sum(), rtol=1e-4
        )


def test_known_noise_within_ten_percent_and_unbiased_over_seeds():
    big = gradient_noise_scale(loss_fn, W, sample(jax.random.key(0), 16384), num_splits=64)
    np.testing.assert_allclose(big.b_simple, TRUE_B_SIMPLE, rtol=0.1)
    np.testing.assert_allclose(big.trace_sigma, TRUE_TRACE, rtol=0.1)
    np.testing.assert_allclose(big.grad_norm_sq, TRUE_GRAD_SQ, rtol=0.1)
    # Unbiased: over 400 batches of 64 (per-example splits), each estimate's mean is the
    # truth within 4 standard errors, though a single |G|^2 estimate is very noisy.
    traces = []

    @jax.jit
    def many(keys):
        traces.append(1)
        return jax.vmap(lambda k: gradient_noise_scale(loss_fn, W, sample(k, 64), num_splits=64))(
            keys
        )

    est = many(jax.random.split(jax.random.key(2), 400))
    many(jax.random.split(jax.random.key(3), 400))
    assert len(traces) == 1  # one compile for repeated calls
    for values, truth in [(est.grad_norm_sq, TRUE_GRAD_SQ), (est.trace_sigma, TRUE_TRACE)]:
        values = np.asarray(values, np.float64)
        stderr = values.std(ddof=1) / np.sqrt(len(values))
        assert abs(values.mean() - truth) < 4 * stderr, (values.mean(), truth, stderr)
        assert values.std() > 0.05 * truth  # the single-batch estimates do vary


@pytest.mark.parametrize(
    "call,name",
    [
        (lambda b: gradient_noise_scale(loss_fn, W, b, num_splits=3), "num_splits"),
        (lambda b: gradient_noise_scale(loss_fn, W, b, num_splits=1), "num_splits"),
        (
            lambda b: gradient_noise_scale(
                loss_fn, W, {"x": b["x"], "y": b["y"][:4]}, num_splits=2
            ),
            "batch",
        ),
        (lambda b: gradient_noise_monitor(batch_size=0), "batch_size"),
        (lambda b: gradient_noise_monitor(batch_size=8, decay=1.0), "decay"),
        (lambda b: gradient_noise_scale_from_norms(1.0, 1.0, 0, 4), "small_batch_size"),
        (
            lambda b: gradient_noise_monitor(8).update(
                {"w": jnp.ones(3)}, gradient_noise_monitor(8).init(None), {"w": jnp.ones(3)}
            ),
            "stacked",
        ),
        (
            lambda b: gradient_noise_estimate(optax.sgd(0.1).init(jnp.ones(2))),
            "GradientNoiseMonitorState",
        ),
    ],
)
def test_bad_input_names_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call(sample(jax.random.key(0), 8))


NUM_DEVICES, STEPS, PER_SPLIT, DECAY = 8, 5, 4, 0.8


@jax.jit
def _split_grads(keys):
    """(STEPS, NUM_DEVICES, D) gradients: each device's batch of PER_SPLIT examples."""

    def one(key):
        batch = sample(key, NUM_DEVICES * PER_SPLIT)
        split = jax.tree.map(lambda a: a.reshape(NUM_DEVICES, PER_SPLIT, *a.shape[1:]), batch)
        return jax.vmap(jax.grad(loss_fn), in_axes=(None, 0))(W, split), batch

    return jax.vmap(one)(keys)


_per_step = jax.jit(lambda batch: gradient_noise_scale(loss_fn, W, batch, num_splits=NUM_DEVICES))


def _numpy_monitor(batches):
    """Reference: per-step gradient_noise_scale, then bias-corrected EMAs on the host."""
    ema, out = np.zeros(2), []
    for t in range(STEPS):
        batch = jax.tree.map(lambda a, t=t: a[t], batches)
        est = _per_step(batch)
        ema = DECAY * ema + (1 - DECAY) * np.array([est.trace_sigma, est.grad_norm_sq], np.float64)
        out.append(ema / (1 - DECAY ** (t + 1)))
    return np.array(out)


def _run_stacked(grads):
    monitor = gradient_noise_monitor(PER_SPLIT, decay=DECAY)

    def body(state, g):
        mean, state = monitor.update(g, state)
        est = gradient_noise_estimate(state)
        return state, (mean, jnp.stack([est.trace_sigma, est.grad_norm_sq, est.b_simple]))

    return jax.lax.scan(body, monitor.init(W), grads)


def test_monitor_under_jit_and_on_eight_devices_equals_single_device():
    assert jax.device_count() >= NUM_DEVICES
    grads, batches = _split_grads(jax.random.split(jax.random.key(5), STEPS))
    reference = _numpy_monitor(batches)

    state, (means, single) = jax.jit(_run_stacked)(grads)
    np.testing.assert_allclose(single[:, :2], reference, rtol=1e-4)
    np.testing.assert_allclose(single[:, 2], reference[:, 0] / reference[:, 1], rtol=1e-4)
    np.testing.assert_allclose(means, grads.mean(axis=1), rtol=1e-6)  # passes on the mean gradient
    assert isinstance(state, GradientNoiseMonitorState) and int(state.count) == STEPS

    # Data-parallel: each device holds its own gradient; pmean inside the monitor.
    def per_device(g):  # g: (STEPS, D) on one device
        monitor = gradient_noise_monitor(PER_SPLIT, axis_name="data", decay=DECAY)

        def body(state, gi):
            mean, state = monitor.update(gi, state)
            est = gradient_noise_estimate(state)
            return state, (mean, jnp.stack([est.trace_sigma, est.grad_norm_sq, est.b_simple]))

        return jax.lax.scan(body, monitor.init(W), g)[1]

    by_device = jnp.swapaxes(grads, 0, 1)  # (NUM_DEVICES, STEPS, D)
    pmapped_means, pmapped = jax.pmap(per_device, axis_name="data")(by_device)
    for i in range(NUM_DEVICES):
        np.testing.assert_allclose(pmapped[i], single, rtol=1e-5)
        np.testing.assert_allclose(pmapped_means[i], means, rtol=1e-6, atol=1e-7)

    mesh = Mesh(np.asarray(jax.devices()[:NUM_DEVICES]), ("data",))
    shard_map = getattr(jax, "shard_map", None)
    if shard_map is None:  # jax < 0.7 kept it in experimental
        from jax.experimental.shard_map import shard_map
    mapped = jax.jit(
        shard_map(
            lambda g: per_device(g[0])[1][None], mesh=mesh, in_specs=P("data"), out_specs=P("data")
        )
    )(by_device)
    np.testing.assert_allclose(mapped, np.broadcast_to(single, mapped.shape), rtol=1e-5)

    # jit with the split axis sharded over the mesh: the mean is XLA's all-reduce.
    sharded = jax.device_put(grads, NamedSharding(mesh, P(None, "data")))
    _, (_, auto) = jax.jit(_run_stacked)(sharded)
    np.testing.assert_allclose(auto, single, rtol=1e-5)


def test_monitor_skips_non_finite_steps_and_traces_once():
    monitor = gradient_noise_monitor(PER_SPLIT, decay=DECAY)
    traces = []

    @jax.jit
    def step(g, state):
        traces.append(1)
        return monitor.update(g, state)

    grads, _ = _split_grads(jax.random.split(jax.random.key(6), 2))
    state = monitor.init(W)
    _, state = step(grads[0], state)
    before = gradient_noise_estimate(state)
    bad = grads[1].at[0, 0].set(jnp.nan)
    mean, state = step(bad, state)
    assert len(traces) == 1 and int(state.count) == 1
    assert np.isnan(np.asarray(mean)).any()  # the gradient itself is passed on untouched
    np.testing.assert_allclose(gradient_noise_estimate(state).b_simple, before.b_simple)
    assert np.isnan(gradient_noise_estimate(monitor.init(W)).b_simple)  # no estimate yet
