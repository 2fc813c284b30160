"""The noise probe (how much of a weak mean gradient a step keeps under noise) and fall's
factor for adaptive optimizers whose step shrinks more than Adam's in noise."""

import dataclasses
import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from test_suggest import LRS, result_from_raw, sigmoid_curve

import lrjax
from lrjax.finder import noise_response

PARAMS = {"w": jnp.zeros((30, 16)), "b": jnp.zeros(16)}


# ---- numpy references of the optimizers, from their papers --------------------------------
def ref_adam(g, state, t, b1=0.9, b2=0.999, eps=1e-8):
    """Kingma & Ba 2015, Algorithm 1."""
    m, v = state if state else (np.zeros_like(g), np.zeros_like(g))
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    return (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps), (m, v)


def ref_adamax(g, state, t, b1=0.9, b2=0.999, eps=1e-8):
    """Kingma & Ba 2015, Algorithm 2 (AdaMax: the infinity norm; optax adds eps to u)."""
    m, u = state if state else (np.zeros_like(g), np.zeros_like(g))
    m = b1 * m + (1 - b1) * g
    u = np.maximum(b2 * u, np.abs(g))
    return (m / (1 - b1 ** t)) / (u + eps), (m, u)


def ref_adabelief(g, state, t, b1=0.9, b2=0.999, eps=1e-16):
    """Zhuang et al. 2020, Algorithm 2: s tracks (g - m)**2, the 'belief' in the gradient."""
    m, s = state if state else (np.zeros_like(g), np.zeros_like(g))
    m = b1 * m + (1 - b1) * g
    s = b2 * s + (1 - b2) * (g - m) ** 2 + eps
    return (m / (1 - b1 ** t)) / (np.sqrt(s / (1 - b2 ** t)) + eps), (m, s)


def ref_lion(g, state, t, b1=0.9, b2=0.99):
    """Chen et al. 2023, Program 1 (no weight decay: its 1e-4 per step is negligible here)."""
    m = state if state is not None else np.zeros_like(g)
    update = np.sign(b1 * m + (1 - b1) * g)
    return update, b2 * m + (1 - b2) * g


def ref_sgd(g, state, t):
    return g, state


def ref_noise_response(step, coordinates=8192, seed=0):
    """The docstring's definition in numpy: the last step's mean on a steady gradient of
    1e-3 (100 steps), and the mean step over steps 201-300 on a mean of 1e-4 under noise
    of 1e-3; r = (noisy / 1e-4) / (steady / 1e-3)."""
    rng = np.random.default_rng(seed)

    def run(mean, noise, steps):
        state, out = None, []
        for t in range(1, steps + 1):
            update, state = step(mean + noise * rng.standard_normal(coordinates), state, t)
            out.append(update.mean())
        return np.asarray(out)

    steady = run(1e-3, 0.0, 100)[-1] / 1e-3
    noisy = run(1e-4, 1e-3, 300)[200:].mean() / 1e-4
    return noisy / steady


@pytest.mark.parametrize("ref, factory, expected", [
    (ref_sgd, optax.sgd, 1.0),
    (ref_adam, optax.adam, 1.0),
    (ref_adamax, optax.adamax, 0.37),
    (ref_adabelief, optax.adabelief, 0.22),
    (ref_lion, optax.lion, 5.6),
])
def test_matches_the_numpy_reference_of_the_papers_algorithms(ref, factory, expected):
    """Adam keeps what a linear step keeps (it divides by the gradient's rms, the noise's
    size in both runs); Adamax divides by the largest recent gradient, about 3x the rms
    under noise; AdaBelief by the deviation from the mean, small on a steady gradient;
    Lion's sign does not shrink in the noise."""
    want = ref_noise_response(ref)
    got = noise_response(factory, PARAMS)
    assert got == pytest.approx(want, rel=0.04), (got, want)
    assert got == pytest.approx(expected, rel=0.06)


def test_a_step_linear_in_the_gradient_keeps_exactly_all_of_it():
    """SGD and heavy-ball momentum: the mean step is linear in the mean gradient, so the
    noise averages out and r is 1 up to the noise's sample mean."""
    for factory in (optax.sgd, functools.partial(optax.sgd, momentum=0.9), lrjax.sgdw):
        assert noise_response(factory, PARAMS) == pytest.approx(1.0, abs=0.02)


def test_probe_reads_shapes_only_and_is_deterministic():
    params = {"w": jnp.full((3, 5), jnp.nan), "b": np.ones(5, np.float32)}
    before = params["b"].copy()
    got = noise_response(optax.adamax, params)
    assert got == noise_response(optax.adamax, params)  # a fixed key
    assert got == noise_response(optax.adamax, jax.eval_shape(lambda: {
        "w": jnp.zeros((3, 5)), "b": jnp.zeros(5)}))  # ShapeDtypeStructs are enough
    np.testing.assert_array_equal(params["b"], before)
    # a tiny tree is replicated until about 8k coordinates are averaged
    assert noise_response(optax.adamax, {"w": jnp.zeros(1)}) == pytest.approx(got, rel=0.08)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_half_precision_params_are_probed_in_float32(dtype):
    got = noise_response(optax.adamax, {"w": jnp.zeros((30, 16), dtype)})
    assert got == pytest.approx(noise_response(optax.adamax, {"w": jnp.zeros((30, 16))}))


# Unmeasurable cases and what range_test records: tests/test_optimizer_probe.py, for
# both probes.


# ---- fall's noise factor ------------------------------------------------------------------
def _measured(result, scaling=0.0, response=None):
    return dataclasses.replace(result, settings={**result.settings, "update_scaling": scaling,
                                                 "noise_response": response})


@pytest.fixture
def plain():
    train = sigmoid_curve(0, noise=0.02)
    train[56:] = np.nan
    return result_from_raw(train)


def test_noise_factor_is_r_to_the_minus_half_for_adaptive_steps_that_keep_less(plain):
    adam = _measured(plain, response=1.0)
    base, peak = adam.suggest(), adam.peak_lr()
    assert plain.suggest() == base  # not measured: no factor
    for response in (0.25, 0.36, 0.9):
        shrinking = _measured(plain, response=response)
        assert shrinking.suggest() == pytest.approx(base / response ** 0.5, rel=1e-9)
        assert shrinking.peak_lr() == pytest.approx(peak / response ** 0.5, rel=1e-9)
        assert shrinking.suggest(noise_exponent=0) == pytest.approx(base, rel=1e-9)
        assert shrinking.suggest(noise_exponent=1) == pytest.approx(base / response, rel=1e-9)
        np.testing.assert_allclose(shrinking.suggest(per_curve=True),
                                   adam.suggest(per_curve=True) / response ** 0.5)
    # a step that keeps MORE than Adam's (Lion, LAMB) is not lowered
    assert _measured(plain, response=5.6).suggest() == base
    # never past the ramp's end
    assert _measured(plain, response=1e-12).suggest() == pytest.approx(LRS[-1])
    # the peers' rules are unchanged
    assert _measured(plain, response=0.25).suggest("valley") == adam.suggest("valley")


def test_noise_factor_is_not_applied_to_sgd_like_steps_nor_on_a_linear_ramp(plain):
    sgd = _measured(plain, scaling=1.0, response=None)
    assert _measured(plain, scaling=1.0, response=0.25).suggest() == sgd.suggest()
    lrs = np.linspace(1e-4, 1.0, 60)
    raw = 1 + 2 / (1 + np.exp((lrs - 0.3) / 0.05)) + np.random.default_rng(0).normal(0, 0.01, 60)
    linear = lrjax.RangeTestResult(lrs=lrs, losses=raw, smoothed_losses=raw, diverged_at=None,
                                   settings={"update_scaling": 0.0, "noise_response": 0.25})
    assert linear.suggest() == lrjax.finder.suggest.suggest_fall(lrs, raw)


def test_noise_factor_is_not_applied_to_the_noisy_curve_fallback():
    noisy = result_from_raw(1 + np.random.default_rng(3).normal(0, 0.3, LRS.size))
    with pytest.warns(lrjax.UnreadableCurveWarning):
        fallback = _measured(noisy, response=1.0).suggest()
    with pytest.warns(lrjax.UnreadableCurveWarning):
        got = _measured(noisy, response=0.25).suggest()
    assert got == fallback  # already the larger of valley and slide


@pytest.mark.parametrize("bad, error", [(-0.5, ValueError), (float("nan"), ValueError),
                                        (float("inf"), ValueError), (True, TypeError),
                                        ("0.5", TypeError)])
def test_noise_exponent_is_checked(bad, error, plain):
    result = _measured(plain, response=0.25)
    with pytest.raises(error, match="noise_exponent"):
        result.suggest(noise_exponent=bad)
    with pytest.raises(ValueError, match="takes no noise_exponent"):
        result.suggest("valley", noise_exponent=0.5)


def test_float64_params_without_x64_are_probed_quietly():
    """numpy float64 leaves train as float32 without jax_enable_x64; the probe does the
    same without JAX's truncation warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = noise_response(optax.adamax, {"w": np.zeros((30, 16))})
    assert got == noise_response(optax.adamax, {"w": jnp.zeros((30, 16))})
