"""Tests of lrjax.batch.scaling: noise scale, scaling rules and batch growth for MultiSteps.

References are closed forms written here in numpy (Smith et al. 2018 eq. 1, Goyal et al.
2017, Malladi et al. 2022) and, for the MultiSteps alignment, a plain numpy training loop
that applies the batch-growth plan by hand.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lrjax
from lrjax.batch.scaling import (
    batch_size_for_noise_scale,
    batch_size_plan,
    batch_size_schedule,
    noise_scale,
    rescale_batch_size,
    scale_adam,
    scale_learning_rate,
)

# (learning_rate, dataset_size, batch_size, momentum)
NOISE_CASES = [
    (0.1, 50_000, 128, 0.0),
    (0.1, 50_000, 128, 0.9),
    (3.0, 1_000, 1_000, 0.5),
    (1e-3, 60, 7, 0.99),
]


@pytest.mark.parametrize("lr,n,b,m", NOISE_CASES)
def test_noise_scale_closed_form_and_inverse(lr, n, b, m):
    expected = lr * (n / b - 1.0) / (1.0 - m)  # Smith et al. 2018, eq. 1 with momentum
    np.testing.assert_allclose(noise_scale(lr, n, b, m), expected, rtol=1e-6)
    if expected > 0:
        np.testing.assert_allclose(batch_size_for_noise_scale(expected, lr, n, m), b, rtol=1e-5)
    # Keep the noise scale when the rate doubles and momentum changes: solve eq. 1 by hand.
    new_b = n / (1.0 + expected * (1.0 - 0.8) / (2 * lr))
    np.testing.assert_allclose(rescale_batch_size(b, n, lr, 2 * lr, m, 0.8), new_b, rtol=1e-5)
    if new_b >= 1:  # (from m = 0.99 to 0.8 the answer is below one example)
        np.testing.assert_allclose(
            noise_scale(2 * lr, n, new_b, 0.8), expected, rtol=1e-4, atol=1e-6
        )


def test_noise_scale_traced_under_jit_vmap_and_grad():
    rates = jnp.array([0.01, 0.1, 1.0])
    batches = jnp.array([16.0, 64.0, 256.0])
    got = jax.jit(jax.vmap(lambda lr, b: noise_scale(lr, 1024, b, 0.9)))(rates, batches)
    np.testing.assert_allclose(
        got, [noise_scale(float(r), 1024, float(b), 0.9) for r, b in zip(rates, batches)], rtol=1e-6
    )
    # d g / d lr = (N/B - 1) / (1 - m); d g / d m = g / (1 - m)
    np.testing.assert_allclose(jax.grad(noise_scale)(0.1, 1024.0, 64.0, 0.9), 15.0 / 0.1, rtol=1e-5)
    np.testing.assert_allclose(
        jax.grad(noise_scale, argnums=3)(0.1, 1024.0, 64.0, 0.5), 1.5 / 0.25, rtol=1e-5
    )
    # The momentum form: raising m from 0.9 to 0.98 at a fixed rate needs ~5x the batch.
    np.testing.assert_allclose(rescale_batch_size(100, 10**7, 0.1, 0.1, 0.9, 0.98), 500, rtol=1e-3)


@pytest.mark.parametrize(
    "call,name",
    [
        (lambda: noise_scale(0.1, 100, 0, 0.0), "batch_size"),
        (lambda: noise_scale(0.1, 100, 101, 0.0), "batch_size"),
        (lambda: noise_scale(0.1, 0, 1, 0.0), "dataset_size"),
        (lambda: noise_scale(0.1, 100, 10, 1.0), "momentum"),
        (lambda: noise_scale(0.1, 100, 10, -0.1), "momentum"),
        (lambda: noise_scale(float("nan"), 100, 10), "learning_rate"),
        (lambda: batch_size_for_noise_scale(1.0, 0.0, 100), "learning_rate"),
        (lambda: rescale_batch_size(10, 100, 0.1, 0.2, 0.9, 1.0), "momentum"),
        (lambda: scale_learning_rate(0.1, 0, 32), "batch_size"),
        (lambda: scale_learning_rate(0.1, 64, 0.5), "base_batch_size"),
        (lambda: scale_learning_rate(0.1, 64, 32, rule="cubic"), "rule"),
        (lambda: scale_adam(0.0, 1e-3), "kappa"),
        (lambda: scale_adam(11.0, 1e-3, b1=0.9), "kappa"),
        (lambda: scale_adam(2.0, 1e-3, b2=1.0), "b2"),
        (lambda: batch_size_schedule(optax.constant_schedule(0.1), 0, 64), "base_batch_size"),
        (lambda: batch_size_schedule(optax.constant_schedule(0.1), 64, 32), "max_batch_size"),
        (
            lambda: batch_size_schedule(optax.constant_schedule(0.1), 32, 64, num_steps=0),
            "num_steps",
        ),
        (lambda: batch_size_plan(lambda t: -0.1 + 0.0 * t, 32, 64, 10), "lr_schedule"),
    ],
)
def test_bad_input_names_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


@pytest.mark.parametrize("rule,factor", [("linear", 8.0), ("sqrt", np.sqrt(8.0))])
def test_scale_learning_rate_rules(rule, factor):
    np.testing.assert_allclose(
        scale_learning_rate(0.05, 256, 32, rule=rule), 0.05 * factor, rtol=1e-6
    )
    scaled = scale_learning_rate(optax.cosine_decay_schedule(0.05, 100), 256, 32, rule=rule)
    np.testing.assert_allclose(scaled(50), 0.05 * 0.5 * factor, rtol=1e-5)
    traced = jax.jit(lambda lr, b: scale_learning_rate(lr, b, 32, rule=rule))(0.05, 256.0)
    np.testing.assert_allclose(traced, 0.05 * factor, rtol=1e-6)


def test_scale_adam_square_root_rule():
    kappa, lr, b1, b2, eps = 4.0, 3e-4, 0.9, 0.999, 1e-8
    got = scale_adam(kappa, lr, b1, b2, eps)
    expected = {"learning_rate": lr * 2.0, "b1": 1 - 4 * 0.1, "b2": 1 - 4 * 0.001, "eps": eps / 2.0}
    assert set(got) == set(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-6)
    # kappa = 1 leaves Adam unchanged; kappa < 1 (a smaller batch) is allowed.
    same = scale_adam(1.0, lr, b1, b2, eps)
    np.testing.assert_allclose([same[k] for k in expected], [lr, b1, b2, eps], rtol=1e-6)
    np.testing.assert_allclose(scale_adam(0.25, lr)["b1"], 0.975, rtol=1e-6)
    # Traced kappa passes through unchecked, and the dict builds a working optax.adam.
    hp = jax.jit(lambda k: scale_adam(k, lr))(kappa)
    np.testing.assert_allclose(hp["b2"], 0.996, rtol=1e-6)
    optax.adam(**scale_adam(kappa, lr)).init(jnp.zeros(2))


def test_batch_size_schedule_by_base_step_follows_the_decay():
    base, top = 16, 100  # K = 100 // 16 = 6 micro-batches at most
    decay = lrjax.step_decay(0.1, step_size=10, gamma=0.5)
    lr, acc = batch_size_schedule(decay, base, top)
    t = jnp.arange(60)
    k, rate, original = (
        np.asarray(jax.jit(acc)(t)),
        np.asarray(jax.jit(lr)(t)),
        np.asarray(decay(t)),
    )
    assert k.dtype == np.int32
    # Factor 2**floor(t/10) in whole micro-batches (floor), capped at 6: 1, 2, 4, 6, 6, 6.
    expected_k = np.minimum(np.floor(2.0 ** (np.arange(60) // 10)), 6)
    np.testing.assert_array_equal(k, expected_k)
    # rate / batch equals the original schedule's rate / base batch exactly (in float32)
    np.testing.assert_allclose(rate / (k * base), original / base, rtol=1e-6)
    assert np.all(rate <= 0.1 * (1 + 1e-6))  # never above the rate the user chose
    np.testing.assert_allclose(rate[20:30], 0.1, rtol=1e-6)  # batch grows, rate constant
    np.testing.assert_allclose(rate[30:40], 0.1 * 0.125 * 6, rtol=1e-6)  # capped: rate decays
    np.testing.assert_allclose(rate[50:], 0.1 * 0.5**5 * 6, rtol=1e-6)


def test_batch_size_schedule_smooth_decay_floors_and_handles_zero():
    decay = optax.cosine_decay_schedule(1.0, 100)  # reaches 0 at t = 100
    lr, acc = batch_size_schedule(decay, 8, 64)
    t = jnp.arange(0, 120)
    k, rate, original = (
        np.asarray(acc(t)),
        np.asarray(lr(t)),
        np.asarray(decay(t)).astype(np.float64),
    )
    with np.errstate(divide="ignore"):
        factor = np.where(original > 0, 1.0 / original, np.inf)
    np.testing.assert_array_equal(k, np.clip(np.floor(factor * (1 + 1e-5)), 1, 8))
    assert np.all(np.isfinite(rate)) and np.all(rate <= 1.0 + 1e-6)
    np.testing.assert_allclose(rate, original * k, rtol=1e-5, atol=1e-7)
    assert k[-1] == 8 and rate[-1] == 0.0
    # Exact boundaries: 0.1 / 0.01 must count as a factor of 10 despite float32 rounding.
    _, acc10 = batch_size_schedule(lrjax.step_decay(0.1, 5, gamma=0.1), 1, 1000)
    assert [int(acc10(t)) for t in (0, 5, 10, 15)] == [1, 10, 100, 1000]


def test_batch_size_schedule_with_a_traced_rate():
    # The base-step form is traceable: vmap over the initial rate of the original schedule.
    def at_25(lr0):
        lr, acc = batch_size_schedule(lrjax.step_decay(lr0, 10), 16, 128)  # gamma 0.1, K = 8
        return lr(25), acc(25)

    rates, ks = jax.jit(jax.vmap(at_25))(jnp.array([0.1, 0.5, 2.0]))
    np.testing.assert_array_equal(ks, [8, 8, 8])  # factor 100, capped at 8
    np.testing.assert_allclose(rates, np.array([0.1, 0.5, 2.0]) * 0.01 * 8, rtol=1e-5)


def test_batch_size_schedule_traces_once():
    traces = []

    @jax.jit
    def evaluate(count):
        traces.append(1)
        return lr(count), acc(count)

    lr, acc = batch_size_schedule(lrjax.step_decay(0.1, 10), 32, 1024)
    for count in (0, 15, 200):
        evaluate(jnp.int32(count))
    assert len(traces) == 1


def test_batch_size_plan_closed_form():
    # Step decay by 1/2 every 16 base steps, K = 8: phases of k = 1, 2, 4, 8 micro-batches,
    # 16 / k updates each (k divides 16): 16 + 8 + 4 + 2 = 30 updates over 64 base steps.
    plan = batch_size_plan(lrjax.step_decay(0.2, 16, 0.5), 10, 80, num_steps=64)
    ks = np.concatenate([np.full(16 // k, k) for k in (1, 2, 4, 8)])
    np.testing.assert_array_equal(plan.accumulation, ks)
    np.testing.assert_array_equal(plan.micro_step, np.concatenate([[0], np.cumsum(ks)[:-1]]))
    np.testing.assert_allclose(plan.learning_rate, 0.2, rtol=1e-6)
    assert plan.num_updates == 30 and plan.num_steps == 64
    # Beyond the cap the rate decays: with K = 2, phases 3 and 4 keep k = 2 at 0.2 * 2 / 4, / 8.
    capped = batch_size_plan(lrjax.step_decay(0.2, 16, 0.5), 10, 29, num_steps=64)
    np.testing.assert_array_equal(
        capped.accumulation, np.concatenate([np.ones(16), np.full(24, 2)])
    )
    np.testing.assert_allclose(capped.learning_rate[-8:], 0.2 * 2 / 8, rtol=1e-6)


def _numpy_plan_training(plan, w0, xs, ys, momentum):
    """Reference: SGD with momentum, update u = mean gradient of micro-batches s_u..s_u+k_u-1."""
    w, trace = w0.astype(np.float64), np.zeros_like(w0, np.float64)
    for start, k, rate in zip(plan.micro_step, plan.accumulation, plan.learning_rate):
        grads = [xs[s].T @ (xs[s] @ w - ys[s]) / len(ys[s]) for s in range(start, start + k)]
        trace = momentum * trace + np.mean(grads, axis=0)  # optax.trace: raw gradients
        w = w - float(rate) * trace
    return w


def test_multisteps_alignment_end_to_end():
    num_steps, base = 50, 4  # the last update gets the 2 micro-batches left
    decay = lrjax.multistep_decay(0.05, milestones=[12, 30], gamma=0.25)
    plan = batch_size_plan(decay, base, 64, num_steps=num_steps)
    np.testing.assert_array_equal(plan.accumulation, [1] * 12 + [4] * 5 + [16, 2])
    total = int(plan.accumulation.sum())
    assert total == num_steps and plan.micro_step[-1] + plan.accumulation[-1] == num_steps
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(total, base, 3)).astype(np.float32)
    ys = (xs @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=(total, base))).astype(np.float32)
    w0 = np.zeros(3, np.float32)

    def train(lr, acc):
        opt = optax.MultiSteps(optax.sgd(lr, momentum=0.9), every_k_schedule=acc)

        @jax.jit
        def run(w, data):
            def micro_step(carry, batch):
                w, state = carry
                x, y = batch
                grad = jax.grad(lambda w: 0.5 * jnp.mean((x @ w - y) ** 2))(w)
                updates, state = opt.update(grad, state, w)
                return (optax.apply_updates(w, updates), state), None

            return jax.lax.scan(micro_step, (w, opt.init(w)), data)[0]

        return run(jnp.asarray(w0), (jnp.asarray(xs), jnp.asarray(ys)))

    w, state = train(*batch_size_schedule(decay, base, 64, num_steps=num_steps))
    expected = _numpy_plan_training(plan, w0, xs, ys, momentum=0.9)
    np.testing.assert_allclose(w, expected, rtol=2e-5, atol=1e-6)
    # MultiSteps counted updates, not micro-batches, and so did the inner optimizer.
    assert int(state.gradient_step) == plan.num_updates < num_steps
    assert int(state.mini_step) == 0
    # The base-step schedules (no num_steps) are not for MultiSteps: they stretch the decay.
    w_stretched, _ = train(*batch_size_schedule(decay, base, 64))
    assert not np.allclose(w_stretched, expected, rtol=1e-3)
