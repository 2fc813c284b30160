"""Whether a range test saw the model learn: ``range_test(baseline_loss=)``,
``RangeTestResult.beyond_baseline`` and ``NoLearningWarning`` (``lrjax.finder.suggest.baseline_check``).

The share is checked against a loop written from the documented formula; the warning on
hand-built curves at the threshold's two sides and on real compiled range tests: a
linear model on XOR data (no linear rule beats the class frequencies, a closed fact) and
an MLP on the same data.
"""

import json
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lrjax
from lrjax import cli
from lrjax.cli import find_command
from lrjax.finder.suggest.baseline_check import (
    LEARNED_SHARE,
    NoLearningWarning,
    share_below,
)

STEPS = 100
LRS = np.logspace(-6, 1, STEPS)
LOG2 = math.log(2.0)


def ref_share(rows, baseline, steps=STEPS):
    """(baseline - median over curves of min of the truncated centred mean of half-width
    max(1, round(0.05 steps)) over the finite prefix) / |baseline|."""
    lows = []
    h = max(1, round(0.05 * steps))
    for raw in np.atleast_2d(rows):
        n = 0
        while n < len(raw) and math.isfinite(raw[n]):
            n += 1
        if n < 2 * h + 1:
            continue
        y = list(raw[:n])
        lows.append(min(sum(y[max(0, i - h): i + h + 1]) / len(y[max(0, i - h): i + h + 1])
                        for i in range(n)))
    return (baseline - float(np.median(lows))) / abs(baseline) if lows else math.nan


def result_of(train, val=None, baseline=LOG2, diverged=None):
    train = np.asarray(train, np.float32)
    settings = {"mode": "exp", "num_steps": STEPS}
    if baseline is not None:
        settings["baseline_loss"] = baseline
    rows = train.reshape(-1, STEPS)
    return lrjax.RangeTestResult(
        lrs=LRS.astype(np.float32), losses=train, smoothed_losses=train,
        diverged_at=(diverged if train.ndim == 1 else np.full(rows.shape[0], -1)),
        val_losses=None if val is None else np.asarray(val, np.float32),
        batch_axes=() if train.ndim == 1 else ("seed",), settings=settings)


def falling_curve(low, seed=0, noise=0.01):
    """1.0 falling to ``low`` by step 70, then blowing up; small Gaussian noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(STEPS)
    curve = np.where(t < 70, 1.0 - (1.0 - low) * t / 70, low + 0.2 * (t - 70))
    return curve + rng.normal(0, noise, STEPS)


def no_learning(caught):
    return [w for w in caught if issubclass(w.category, NoLearningWarning)]


@pytest.mark.parametrize("seed", range(4))
def test_share_matches_the_loop_reference(seed):
    rng = np.random.default_rng(seed)
    rows = np.stack([falling_curve(0.5 + 0.1 * k, seed + k, noise=0.05) for k in range(3)])
    rows[1, 80:] = np.nan  # a diverged curve: only its finite prefix counts
    baseline = 0.4 + rng.uniform()
    assert share_below(rows, baseline) == pytest.approx(ref_share(rows, baseline), rel=1e-12)
    # Negative baselines (a log-likelihood) are read against |baseline|.
    assert share_below(rows - 2, baseline - 2) == pytest.approx(
        ref_share(rows - 2, baseline - 2), rel=1e-12)


def test_share_is_nan_when_no_curve_is_long_enough_to_smooth():
    short = np.full(STEPS, np.nan)
    short[:5] = 0.5
    assert math.isnan(share_below(short, LOG2))


def test_beyond_baseline_reads_the_validation_curve_else_the_training_curve():
    train, val = falling_curve(0.2), falling_curve(0.69)
    with_val = result_of(train, val)
    assert with_val.beyond_baseline == pytest.approx(ref_share(val, LOG2))
    assert result_of(train).beyond_baseline == pytest.approx(ref_share(train, LOG2))
    assert result_of(train, baseline=None).beyond_baseline is None


@pytest.mark.parametrize("share, warns", [(LEARNED_SHARE - 0.001, True),
                                          (LEARNED_SHARE + 0.001, False)])
def test_the_threshold_on_both_sides(share, warns):
    # A flat validation curve at exactly baseline * (1 - share): its lowest point.
    val = np.full(STEPS, LOG2 * (1 - share))
    result = result_of(falling_curve(0.3), val)
    assert result.beyond_baseline == pytest.approx(share, abs=1e-6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result.suggest()
    assert bool(no_learning(caught)) is warns


def test_suggest_and_peak_lr_warn_at_the_callers_line_for_every_rule():
    # Training falls (the model fits its batches), validation stays at log 2: calibration.
    result = result_of(falling_curve(0.3), falling_curve(0.70, seed=1))
    assert result.beyond_baseline < LEARNED_SHARE
    for call in [result.suggest, result.peak_lr,
                 *[lambda m=m: result.suggest(m) for m in ("valley", "slide", "steepest")],
                 lambda: result.suggest(per_curve=True)]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call()
        found = no_learning(caught)
        assert len(found) == 1, [str(w.message) for w in caught]
        assert found[0].filename == __file__  # attributed to the user's call
        warning = found[0].message
        assert isinstance(warning, lrjax.UnreadableCurveWarning)  # one filter catches all
        assert warning.curve == "validation" and warning.baseline_loss == LOG2
        assert warning.share == pytest.approx(result.beyond_baseline)
        assert "constant predictor" in str(warning) and "search_space()" in str(warning)


def test_no_warning_when_it_learned_or_without_a_baseline():
    for result in (result_of(falling_curve(0.3), falling_curve(0.4, seed=1)),
                   result_of(falling_curve(0.3), falling_curve(0.70, seed=1), baseline=None)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result.suggest()
            result.peak_lr()
        assert not no_learning(caught)


def test_seeds_vote_by_the_median_of_their_lowest_points():
    # Two of three seeds learned: the median learned.
    rows = np.stack([falling_curve(0.3, 0), falling_curve(0.4, 1), falling_curve(0.70, 2)])
    result = result_of(rows)
    assert result.beyond_baseline == pytest.approx(ref_share(rows, LOG2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result.suggest()
    assert not no_learning(caught)


def test_the_peers_rules_do_not_change_with_the_baseline():
    train, val = falling_curve(0.3), falling_curve(0.70, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for method in ("valley", "slide", "steep", "minimum", "steepest"):
            assert result_of(train, val).suggest(method) == result_of(
                train, val, baseline=None).suggest(method)


def ref_minimum(train, steps=STEPS):
    """fastai's ``minimum`` on a curve recorded whole (no divergence): the rate at the lowest
    loss of the curve without its first tenth and last 5 points, over 10."""
    skip = steps // 10
    return float(LRS[skip + int(np.argmin(train[skip:steps - 5]))]) / 10


def calibrating_result(baseline=LOG2):
    """A training curve that bottoms out late (its minimum's rate / 10 is above the fall
    reading) and a validation curve that never gets below log 2."""
    return result_of(falling_curve(0.3), falling_curve(0.70, seed=1), baseline=baseline)


def test_fall_and_peak_lr_are_floored_at_fastais_minimum_when_nothing_was_learned():
    floor = ref_minimum(falling_curve(0.3).astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = calibrating_result(baseline=None).suggest()
        plain_peak = calibrating_result(baseline=None).peak_lr()
        result = calibrating_result()
        assert result.suggest("minimum") == pytest.approx(floor, rel=1e-6)
        assert plain < floor  # the floor binds here, so the check below can fail
        assert result.suggest() == pytest.approx(max(plain, floor), rel=1e-6)
        assert result.peak_lr() == pytest.approx(max(plain_peak, floor), rel=1e-6)
        # A range test that learned (its validation loss far below the baseline) is read as is.
        learned = calibrating_result(baseline=2.0)
        assert learned.beyond_baseline > 0.5
        assert learned.suggest() == plain and learned.peak_lr() == plain_peak


def test_the_floor_applies_per_curve_and_to_the_vote():
    rows = np.stack([falling_curve(0.3, seed=s) for s in range(3)])
    vals = np.stack([falling_curve(0.70, seed=10 + s) for s in range(3)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = result_of(rows, vals)
        plain = result_of(rows, vals, baseline=None).suggest(per_curve=True)
        floors = np.array([ref_minimum(row.astype(np.float32)) for row in rows])
        np.testing.assert_allclose(result.suggest(per_curve=True), np.maximum(plain, floors),
                                   rtol=1e-6)
        assert result.suggest() >= result.suggest("minimum") * (1 - 1e-9)


def test_the_warning_says_what_fall_did_and_the_peers_did_not():
    result = calibrating_result()
    for call, floored in ((lambda r: r.suggest(), True), (lambda r: r.peak_lr(), True),
                          (lambda r: r.suggest("valley"), False)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call(result)
        (warning,) = no_learning(caught)
        assert warning.message.floored is floored
        text = str(warning.message)
        assert ("at least fastai's minimum rule" in text) is floored
        assert ("the suggestion is read off that" in text) is not floored


@pytest.mark.parametrize("bad", [0.0, math.nan, math.inf, True, "0.69", [0.69],
                                 np.array([0.69, 0.7])])
def test_range_test_rejects_a_bad_baseline_naming_it(bad):
    loss_fn = lambda p, b: jnp.mean((b[0] * p - b[1]) ** 2)  # noqa: E731
    x = np.ones((10, 4), np.float32)
    with pytest.raises(ValueError, match="baseline_loss must be a finite nonzero number"):
        lrjax.range_test(loss_fn, jnp.float32(0.0), optax.sgd, (x, x), num_steps=10,
                         baseline_loss=bad)


def test_the_baseline_survives_json():
    result = result_of(falling_curve(0.3), falling_curve(0.70, seed=1))
    back = lrjax.RangeTestResult.from_json(result.to_json())
    assert back.settings["baseline_loss"] == LOG2
    assert back.beyond_baseline == result.beyond_baseline
    assert json.loads(result.to_json())["settings"]["baseline_loss"] == LOG2


# --- real range tests: XOR ---------------------------------------------------------------------
def xor_problem(hidden):
    """XOR of two signs (balanced classes): a linear logit cannot beat log 2 on it."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(80 * 32 + 256, 2)).astype(np.float32)
    y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(np.int32)
    train = {"x": x[:80 * 32].reshape(80, 32, 2), "y": y[:80 * 32].reshape(80, 32)}
    val = {"x": x[80 * 32:], "y": y[80 * 32:]}
    frequencies = np.bincount(y[80 * 32:]) / 256
    baseline = float(-np.mean(np.log(frequencies[y[80 * 32:]])))

    def init_fn(key):
        k1, k2 = jax.random.split(key)
        if hidden is None:
            return {"w": jax.random.normal(k1, (2, 2)) * 0.1, "b": jnp.zeros(2)}
        return {"w1": jax.random.normal(k1, (2, hidden)), "b1": jnp.zeros(hidden),
                "w2": jax.random.normal(k2, (hidden, 2)) / jnp.sqrt(hidden), "b2": jnp.zeros(2)}

    def loss_fn(params, batch):
        if hidden is None:
            logits = batch["x"] @ params["w"] + params["b"]
        else:
            h = jnp.tanh(batch["x"] @ params["w1"] + params["b1"])
            logits = h @ params["w2"] + params["b2"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()

    return loss_fn, init_fn, train, val, baseline


@pytest.mark.parametrize("hidden, warns", [(None, True), (32, False)])
def test_a_linear_model_on_xor_warns_and_an_mlp_does_not(hidden, warns):
    loss_fn, init_fn, train, val, baseline = xor_problem(hidden)
    result = lrjax.range_test(loss_fn, None, optax.adam, train, init_fn=init_fn, num_seeds=2,
                              val_data=val, min_lr=1e-4, max_lr=10.0, num_steps=80,
                              baseline_loss=baseline)
    assert result.settings["baseline_loss"] == baseline
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result.suggest()
    assert bool(no_learning(caught)) is warns, (result.beyond_baseline,
                                                [str(w.message) for w in caught])
    if warns:
        assert result.beyond_baseline < LEARNED_SHARE
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert result.suggest() >= result.suggest("minimum")
            assert result.peak_lr() >= result.suggest("minimum")
    else:
        assert result.beyond_baseline > 0.2


# --- lrjax find --------------------------------------------------------------------------------
def test_find_passes_the_digits_baseline_and_prints_the_warning_as_one_line(monkeypatch, capsys):
    captured = {}

    def calibrating(*args, **kwargs):
        captured.update(kwargs)
        # From 3.05 down to 2.35: above log 10 = 2.30, the ten classes' frequencies.
        return result_of(falling_curve(0.3) + 2.05, baseline=kwargs["baseline_loss"])

    monkeypatch.setattr(lrjax, "range_test", calibrating)
    status = cli.main(["find", "--steps", str(STEPS), "--quiet", "--no-terminal-plot"])
    err = capsys.readouterr().err
    assert status == 0, err
    # The digits batches' own class frequencies: close to log 10 (ten balanced classes).
    assert captured["baseline_loss"] == pytest.approx(math.log(10), abs=0.01)
    lines = [line for line in err.splitlines() if "constant predictor" in line]
    assert len(lines) == 1, err
    assert lines[0].startswith("lrjax: warning: the training loss never got clearly below")
    assert lines[0].endswith("use more --steps or a --min-lr .. --max-lr ramp that spends "
                             "more of them where it learns")
    assert "at least fastai's minimum rule" in lines[0]  # what the reported fall rule did
    assert "Warning" not in err and "warnings.warn" not in err


def test_constant_predictor_loss_is_the_label_entropy():
    labels = np.array([0, 0, 0, 1])
    assert find_command.constant_predictor_loss(labels) == pytest.approx(
        -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))


def test_a_traced_baseline_is_refused_with_the_same_error():
    from lrjax.finder.suggest.baseline_check import check_baseline

    @jax.jit
    def traced(value):
        with pytest.raises(ValueError, match="baseline_loss must be a finite nonzero number"):
            check_baseline(value)
        return value

    traced(0.69)
    assert check_baseline(jnp.float32(0.5)) == 0.5  # a concrete jax scalar is a number


@pytest.mark.parametrize("bad", ["0.69", 0, None, [0.69], "NaN"])
def test_a_saved_result_with_a_bad_baseline_is_refused_on_load(bad):
    blob = json.loads(result_of(falling_curve(0.3)).to_json())
    blob["settings"]["baseline_loss"] = bad
    if bad is None:  # null: no baseline, as a result saved without one
        assert lrjax.RangeTestResult.from_dict(blob).beyond_baseline is None
        return
    with pytest.raises(ValueError, match="baseline_loss must be a finite nonzero number"):
        lrjax.RangeTestResult.from_dict(blob)
