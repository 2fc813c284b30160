"""Whether a range-test curve can be read at all (lrjax.finder.suggest.readability_check.readability), the
UnreadableCurveWarning of ``RangeTestResult.suggest()`` and of ``lrjax find``, and
``suggest()``'s explicit options.

The noise and the fall are checked against loops written from the documented formulas.
"""

import math
import warnings

import numpy as np
import pytest

import lrjax
from lrjax import cli
from lrjax.cli import find_command
from lrjax.finder.suggest.readability_check import (
    READABLE_RATIO,
    Readability,
    UnreadableCurveWarning,
    curve_fall,
    curve_noise,
    readability,
)
from lrjax.finder.suggest.fall_rule import read_fall

STEPS = 100
LRS = np.logspace(-6, 1, STEPS)
X = np.log10(LRS)
RULES = ["fall", "valley", "slide", "steep", "steepest", "minimum"]


# --- references from the documented formulas ---------------------------------------------------
def ref_noise(raw):
    """1.4826 * MAD of x_i - median(x_{i-2}, x_{i-1}, x_{i+1}, x_{i+2}) over the finite prefix,
    divided by 1.138 (that residual's standard deviation for unit Gaussian noise)."""
    n = 0
    while n < len(raw) and math.isfinite(raw[n]):
        n += 1
    residuals = []
    for i in range(2, n - 2):
        around = sorted([raw[i - 2], raw[i - 1], raw[i + 1], raw[i + 2]])
        residuals.append(raw[i] - (around[1] + around[2]) / 2)
    centre = float(np.median(residuals))
    return 1.4826 * float(np.median([abs(r - centre) for r in residuals])) / 1.138


def ref_fall(raw, steps):
    """Median of the first tenth minus the minimum of the truncated centred mean of
    half-width max(1, round(0.05 steps)); never negative."""
    n = 0
    while n < len(raw) and math.isfinite(raw[n]):
        n += 1
    h = max(1, round(0.05 * steps))
    smooth = [sum(raw[max(0, i - h): i + h + 1]) / len(raw[max(0, i - h): i + h + 1])
              for i in range(n)]
    start = float(np.median(raw[: max(1, round(0.1 * steps))]))
    return max(start - min(smooth), 0.0), 2 * h + 1


def range_curve(seed, noise=0.05, fall=2.0):
    """A typical range-test training curve: flat, a fall around 1e-3, a blow-up past 1e-1."""
    clean = 1 + fall / (1 + np.exp((X + 3) / 0.25)) + 30 * np.maximum(X + 1, 0) ** 2
    return clean + np.random.default_rng(seed).normal(scale=noise, size=STEPS)


def pure_noise(seed, level=2.0, noise=0.3):
    return level + np.random.default_rng(seed).normal(scale=noise, size=STEPS)


def result_of(train, val=None):
    """A RangeTestResult of raw curves (the smoothed ones as the range test's EMA)."""
    train = np.atleast_2d(np.asarray(train, np.float64))
    smoothed = np.empty_like(train)
    for row, out in zip(train, smoothed):
        average = 0.0
        for i, value in enumerate(row):
            average = 0.98 * average + 0.02 * value
            out[i] = average / (1 - 0.98 ** (i + 1))
    batched = train.shape[0] > 1
    shape = train.shape if batched else train.shape[1:]
    return lrjax.RangeTestResult(
        lrs=LRS, losses=train.reshape(shape), smoothed_losses=smoothed.reshape(shape),
        diverged_at=np.full(train.shape[0], -1) if batched else None,
        val_losses=None if val is None else np.asarray(val, np.float64).reshape(shape),
        batch_axes=("seed",) if batched else (), settings={"num_steps": STEPS})


def noisy_warnings(caught):
    return [w for w in caught if issubclass(w.category, UnreadableCurveWarning)]


# --- the measure ---------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(3))
def test_noise_fall_and_ratio_match_the_loop_reference(seed):
    raw = range_curve(seed, noise=0.1)
    raw[90:] = np.nan  # diverged
    got = readability(raw, num_steps=STEPS)
    fall, window = ref_fall(list(raw), STEPS)
    noise = ref_noise(list(raw))
    assert got.noise == pytest.approx(noise) == pytest.approx(curve_noise(raw))
    assert got.fall == pytest.approx(fall) == pytest.approx(curve_fall(raw, STEPS))
    assert got.window == window == 11
    assert got.ratio == pytest.approx(fall / (noise / math.sqrt(window)))
    assert got.readable == (got.ratio >= READABLE_RATIO)


def test_noise_of_gaussian_noise_is_its_standard_deviation_whatever_the_trend():
    rng = np.random.default_rng(0)
    trend = np.linspace(3.0, 1.0, 2000) + 0.5 * np.sin(np.linspace(0, 3, 2000))
    for sigma in (0.01, 0.3):
        assert curve_noise(trend + rng.normal(scale=sigma, size=2000)) == pytest.approx(
            sigma, rel=0.08)
    assert curve_noise(trend) < 1e-5  # a smooth trend alone is no noise
    assert math.isnan(curve_noise([1.0, 2.0, 3.0, 4.0]))  # fewer than 5 points


def test_unmeasurable_and_noise_free_curves():
    short = readability([3.0, 2.0, np.nan])  # two finite points: no noise to measure
    assert not short.readable and math.isnan(short.noise) and math.isnan(short.ratio)
    clean = range_curve(0, noise=0.0)
    assert readability(clean).readable
    flat = np.full(STEPS, 2.0)
    assert readability(flat) == Readability(False, 0.0, 0.0, 0.0, 11)
    with pytest.raises(ValueError, match="threshold"):
        readability(clean, threshold=0)


# --- the three synthetic cases of the issue ------------------------------------------------
@pytest.mark.filterwarnings("ignore:fall. 1 of 4 curves")  # a noise curve may not fall at all
def test_pure_noise_is_unreadable_and_suggest_warns_and_reads_valley_or_slide():
    rows = [pure_noise(seed) for seed in range(4)]
    result = result_of(rows)
    assert not result.readability.readable
    assert not any(r.readable for r in result.readability_per_curve())
    # The documented fallback of fall on a curve too noisy to read: the larger of fastai's
    # valley and slide of each curve's EMA (the peers' own readings, tested equal to
    # fastai's in tests/test_fastai_parity.py), lower median over the curves.
    emas = np.asarray(result.smoothed_losses)
    valleys = [lrjax.finder.suggest.suggest_valley(LRS, row) for row in emas]
    slides = [lrjax.finder.suggest.suggest_slide(LRS, row) for row in emas]
    larger = sorted(max(v, s) for v, s in zip(valleys, slides))
    # on these curves each of the two is the larger on some curve: neither alone is the rule
    assert any(s > v for v, s in zip(valleys, slides)) and any(v > s for v, s in zip(valleys, slides))
    for rule in RULES:
        with pytest.warns(UnreadableCurveWarning, match="too noisy to read") as caught:
            got = result.suggest(rule)
        if rule == "fall":
            assert got == pytest.approx(larger[(len(larger) - 1) // 2], rel=1e-12)
            assert "valley and slide" in str(noisy_warnings(caught)[0].message)
            # the weight does not change it: a noise dip is never blended in
            assert result.suggest(valley_weight=0) == got
        message = str(noisy_warnings(caught)[0].message)
        assert "\n" not in message
        for help_ in ("more steps", "larger batch", "accumulation_steps", "val_data",
                      "num_seeds"):
            assert help_ in message


def test_a_clean_range_test_curve_is_readable_and_nothing_warns():
    result = result_of(range_curve(0, noise=0.05))
    reading = result.readability
    assert reading.readable and reading.ratio > 10 * READABLE_RATIO
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for rule in RULES:
            result.suggest(rule)
        lrjax.finder.suggest.suggest_fall(LRS, result.losses)


@pytest.mark.parametrize("seed", range(3))
def test_noise_larger_than_the_fall_warns_like_the_recurrent_model(seed):
    # The GRU: a fall of 0.1 under step-to-step noise of +-0.3.
    raw = range_curve(seed, noise=0.3, fall=0.1)
    result = result_of(raw)
    assert not result.readability.readable
    with pytest.warns(UnreadableCurveWarning, match=r"fall [\d.e-]+ < 8 x"):
        result.suggest()
    with pytest.warns(UnreadableCurveWarning):
        lrjax.finder.suggest.suggest_fall(LRS, raw)


def test_the_mean_of_more_seeds_is_readable_where_one_seed_is_not():
    rows = [range_curve(seed, noise=0.3, fall=0.45) for seed in range(16)]
    one = readability(rows[0], num_steps=STEPS)
    assert not one.readable
    many = result_of(rows).readability
    assert many.readable
    assert many.noise == pytest.approx(one.noise / 4, rel=0.35)  # 1/sqrt(16) of the noise


def test_a_noisy_validation_curve_is_not_read_by_its_turn():
    train = range_curve(1, noise=0.05)
    val = pure_noise(2, noise=0.2)  # a bump of noise would be read as the turn
    result = result_of(train, val)
    assert not result.val_readability.readable and result.readability.readable
    with pytest.warns(UnreadableCurveWarning, match="validation curve") as caught:
        got = result.suggest(valley_weight=0)
    assert [w.message.curve for w in noisy_warnings(caught)] == ["validation"]
    assert got == lrjax.finder.suggest.suggest_fall(LRS, train)  # the documented fallback: the training fall
    with pytest.warns(UnreadableCurveWarning):
        lrjax.finder.suggest.suggest_turn(LRS, val)


# --- a real range test both ways -----------------------------------------------------------
def regression(labels_are_noise):
    import jax
    import jax.numpy as jnp

    x = jax.random.normal(jax.random.key(0), (60, 32, 3))
    if labels_are_noise:
        y = jax.random.normal(jax.random.key(1), (60, 32))
    else:
        y = x @ jnp.array([1.0, -2.0, 0.5])

    def loss_fn(w, batch):
        return jnp.mean((batch["x"] @ w - batch["y"]) ** 2)

    return loss_fn, jnp.zeros(3), {"x": x, "y": y}


def test_a_real_range_test_both_ways():
    import optax

    loss_fn, params, data = regression(labels_are_noise=False)
    good = lrjax.range_test(loss_fn, params, optax.sgd, data, min_lr=1e-4, max_lr=10.0,
                            num_steps=60)
    assert good.readability.readable
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        good.suggest()
    assert not noisy_warnings(caught)

    loss_fn, params, data = regression(labels_are_noise=True)
    noise = lrjax.range_test(loss_fn, params, optax.sgd, data, min_lr=1e-7, max_lr=1e-6,
                             num_steps=60)
    assert not noise.readability.readable
    with pytest.warns(UnreadableCurveWarning):
        noise.suggest()


# --- lrjax find ------------------------------------------------------------------------------
def test_find_prints_the_noise_warning_as_one_line(monkeypatch, capsys):
    rows = np.asarray([pure_noise(seed) for seed in range(2)], np.float32)
    noisy = lrjax.RangeTestResult(
        lrs=LRS.astype(np.float32), losses=rows, smoothed_losses=rows,
        diverged_at=np.full(2, -1), batch_axes=("seed",),
        settings={"mode": "exp", "num_steps": STEPS})
    monkeypatch.setattr(find_command, "_run_range_test", lambda *args: noisy)
    status = cli.main(["find", "--steps", str(STEPS), "--quiet", "--no-terminal-plot",
                       "--seeds", "2"])
    err = capsys.readouterr().err
    assert status == 0, err
    lines = [line for line in err.splitlines() if "too noisy" in line]
    assert len(lines) == 1, err
    assert lines[0].startswith("lrjax: warning: the training curve is too noisy to read (fall ")
    assert lines[0].endswith(": use more --steps, a larger --batch-size or more --seeds")
    assert "Warning" not in err and "warnings.warn" not in err  # no category, no source line


# --- explicit options ------------------------------------------------------------------------
def test_unknown_keyword_is_a_type_error_naming_it_and_the_accepted_ones():
    result = result_of(range_curve(0))
    with pytest.raises(TypeError, match=r"'fractoin'.*fraction, half_width, train_steps"):
        result.suggest(fractoin=0.5)


def test_an_option_the_rule_does_not_take_is_a_value_error_naming_the_rule():
    result = result_of(range_curve(0))
    with pytest.raises(ValueError, match=r"'valley' rule takes no fraction=.*skip_start="):
        result.suggest("valley", fraction=0.5)
    with pytest.raises(ValueError, match=r"'fall' rule takes no lr_diff="):
        result.suggest(lr_diff=3)
    assert result.suggest("slide", lr_diff=10) == lrjax.finder.suggest.suggest_slide(
        LRS, result.smoothed_losses, lr_diff=10)
    assert result.suggest("valley", skip_start=None) == result.suggest("valley")  # the default


@pytest.mark.parametrize("train_steps", [5, 3000, 10**6])
def test_standalone_rules_take_the_train_steps_hint_as_suggest_does(train_steps):
    train = range_curve(3, noise=0.03)
    val = 1 + 2 / (1 + np.exp((X + 3.5) / 0.25)) + 3 * np.maximum(X + 1.5, 0)
    plain, careful = result_of(train), result_of(train, val)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert plain.suggest(train_steps=train_steps, valley_weight=0) == lrjax.finder.suggest.suggest_fall(
            LRS, train, train_steps=train_steps)
        assert careful.suggest(train_steps=train_steps, valley_weight=0) == lrjax.finder.suggest.suggest_turn(
            LRS, val, train_steps=train_steps, train_losses=train)
        assert careful.suggest(train_steps=train_steps, fraction=0.5, valley_weight=0) == lrjax.finder.suggest.suggest_fall(
            LRS, val, fraction=0.5, train_steps=train_steps, train_losses=train)
    # Without the hint the standalone turn is the plain turn (no ceiling).
    assert lrjax.finder.suggest.suggest_turn(LRS, val) >= lrjax.finder.suggest.suggest_turn(LRS, val, train_steps=train_steps)
    with pytest.raises(ValueError, match="train_steps"):
        lrjax.finder.suggest.suggest_turn(LRS, val, train_steps=0)
