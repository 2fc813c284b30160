"""Porting from PyTorch: per_epoch, linear_factor, chain_schedules, with_cycled_momentum,
and the porting table's optax mappings (docs/tutorials/porting_pytorch.md) (ReduceLROnPlateau, SequentialLR, ConstantLR).

References: numbers recorded from PyTorch 2.13.0 (tests/fixtures/torch_porting.json, the
recording code is in tests/test_torch_parity.py, which also compares live when torch is
installed) and numpy transcriptions of PyTorch's formulas written here.
"""

import json
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lrjax

TORCH = json.loads((pathlib.Path(__file__).parent / "fixtures" / "torch_porting.json").read_text())
GRADS = np.random.default_rng(0).normal(size=(20, 2))  # the gradients of the recorded runs


def _values(schedule, n):
    return np.asarray(jax.jit(jax.vmap(schedule))(jnp.arange(n)))


# ------------------------------------------------------------------------------------
# Schedules
# ------------------------------------------------------------------------------------
def np_linear_lr(t, base, start, end, total):
    """PyTorch LinearLR's closed form."""
    return base * (start + (end - start) * min(t, total) / total)


@pytest.mark.parametrize(
    "key, args",
    [("linear", (0.1, 0.25, 1.0, 4)), ("linear_down", (0.1, 1.0, 0.1, 5))],
)
def test_linear_factor_matches_pytorch_linear_lr(key, args):
    expected = TORCH[key]
    np.testing.assert_allclose([np_linear_lr(t, *args) for t in range(len(expected))], expected, rtol=1e-12)
    np.testing.assert_allclose(_values(lrjax.linear_factor(*args), len(expected)), expected, rtol=1e-6)
    # The end factor is hit exactly (base * end_factor in float32) and held; the count clamps.
    end = np.float32(args[0]) * np.float32(args[2])
    assert float(lrjax.linear_factor(*args)(args[3])) == end
    assert float(lrjax.linear_factor(*args)(2**31 - 1)) == end


def test_chain_schedules_matches_pytorch_chained_scheduler():
    chained = lrjax.chain_schedules(
        optax.join_schedules([optax.constant_schedule(0.5), optax.constant_schedule(1.0)], [3]),
        lrjax.exponential_decay(0.1, 0.9),
    )
    np.testing.assert_allclose(_values(chained, 8), TORCH["chained_constant_exp"], rtol=1e-6)
    chained = lrjax.chain_schedules(
        lrjax.linear_factor(1.0, start_factor=0.2, total_iters=4), lrjax.step_decay(0.1, 3, 0.5)
    )
    np.testing.assert_allclose(_values(chained, 10), TORCH["chained_linear_step"], rtol=1e-6)
    assert float(lrjax.chain_schedules(0.5, lrjax.constant(0.2))(7)) == np.float32(0.1)


def test_sequential_lr_is_optax_join_schedules():
    """Porting table: SequentialLR(schedulers, milestones) == optax.join_schedules(schedules, milestones)."""
    joined = optax.join_schedules(
        [lrjax.linear_factor(0.1, 0.2, 1.0, 3), lrjax.exponential_decay(0.1, 0.8)], [3]
    )
    np.testing.assert_allclose(_values(joined, 8), TORCH["sequential_linear_exp"], rtol=1e-6)


def test_constant_lr_is_a_join_of_constants():
    """Porting table: ConstantLR(factor=f, total_iters=T) == join_schedules of two constants."""
    joined = optax.join_schedules(
        [optax.constant_schedule(0.1 * 0.25), optax.constant_schedule(0.1)], [3]
    )
    np.testing.assert_allclose(_values(joined, 6), TORCH["constant"], rtol=1e-6)


def test_per_epoch_sgdr_matches_pytorch_stepped_once_per_epoch():
    """CosineAnnealingWarmRestarts(T_0=2, T_mult=2) stepped per epoch of 4 batches."""
    stepped = lrjax.per_epoch(lrjax.sgdr(0.1, period=2, period_mult=2.0), steps_per_epoch=4)
    np.testing.assert_allclose(_values(stepped, 56), TORCH["sgdr_per_epoch"], rtol=1e-5, atol=1e-8)
    # Constant inside an epoch; the smooth form differs there.
    smooth = _values(lrjax.sgdr(0.1, period=8, period_mult=2.0), 56)
    assert np.max(np.abs(smooth - np.asarray(TORCH["sgdr_per_epoch"]))) > 0.01
    # Counts beyond int32 and float counts clamp/floor like every schedule.
    assert float(stepped(jnp.float32(5.7))) == float(stepped(4))


def test_per_epoch_is_exact_at_epoch_boundaries_and_compiles_once():
    sched = lrjax.per_epoch(lrjax.multistep_decay(1.0, [2, 5], 0.5), steps_per_epoch=390)
    traces = []

    @jax.jit
    def value(t):
        traces.append(1)
        return sched(t)

    counts = [0, 389, 390, 779, 780, 781, 1949, 1950, 2**31 - 1]
    expected = [1, 1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25]
    np.testing.assert_allclose([float(value(jnp.int32(t))) for t in counts], expected)
    assert len(traces) == 1


BAD = [
    (lambda: lrjax.per_epoch(lrjax.constant(1.0), 0), ValueError, "steps_per_epoch"),
    (lambda: lrjax.per_epoch(0.1, 10), TypeError, "schedule"),
    (lambda: lrjax.linear_factor(0.1, start_factor=0.0), ValueError, "start_factor"),
    (lambda: lrjax.linear_factor(0.1, end_factor=1.5), ValueError, "end_factor"),
    (lambda: lrjax.linear_factor(float("inf")), ValueError, "base_value"),
    (lambda: lrjax.linear_factor(0.1, total_iters=0), ValueError, "total_iters"),
    (lambda: lrjax.chain_schedules(), ValueError, "at least one"),
    (lambda: lrjax.chain_schedules(lrjax.constant(1.0), None), TypeError, "schedules"),
    (lambda: lrjax.with_cycled_momentum(optax.sgd, None, 0.9), TypeError, "learning_rate"),
    (lambda: lrjax.with_cycled_momentum(optax.sgd, 0.1, float("nan")), ValueError, "momentum"),
    (lambda: lrjax.with_cycled_momentum(optax.rmsprop, 0.1, 0.9, momentum_name="b1"), ValueError, "b1"),
    (lambda: lrjax.with_cycled_momentum(optax.adagrad, 0.1, 0.9), ValueError, "momentum_name"),
]  # fmt: skip


@pytest.mark.parametrize("make, error, match", BAD, ids=[f"{i}-{b[2]}" for i, b in enumerate(BAD)])
def test_bad_arguments_raise(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_traced_values_in_porting_schedules():
    """linear_factor's values and a chained schedule under jit(vmap) == concrete calls."""
    starts = jnp.asarray([0.1, 0.5, 1.0])
    batched = jax.jit(jax.vmap(lambda s: lrjax.linear_factor(0.2, s, 1.0, 4)(jnp.arange(6))))(starts)
    concrete = np.stack([_values(lrjax.linear_factor(0.2, float(s), 1.0, 4), 6) for s in starts])
    np.testing.assert_allclose(batched, concrete, rtol=1e-6)
    grad = jax.grad(lambda b: lrjax.linear_factor(b, 0.25, 1.0, 4)(2))(0.1)
    np.testing.assert_allclose(grad, 0.625, rtol=1e-6)  # d/db of b * (0.25 + 0.75 * 2 / 4)


# ------------------------------------------------------------------------------------
# Momentum cycling
# ------------------------------------------------------------------------------------
def np_one_cycle_momentum(t, total, pct=0.3, base=0.85, top=0.95):
    """PyTorch OneCycleLR's momentum (cos anneal, two phases)."""
    up_end = pct * total - 1
    if t <= up_end:
        start, end, frac = top, base, t / up_end
    else:
        start, end, frac = base, top, (t - up_end) / (total - 1 - up_end)
    return end + (start - end) / 2 * (math.cos(math.pi * frac) + 1)


def _trajectory(opt, key):
    params, state, trajectory, hyper = jnp.asarray([1.0, -2.0]), None, [], []
    state = opt.init(params)
    update = jax.jit(opt.update)
    for g in GRADS:
        updates, state = update(jnp.asarray(g), state, params)
        params = optax.apply_updates(params, updates)
        trajectory.append(np.asarray(params))
        hyper.append((float(state.hyperparams["learning_rate"]), float(state.hyperparams[key])))
    return np.asarray(trajectory), np.asarray(hyper)


CYCLED = {
    "onecycle_sgd": (lambda: lrjax.with_cycled_momentum(optax.sgd, lrjax.one_cycle(0.1, 20),
                                                        lrjax.one_cycle_momentum(20)), "momentum"),
    "onecycle_adam": (lambda: lrjax.with_cycled_momentum(optax.adam, lrjax.one_cycle(0.1, 20),
                                                         lrjax.one_cycle_momentum(20)), "b1"),
    "cyclic_sgd": (lambda: lrjax.with_cycled_momentum(optax.sgd, lrjax.cyclic(0.01, 0.1, 4, 6),
                                                      lrjax.cyclic_momentum(0.8, 0.9, 4, 6)), "momentum"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CYCLED))
def test_cycled_momentum_matches_pytorch(x64, name):
    """lr and momentum/b1 at every step, and the parameters after it, == PyTorch's run."""
    make, key = CYCLED[name]
    recorded = TORCH[name]
    torch_key = "betas" if key == "b1" else "momentum"
    trajectory, hyper = _trajectory(make(), key)
    np.testing.assert_allclose(hyper[:, 0], recorded[0]["lr"], rtol=1e-6)
    np.testing.assert_allclose(hyper[:, 1], recorded[0][torch_key], rtol=1e-6)
    np.testing.assert_allclose(trajectory, recorded[1], rtol=1e-5, atol=1e-7)


def test_one_cycle_momentum_fixture_is_pytorch_formula():
    expected = [np_one_cycle_momentum(t, 20) for t in range(20)]
    np.testing.assert_allclose(TORCH["onecycle_sgd"][0]["momentum"], expected, rtol=1e-12)
    np.testing.assert_allclose(TORCH["onecycle_adam"][0]["betas"], expected, rtol=1e-12)


def test_with_cycled_momentum_finds_the_argument_and_passes_kwargs():
    params = {"w": jnp.ones(2)}
    for factory, name in ((lrjax.sgdw, "momentum"), (lrjax.adamw, "b1"), (optax.adamw, "b1")):
        opt = lrjax.with_cycled_momentum(factory, 0.1, lrjax.cyclic_momentum(0.8, 0.9, 2), weight_decay=0.0)
        state = opt.init(params)
        _, state = opt.update(params, state, params)
        assert float(state.hyperparams[name]) == pytest.approx(0.9)  # read at count 0
        assert float(state.hyperparams["weight_decay"]) == 0.0
    opt = lrjax.with_cycled_momentum(optax.rmsprop, 0.1, 0.5, momentum_name="momentum", nesterov=True)
    assert float(opt.init(params).hyperparams["momentum"]) == 0.5


# ------------------------------------------------------------------------------------
# ReduceLROnPlateau: optax.contrib.reduce_on_plateau, as the porting table documents
# ------------------------------------------------------------------------------------
def np_reduce_lr_on_plateau(metrics, lr, factor, patience, threshold, cooldown):
    """PyTorch ReduceLROnPlateau (mode min, threshold_mode rel): lr after each step(metric)."""
    best, bad, cool, out = math.inf, 0, 0, []
    for m in metrics:
        if m < best * (1 - threshold):
            best, bad = m, 0
        else:
            bad += 1
        if cool > 0:
            cool, bad = cool - 1, 0
        if bad > patience:
            lr, cool, bad = lr * factor, cooldown, 0
        out.append(lr)
    return out


def test_reduce_on_plateau_mapping():
    """PyTorch ReduceLROnPlateau(factor, patience=p, threshold, cooldown) ==
    optax.contrib.reduce_on_plateau(factor, patience=p + 1, rtol=threshold, cooldown): the
    scale after the update fed an epoch's metric is PyTorch's lr after step(metric) / lr."""
    metrics = [1.0, 0.9, 0.95, 0.92, 0.91, 0.91, 0.93, 0.8, 0.85, 0.86, 0.87, 0.88, 0.9, 0.7]
    expected = np_reduce_lr_on_plateau(metrics, 0.1, 0.5, 2, 1e-4, 1)
    np.testing.assert_allclose(expected, TORCH["plateau"][1:], rtol=1e-12)
    opt = optax.chain(
        optax.sgd(0.1),
        optax.contrib.reduce_on_plateau(factor=0.5, patience=3, rtol=1e-4, atol=0.0, cooldown=1),
    )
    params = {"w": jnp.ones(2)}
    state = opt.init(params)
    update = jax.jit(opt.update)
    scales = []
    for m in metrics:
        _, state = update(params, state, params, value=jnp.asarray(m))
        scales.append(0.1 * float(state[1].scale))
    np.testing.assert_allclose(scales, expected, rtol=1e-6)
