"""lrjax.wsd and lrjax.wsd_cooldown: warmup-stable-decay and the cooldown of a running training.

References, independent of each other and of lrjax:

* the peers' numbers, recorded from Hugging Face ``get_wsd_schedule`` (transformers
  5.25.0) and timm's ``WSDLRScheduler`` (timm 1.0.31, its ``rsqrt`` stable phase too) by
  tests/fixtures/record_schedule_peers.py into tests/fixtures/schedule_peers.json, always
  checked; re-recorded live and compared when torch, transformers and timm are installed;
* a float64 numpy transcription of the paper's formula (Hägele et al. 2024: stable at the
  peak, then ``peak - (peak - min) * sqrt(s)`` over the cooldown), evaluated at and around
  every phase boundary, the lrjax schedule jitted and vmapped.
"""

from __future__ import annotations

import importlib.util
import json
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lrjax

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
PEERS = json.loads((FIXTURES / "schedule_peers.json").read_text())
MAX = 2**31 - 1


def _recorder():
    spec = importlib.util.spec_from_file_location("record_schedule_peers",
                                                  FIXTURES / "record_schedule_peers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(call: dict):
    """The lrjax schedule a fixture case names (arguments that are calls built first)."""
    fn = {"wsd": lrjax.wsd, "wsd_cooldown": lrjax.wsd_cooldown, "inverse_sqrt": lrjax.inverse_sqrt}
    args = [build(a) if isinstance(a, dict) else a for a in call["args"]]
    return fn[call["fn"]](*args, **call["kwargs"])


WSD_CASES = {name: case for name, case in PEERS["cases"].items()
             if case["peer"] != "transformers.get_inverse_sqrt_schedule"}
# timm lifts its whole post-warmup rsqrt phase to lr_min; lrjax's cooldown leaves the
# running schedule as it is before start_step and lifts it in the cooldown only.
FLOOR_CASE = "timm_rsqrt_below_floor"


# --------------------------------------------------------------------------------------
# The peers
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(WSD_CASES))
def test_equals_recorded_peer(name):
    case = WSD_CASES[name]
    counts = np.asarray(case["counts"])
    got = np.asarray(jax.jit(build(case["lrjax"]))(counts))
    ref = np.asarray(case["values"])
    if name == FLOOR_CASE:
        start = case["lrjax"]["args"][1]
        base = np.asarray(build(case["lrjax"]["args"][0])(counts))
        np.testing.assert_allclose(got[counts < start], base[counts < start], rtol=0)
        assert np.all(ref[(counts >= 40) & (counts < start)] == 0.3)  # timm's lifted stable phase
        got, ref = got[counts >= start], ref[counts >= start]
    np.testing.assert_allclose(got, ref, rtol=3e-7, atol=1e-9)


def _peers_installed() -> bool:
    return all(importlib.util.find_spec(name) for name in ("torch", "transformers", "timm"))


@pytest.mark.skipif(not _peers_installed(), reason="torch, transformers and timm not installed")
def test_recorded_numbers_are_what_the_peers_give_now():
    fresh = _recorder().record()
    for name, case in PEERS["cases"].items():
        assert fresh[name]["counts"] == case["counts"]
        np.testing.assert_allclose(fresh[name]["values"], case["values"], rtol=1e-12, err_msg=name)


# --------------------------------------------------------------------------------------
# The paper's formula, float64 numpy
# --------------------------------------------------------------------------------------
def paper_wsd(t, peak, total, warmup, decay_steps, shape, low, init, warmup_shape):
    """Hägele et al.'s WSD, written from the paper (cooldown to ``low`` over the last steps)."""
    t = np.asarray(t, np.float64)
    start = total - decay_steps
    s = np.clip((t - start) / decay_steps, 0.0, 1.0)
    cool = {"1-sqrt": 1.0 - np.sqrt(s), "linear": 1.0 - s, "cosine": 0.5 * (1.0 + np.cos(np.pi * s))}[shape]
    value = low + (peak - low) * cool
    if warmup:
        x = np.clip(t / warmup, 0.0, 1.0)
        rise = {"linear": x, "cosine": 0.5 * (1.0 - np.cos(np.pi * x)),
                "1-sqrt": 1.0 - np.sqrt(1.0 - x)}[warmup_shape]
        value = np.where(t < warmup, init + (peak - init) * rise, value)
    return value


CONFIGS = [  # peak, total, warmup, decay_steps, shape, min, init, warmup shape
    (3e-4, 10_000, 500, 2_000, "1-sqrt", 0.0, 0.0, "linear"),
    (0.37, 1_003, 17, 211, "linear", 0.013, 0.002, "cosine"),
    (1.9, 777, 0, 777, "cosine", 0.1, 0.0, "linear"),
    (0.05, 2**31 - 1, 1_000, 400_000_000, "1-sqrt", 1e-5, 1e-6, "1-sqrt"),
    (0.7, 5, 1, 1, "1-sqrt", 0.0, 0.0, "linear"),
]


def _boundary_counts(total, warmup, decay_steps):
    start = total - decay_steps
    points = [0, warmup, start, total, (start + total) // 2, warmup // 2]
    counts = {min(max(p + d, 0), MAX) for p in points for d in (-2, -1, 0, 1, 2)}
    return np.array(sorted(counts | {MAX}), np.int64)


@pytest.mark.parametrize("config", CONFIGS)
def test_equals_paper_formula_at_every_boundary_jitted_and_vmapped(config):
    peak, total, warmup, decay_steps, shape, low, init, warmup_shape = config
    schedule = lrjax.wsd(peak, total, warmup_steps=warmup, decay_steps=decay_steps, decay=shape,
                         min_value=low, init_value=init, warmup=warmup_shape)
    counts = _boundary_counts(total, warmup, decay_steps)
    ref = paper_wsd(counts, *config)
    on_array = np.asarray(jax.jit(schedule)(counts.astype(np.int32)))
    mapped = np.asarray(jax.jit(jax.vmap(schedule))(counts.astype(np.int32)))
    for got in (on_array, mapped):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, ref, rtol=2e-6, atol=1e-12 + 2e-7 * peak)
        # Knots are exact: the warmup's start, the peak through the stable phase and at the
        # cooldown's first step, the minimum from total_steps on.
        start = total - decay_steps
        exact = (counts == 0) | ((counts >= warmup) & (counts <= start)) | (counts >= total)
        np.testing.assert_array_equal(got[exact], np.float32(ref[exact]))


def test_defaults_are_the_papers_twenty_percent_one_minus_sqrt():
    schedule = lrjax.wsd(1.0, 100)
    values = np.asarray(schedule(np.arange(102)))
    assert np.all(values[:80] == 1.0)  # no warmup, stable until the last 20 steps
    np.testing.assert_allclose(values[80:101], 1.0 - np.sqrt(np.arange(21) / 20), rtol=1e-6, atol=1e-7)
    assert values[101] == 0.0


@pytest.mark.parametrize("fraction, total, steps", [
    (0.2, 100, 20), (0.25, 10, 3), (0.1, 7, 1), (0.01, 10, 1), (1.0, 9, 9), (0.3, 1000, 300)])
def test_decay_fraction_rounds_to_whole_steps(fraction, total, steps):
    by_fraction = lrjax.wsd(1.0, total, decay_fraction=fraction)
    by_steps = lrjax.wsd(1.0, total, decay_steps=steps)
    counts = np.arange(total + 2)
    np.testing.assert_array_equal(by_fraction(counts), by_steps(counts))


# --------------------------------------------------------------------------------------
# The cooldown of a running training
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", ["1-sqrt", "linear", "cosine"])
def test_wsd_is_a_cooldown_of_a_warmed_up_constant(shape):
    total, warmup, decay_steps = 300, 30, 71
    whole = lrjax.wsd(0.4, total, warmup_steps=warmup, decay_steps=decay_steps, decay=shape, min_value=0.01)
    running = lrjax.warmup(lrjax.constant(0.4), warmup)
    branch = lrjax.wsd_cooldown(running, total - decay_steps, decay_steps, decay=shape, min_value=0.01)
    counts = np.arange(total + 5)
    np.testing.assert_allclose(whole(counts), branch(counts), rtol=1e-6, atol=1e-9)
    constant = lrjax.wsd_cooldown(0.4, total - decay_steps, decay_steps, decay=shape, min_value=0.01)
    tail = counts >= warmup
    np.testing.assert_allclose(np.asarray(whole(counts))[tail], np.asarray(constant(counts))[tail],
                               rtol=3e-7)  # one program or another: an ulp apart at most


def test_cooldown_leaves_the_running_schedule_before_start_and_scales_it_after():
    running = lrjax.inverse_sqrt(1e-3, 100)
    start, steps = 5_000, 1_000
    cooled = lrjax.wsd_cooldown(running, start, steps, decay="linear")
    counts = np.arange(0, 7_000, 7)
    base = np.asarray(running(counts), np.float64)
    got = np.asarray(cooled(counts))
    np.testing.assert_array_equal(got[counts < start], np.float32(base[counts < start]))
    s = np.clip((counts - start) / steps, 0, 1)
    np.testing.assert_allclose(got[counts >= start], (base * (1 - s))[counts >= start], rtol=2e-6, atol=1e-12)
    assert np.all(got[counts >= start + steps] == 0.0)


def test_cooldown_from_any_checkpoint_of_one_run():
    """Many cooldowns from one constant run: every branch starts at the running rate."""
    for start in (0, 1, 999, 123_456, MAX - 10):
        schedule = lrjax.wsd_cooldown(2e-3, start, 10)
        values = np.asarray(schedule(np.array([max(start - 1, 0), start, start + 5, start + 10], np.int64)))
        assert values[0] == values[1] == np.float32(2e-3)
        np.testing.assert_allclose(values[2], 2e-3 * (1 - math.sqrt(0.5)), rtol=1e-6)
        assert values[3] == 0.0


def test_cooldown_inside_an_optimizer_follows_the_count():
    """A restored optimizer state keeps its count: the cooldown branch picks it up there."""
    params = {"w": jnp.ones(3)}
    running = optax.inject_hyperparams(optax.sgd)(learning_rate=lrjax.constant(0.1))
    state = running.init(params)
    for _ in range(7):
        _, state = running.update({"w": jnp.zeros(3)}, state, params)
    branch = optax.inject_hyperparams(optax.sgd)(learning_rate=lrjax.wsd_cooldown(0.1, 7, 4))
    lrs = []
    for _ in range(5):
        _, state = branch.update({"w": jnp.zeros(3)}, state, params)
        lrs.append(float(state.hyperparams["learning_rate"]))
    np.testing.assert_allclose(lrs, [0.1 * (1 - math.sqrt(k / 4)) for k in range(5)], rtol=1e-6, atol=1e-9)


# --------------------------------------------------------------------------------------
# Counts and hyperparameters as data
# --------------------------------------------------------------------------------------
def test_counts_of_every_kind():
    schedule = lrjax.wsd(0.5, 100, warmup_steps=10, decay_steps=20, min_value=0.05)
    assert schedule(-5) == schedule(0) == 0.0
    for huge in (MAX, 2**40, np.int64(2**40), np.uint64(2**63)):
        assert float(schedule(huge)) == np.float32(0.05)
    np.testing.assert_allclose(schedule(np.float32(85.0)), schedule(85), rtol=0)
    assert np.isnan(schedule(np.float32(np.nan)))
    assert schedule(jnp.arange(12).reshape(3, 4)).shape == (3, 4)
    assert schedule(3).dtype == jnp.float32


def test_traced_hyperparameters_vmap_grad_jit():
    def value(peak, low, init, t):
        return lrjax.wsd(peak, 100, warmup_steps=10, decay_steps=40, min_value=low, init_value=init)(t)

    peaks = jnp.array([0.1, 0.2, 0.3])
    lows = jnp.array([0.0, 0.01, 0.02])
    mapped = jax.jit(jax.vmap(value, in_axes=(0, 0, None, None)))(peaks, lows, 0.0, 80)
    concrete = [float(lrjax.wsd(float(p), 100, warmup_steps=10, decay_steps=40, min_value=float(m))(80))
                for p, m in zip(peaks, lows)]
    np.testing.assert_allclose(mapped, concrete, rtol=1e-6)
    # d value / d peak in the cooldown is 1 - sqrt(s), d / d min is sqrt(s); s = 20/40.
    g_peak, g_low, g_init = jax.grad(value, argnums=(0, 1, 2))(0.2, 0.01, 0.0, 80)
    np.testing.assert_allclose([g_peak, g_low, g_init], [1 - math.sqrt(0.5), math.sqrt(0.5), 0.0], rtol=1e-6)
    g_peak, g_low, g_init = jax.grad(value, argnums=(0, 1, 2))(0.2, 0.01, 0.003, 4)
    np.testing.assert_allclose([g_peak, g_low, g_init], [0.4, 0.0, 0.6], rtol=1e-6)
    for t in (0, 10, 60, 100, 200, MAX):  # no NaN gradient at any knot
        grads = jax.grad(value, argnums=(0, 1, 2))(0.2, 0.01, 0.003, t)
        assert all(np.isfinite(g) for g in grads)
    cooled = jax.grad(lambda p, t: lrjax.wsd_cooldown(p, 50, 10)(t))
    assert float(cooled(0.3, 50)) == 1.0 and float(cooled(0.3, 60)) == 0.0


def test_traced_peak_in_a_search_trial():
    """optimizer_fn builds wsd from the trial's traced peak: one compile for every trial."""
    x = jnp.linspace(-1.0, 1.0, 32)
    data = {"x": jnp.stack([x] * 4), "y": jnp.stack([2.0 * x] * 4)}

    def loss_fn(params, batch):
        return jnp.mean((params["w"] * batch["x"] - batch["y"]) ** 2)

    train_fn = lrjax.make_train_fn(
        loss_fn, lambda key: {"w": jnp.zeros(())},
        lambda h: optax.sgd(lrjax.wsd(h["lr"], 40, warmup_steps=4)), data, num_steps=40)
    result = lrjax.search(train_fn, {"lr": lrjax.choice([0.05, 0.5])}, num_trials=2, method="grid")
    by_lr = {round(t["params"]["lr"], 3): t["value"] for t in result.trials}
    assert by_lr[0.5] < by_lr[0.05] < 4.0


# --------------------------------------------------------------------------------------
# Static arguments
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    (dict(total_steps=0), "total_steps"),
    (dict(total_steps=10.5), "total_steps"),
    (dict(warmup_steps=-1), "warmup_steps"),
    (dict(decay_steps=0), "decay_steps"),
    (dict(decay_steps=101), "decay_steps"),
    (dict(decay_fraction=0.0), "decay_fraction"),
    (dict(decay_fraction=1.5), "decay_fraction"),
    (dict(decay_steps=10, decay_fraction=0.1), "decay_steps or decay_fraction"),
    (dict(warmup_steps=90, decay_steps=20), "warmup_steps \\+ decay_steps"),
    (dict(decay="sqrt"), "decay must be one of"),
    (dict(warmup="exponential"), "warmup must be one of"),
    (dict(peak_value=-1.0), "peak_value"),
    (dict(peak_value=float("nan")), "peak_value"),
    (dict(min_value=2.0), "min_value must be <= peak_value"),
    (dict(min_value=-0.1), "min_value"),
    (dict(init_value=-0.1), "init_value"),
])
def test_wsd_refuses_bad_static_arguments(kwargs, message):
    arguments = dict(peak_value=1.0, total_steps=100) | kwargs
    with pytest.raises(ValueError, match=message):
        lrjax.wsd(arguments.pop("peak_value"), arguments.pop("total_steps"), **arguments)


def test_steps_must_not_be_traced():
    with pytest.raises(TypeError, match="total_steps"):
        jax.jit(lambda n: lrjax.wsd(1.0, n)(0))(100)


@pytest.mark.parametrize("args, kwargs, message", [
    ((1.0, -1, 10), {}, "start_step"),
    ((1.0, 0, 0), {}, "decay_steps"),
    ((1.0, MAX - 5, 10), {}, "decay_steps"),
    ((-1.0, 0, 10), {}, "schedule_or_value"),
    ((1.0, 0, 10), dict(min_value=2.0), "min_value must be <= schedule_or_value"),
    ((1.0, 0, 10), dict(decay="exp"), "decay must be one of"),
])
def test_wsd_cooldown_refuses_bad_static_arguments(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        lrjax.wsd_cooldown(*args, **kwargs)


def test_public_paths():
    assert lrjax.schedules.wsd is lrjax.wsd
    assert lrjax.schedules.wsd_cooldown is lrjax.wsd_cooldown
