"""The optimizer probe (how the step grows with the gradient) and fall's SGD factor."""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from test_suggest import LRS, ref_fall, result_from_raw, sigmoid_curve

import lrjax
from lrjax.finder.suggest.curve import recorded_curve
from lrjax.finder import noise_response, update_scaling

PARAMS = {"w": jnp.zeros((30, 16)), "b": jnp.zeros(16)}


def ref_first_steps(kind, g, steps=6, b1=0.9, b2=0.999, eps=1e-8, momentum=0.9):
    """numpy reference of the 6th update from a fresh state, the same g fed every step:
    SGD (Robbins & Monro), heavy ball (optax.trace: m = g + momentum m), Adam (Kingma &
    Ba 2015, Algorithm 1)."""
    m, v = np.zeros_like(g), np.zeros_like(g)
    for t in range(1, steps + 1):
        if kind == "sgd":
            u = g
        elif kind == "momentum":
            m = g + momentum * m
            u = m
        else:
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            u = (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    return u


@pytest.mark.parametrize("kind, factory", [
    ("sgd", optax.sgd), ("momentum", functools.partial(optax.sgd, momentum=0.9)),
    ("adam", optax.adam)])
def test_exponent_matches_the_numpy_reference(kind, factory):
    """The exponent is log2 of |u(2g) - u(0)| / |u(g) - u(0)| (u(0) = 0 for these three),
    computed here on the numpy reference of each optimizer with its own g."""
    rng = np.random.default_rng(1)
    g = rng.standard_normal(64) * 1e-3
    ref = math.log2(np.linalg.norm(ref_first_steps(kind, 2 * g))
                    / np.linalg.norm(ref_first_steps(kind, g)))
    got = update_scaling(factory, {"w": jnp.zeros(64)})
    assert got == pytest.approx(ref, abs=2e-3)
    assert got == pytest.approx({"sgd": 1.0, "momentum": 1.0, "adam": 0.0}[kind], abs=2e-3)


@pytest.mark.parametrize("factory, proportional", [
    (optax.sgd, True),
    (functools.partial(optax.sgd, momentum=0.9, nesterov=True), True),
    (lrjax.sgdw, True),  # decoupled decay: u(0) = wd * p cancels out
    (functools.partial(optax.sgd, momentum=0.9), True),
    (optax.contrib.schedule_free_sgd, True),
    (optax.adamw, False), (lrjax.adamw, False), (optax.radam, False),  # RAdam: 6 steps in
    (optax.amsgrad, False), (optax.rmsprop, False), (optax.lion, False), (optax.lamb, False),
    (optax.lars, False), (optax.adafactor, False), (optax.contrib.schedule_free_adamw, False),
    (lambda learning_rate: optax.chain(optax.clip_by_global_norm(1.0),
                                       optax.sgd(learning_rate, momentum=0.9)), True),
])
def test_sgd_family_and_adaptive_optimizers_are_told_apart(factory, proportional):
    got = update_scaling(factory, PARAMS)
    assert got is not None and (got > 0.5) == proportional, got


def test_probe_never_reads_or_changes_the_users_params():
    params = {"w": jnp.full((3,), jnp.nan), "b": np.ones(2, np.float32)}
    before = np.asarray(params["b"]).copy()
    assert update_scaling(optax.sgd, params) == 1.0  # NaN values: only shapes are used
    np.testing.assert_array_equal(params["b"], before)
    shapes = jax.eval_shape(lambda: {"w": jnp.zeros((4, 2))})
    assert update_scaling(optax.adam, shapes) == 0.0  # ShapeDtypeStructs are enough


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16, jnp.complex64])
def test_half_precision_and_complex_params_are_classified(dtype):
    # In float16 Adam's squared probe gradient underflows: the probe runs half formats in
    # float32. Complex leaves are updated by optax's SGD and Adam as complex numbers.
    params = {"w": jnp.zeros((3, 5), dtype), "b": jnp.zeros(5, dtype)}
    assert update_scaling(optax.sgd, params) == 1.0
    assert update_scaling(optax.adam, params) == 0.0


@pytest.mark.parametrize("probe", [update_scaling, noise_response])
@pytest.mark.parametrize("factory, params", [
    (lambda learning_rate, other: optax.sgd(learning_rate), PARAMS),  # needs another arg
    (lambda learning_rate: 1 / 0, PARAMS),  # the factory fails
    (optax.sgd, {}),  # no parameters
    (optax.sgd, {"i": jnp.zeros(3, jnp.int32)}),  # no floating parameters
    (lambda learning_rate: optax.sgd(0.0), PARAMS),  # the update never moves
])
def test_unknown_when_it_cannot_be_measured(probe, factory, params):
    assert probe(factory, params) is None


def test_range_test_records_it_for_params_and_for_init_fn():
    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    data = (x, x @ np.ones(3, np.float32))

    def loss(p, batch):
        return jnp.mean((batch[0] @ p["w"] - batch[1]) ** 2)

    params = {"w": jnp.zeros(3)}
    sgd = lrjax.range_test(loss, params, optax.sgd, data, num_steps=20)
    adam = lrjax.range_test(loss, params, optax.adam, data, num_steps=20)
    seeded = lrjax.range_test(loss, None, optax.sgd, data, num_steps=20, num_seeds=2,
                              init_fn=lambda k: {"w": jax.random.normal(k, (3,))})
    adamax = lrjax.range_test(loss, params, optax.adamax, data, num_steps=20)
    assert (sgd.settings["update_scaling"], adam.settings["update_scaling"],
            seeded.settings["update_scaling"]) == (1.0, 0.0, 1.0)
    back = lrjax.RangeTestResult.from_json(sgd.to_json())
    assert back.settings["update_scaling"] == 1.0
    # noise_response: measured for adaptive optimizers only (SGD's own factor applies)
    assert adamax.settings["noise_response"] == pytest.approx(0.37, rel=0.08)
    assert sgd.settings["noise_response"] is None
    assert lrjax.RangeTestResult.from_json(adamax.to_json()).settings == adamax.settings


# ---- fall's SGD factor --------------------------------------------------------------------
def _with_scaling(result, scaling):
    return dataclasses.replace(result, settings={**result.settings, "update_scaling": scaling})


def test_sgd_factor_multiplies_the_blended_reading_for_sgd_only():
    """suggest() = 4 x (fall**0.65 * valley**0.35) for an optimizer measured SGD-like;
    the reading itself for an adaptive one or one not measured."""
    train = sigmoid_curve(0, noise=0.02)
    train[56:] = np.nan
    plain = result_from_raw(train)
    fall = ref_fall(LRS, train, 0.3, 3)
    x, y = recorded_curve(LRS, np.asarray(plain.smoothed_losses), plain.diverged_at)
    valley = lrjax.finder.suggest.suggest_valley(x, y, num_steps=LRS.size)
    blended = fall ** 0.65 * valley ** 0.35
    sgd, adam = _with_scaling(plain, 1.0), _with_scaling(plain, 0.0)
    assert plain.suggest() == pytest.approx(blended, rel=1e-9)  # not measured: no factor
    assert adam.suggest() == pytest.approx(blended, rel=1e-9)
    assert sgd.suggest() == pytest.approx(4 * blended, rel=1e-9)
    assert sgd.suggest(sgd_factor=1) == pytest.approx(blended, rel=1e-9)
    assert sgd.suggest(sgd_factor=2.5) == pytest.approx(2.5 * blended, rel=1e-9)
    assert sgd.suggest(valley_weight=0) == pytest.approx(4 * fall, rel=1e-9)
    # never past the ramp's end
    assert sgd.suggest(sgd_factor=1e9) == pytest.approx(LRS[-1])
    # the peers' rules are unchanged; the schedule peak is never below the constant rate:
    # 2 x the reading for Adam, the constant rate 4 x the reading for SGD
    assert sgd.suggest("valley") == adam.suggest("valley")
    assert adam.peak_lr() == pytest.approx(2 * blended, rel=1e-9)
    assert sgd.peak_lr() == pytest.approx(4 * blended, rel=1e-9) == sgd.suggest()
    np.testing.assert_allclose(sgd.suggest(per_curve=True), 4 * adam.suggest(per_curve=True))
    np.testing.assert_allclose(sgd.peak_lr(per_curve=True), sgd.suggest(per_curve=True))


def test_peak_on_a_validation_turn_is_the_constant_rate_for_sgd():
    """On a readable validation curve the peak is the turn reading itself for Adam and
    suggest(), 4 x that reading, for an SGD-like optimizer; either never below the peak
    the same seed's training curve gives without the validation curve (2 x its reading,
    4 x with SGD); per seed, then voted."""
    rows = [sigmoid_curve(seed, noise=0.02) for seed in (4, 5, 6)]
    vals = [1 + 2 / (1 + np.exp((np.log10(LRS) + 3.5) / 0.25))
            + 3 * np.maximum(np.log10(LRS) + 2.0 + 0.1 * k, 0) for k in range(3)]
    result = result_from_raw(rows, val=vals)
    adam, sgd = _with_scaling(result, 0.0), _with_scaling(result, 1.0)
    turns = adam.suggest(per_curve=True)
    np.testing.assert_allclose(sgd.suggest(per_curve=True), 4 * turns, rtol=1e-12)
    for opt, turn_peak in ((adam, turns), (sgd, 4 * turns)):
        floor = dataclasses.replace(opt, val_losses=None).peak_lr(per_curve=True)
        expected = np.maximum(turn_peak, floor)
        np.testing.assert_allclose(opt.peak_lr(per_curve=True), expected, rtol=1e-12)
        assert opt.peak_lr() == pytest.approx(np.sort(expected)[1], rel=1e-12)
    # With SGD the training-curve floor is 4 x the training reading: the training-only
    # suggest(), as without a validation curve.
    trained_sgd = dataclasses.replace(sgd, val_losses=None)
    np.testing.assert_allclose(trained_sgd.peak_lr(per_curve=True),
                               trained_sgd.suggest(per_curve=True), rtol=1e-12)


def test_sgd_factor_is_not_applied_on_a_linear_ramp():
    lrs = np.linspace(1e-4, 1.0, 60)
    raw = 1 + 2 / (1 + np.exp((lrs - 0.3) / 0.05)) + np.random.default_rng(0).normal(0, 0.01, 60)
    linear = lrjax.RangeTestResult(lrs=lrs, losses=raw, smoothed_losses=raw, diverged_at=None,
                                   settings={"update_scaling": 1.0})
    assert linear.suggest() == lrjax.finder.suggest.suggest_fall(lrs, raw)


def test_sgd_factor_applies_to_the_fallback_read_on_a_noisy_curve():
    """On a curve too noisy to read, fall's documented fallback is the larger of valley
    and slide (with the warning); the factor is about the optimizer, so an SGD curve gets
    4 x that."""
    noisy = result_from_raw(1 + np.random.default_rng(3).normal(0, 0.3, LRS.size))
    with pytest.warns(lrjax.UnreadableCurveWarning):
        fallback = max(noisy.suggest("valley"), noisy.suggest("slide"))
    with pytest.warns(lrjax.UnreadableCurveWarning):
        assert noisy.suggest() == pytest.approx(fallback)
    with pytest.warns(lrjax.UnreadableCurveWarning):
        assert _with_scaling(noisy, 1.0).suggest() == pytest.approx(min(4 * fallback, LRS[-1]))


@pytest.mark.parametrize("bad, error", [(0.0, ValueError), (-2.0, ValueError),
                                        (float("nan"), ValueError), (True, TypeError),
                                        ("4", TypeError)])
def test_sgd_factor_is_checked(bad, error):
    result = _with_scaling(result_from_raw(sigmoid_curve(0, noise=0.02)), 1.0)
    with pytest.raises(error, match="sgd_factor"):
        result.suggest(sgd_factor=bad)
    with pytest.raises(ValueError, match="takes no sgd_factor"):
        result.suggest("valley", sgd_factor=2.0)


def test_range_test_probes_a_swept_factory_at_its_first_point():
    """A factory that needs the swept argument is probed with its first value (SGD with a
    swept momentum is SGD-like; Adam with swept b1 is not)."""
    x = np.random.default_rng(0).normal(size=(20, 8, 3)).astype(np.float32)
    data = (x, x.sum(-1))

    def loss(p, batch):
        return jnp.mean((batch[0] @ p["w"] - batch[1]) ** 2)

    def sgd(learning_rate, momentum):  # no default: the probe must pass it
        return optax.sgd(learning_rate, momentum=momentum)

    def adam(learning_rate, b1):
        return optax.adam(learning_rate, b1=b1)

    params = {"w": jnp.zeros(3)}
    swept_sgd = lrjax.range_test(loss, params, sgd, data, num_steps=10,
                                 sweep={"momentum": [0.0, 0.9]})
    swept_adam = lrjax.range_test(loss, params, adam, data, num_steps=10,
                                  sweep={"b1": [0.5, 0.9]})
    assert swept_sgd.settings["update_scaling"] == 1.0
    assert swept_adam.settings["update_scaling"] == 0.0


def test_range_test_records_it_for_nnx_and_equinox_models():
    """The probe sees the trainable arrays lrjax splits out of a model (given or made by
    init_fn), as the optimizer does."""
    nnx = pytest.importorskip("flax.nnx")
    eqx = pytest.importorskip("equinox")
    x = np.random.default_rng(0).normal(size=(10, 8, 4)).astype(np.float32)
    data = (x, x.sum(-1, keepdims=True))

    class Model(nnx.Module):
        def __init__(self, rngs):
            self.dense = nnx.Linear(4, 1, rngs=rngs)

        def __call__(self, inputs):
            return self.dense(inputs)

    def nnx_loss(model, batch):
        return jnp.mean((model(batch[0]) - batch[1]) ** 2)

    def eqx_loss(model, batch):
        return jnp.mean((jax.vmap(model)(batch[0]) - batch[1]) ** 2)

    got = [
        lrjax.range_test(nnx_loss, Model(nnx.Rngs(0)), optax.sgd, data, num_steps=10),
        lrjax.range_test(nnx_loss, None, optax.adam, data, num_steps=10, num_seeds=2,
                         init_fn=lambda k: Model(nnx.Rngs(k))),
        lrjax.range_test(eqx_loss, eqx.nn.Linear(4, 1, key=jax.random.key(0)), optax.adam,
                         data, num_steps=10),
        lrjax.range_test(eqx_loss, None, optax.sgd, data, num_steps=10, num_seeds=2,
                         init_fn=lambda k: eqx.nn.Linear(4, 1, key=k)),
    ]
    assert [r.settings["update_scaling"] for r in got] == [1.0, 0.0, 0.0, 1.0]
