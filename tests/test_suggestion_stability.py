"""Suggestion stability (lrjax.finder.suggest.stability_check): the wild bootstrap of a
range-test result, ``RangeTestResult.stability()`` and the ``UnstableSuggestionWarning`` of
``suggest()``, ``peak_lr()`` and ``lrjax find``.

The resampling, the EMA and the percentiles are checked against loops written from the
documented formulas (Wu 1986's wild bootstrap with Rademacher signs; Efron & Tibshirani's
percentile interval), the EMA also against what the compiled range test records.
"""

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lrjax
from lrjax.cli.report import warning_line
from lrjax.finder.suggest.readability_check import UnreadableCurveWarning
from lrjax.finder.suggest import stability_check
from lrjax.finder.suggest.stability_check import (
    MAX_CHECKED_CURVES,
    REPLICAS,
    STABLE_DECADES,
    Stability,
    UnstableSuggestionWarning,
    debiased_ema,
    resampled_result,
    local_linear,
    resampled_rows,
    suggestion_stability,
)

STEPS = 100
LRS = np.geomspace(1e-6, 1.0, STEPS)
X = np.log10(LRS)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def ref_ema(raw, beta):
    """avg_t = beta avg_{t-1} + (1 - beta) loss_t; smoothed_t = avg_t / (1 - beta**(t+1))."""
    avg, out = 0.0, []
    for t, value in enumerate(raw):
        avg = beta * avg + (1 - beta) * value
        out.append(avg / (1 - beta ** (t + 1)))
    return np.array(out)


def ref_local_linear(values, half_width):
    """At each point, numpy's least-squares line through the window around it (truncated at
    the ends), evaluated there."""
    n = len(values)
    out = []
    for i in range(n):
        lo, hi = max(0, i - half_width), min(n, i + half_width + 1)
        slope, intercept = np.polyfit(np.arange(lo, hi) - i, values[lo:hi], 1)
        out.append(intercept)
    return np.array(out)


def result_of(clean, noise, seed, val=None):
    raw = clean + np.random.default_rng(seed).normal(0, noise, clean.size)
    return lrjax.RangeTestResult(LRS, raw, ref_ema(raw, 0.98), None, val_losses=val,
                                 settings={"smoothing": 0.98})


# A clean range-test curve: flat, one fall, a blow-up.
CLEAN = 1 + 2 * sigmoid(-3 * (X + 3)) + 3 * sigmoid(8 * (X + 0.2))
# Two falls, the first 30% of the whole: the fall rule's 30% level lies on the plateau
# between them, and the noise decides which fall it reads (as on a slow classification
# whose first fall is calibration).
TWO_FALLS = 1 - 0.3 * sigmoid(4 * (X + 5)) - 0.7 * sigmoid(4 * (X + 1.5)) + 3 * sigmoid(8 * (X + 0.2))


# --- the resampling against the documented formula -----------------------------------------
@pytest.mark.parametrize("steps", [20, 100, 300])
def test_resampled_rows_flip_each_residual_around_the_local_line(steps):
    rng = np.random.default_rng(1)
    rows = rng.normal(2.0, 0.3, (3, steps)) + np.linspace(1, 0, steps)
    rows[1, steps // 2:] = np.nan  # a diverged curve: only its prefix is drawn again
    out = resampled_rows(rows, steps, np.random.default_rng(7))
    half_width = max(1, round(0.05 * steps))
    for row, drawn in zip(rows, out):
        n = int(np.isfinite(row).sum())
        smooth = ref_local_linear(row[:n], half_width)
        np.testing.assert_allclose(np.abs(drawn[:n] - smooth), np.abs(row[:n] - smooth),
                                   rtol=1e-12, atol=1e-12)
        signs = np.sign(drawn[:n] - smooth) * np.sign(row[:n] - smooth)
        assert set(np.unique(signs)) <= {-1.0, 0.0, 1.0}
        assert 0.2 < np.mean(signs < 0) < 0.8  # random signs, not all kept or all flipped
        assert np.isnan(drawn[n:]).all()
    assert not np.shares_memory(out, rows)


@pytest.mark.parametrize("n, half_width", [(1, 2), (4, 2), (5, 2), (40, 3), (100, 5)])
def test_local_linear_matches_numpy_polyfit(n, half_width):
    values = np.random.default_rng(n).normal(size=n) + np.linspace(0, 3, n) ** 2
    expected = values if n == 1 else ref_local_linear(values, half_width)
    np.testing.assert_allclose(local_linear(values, half_width), expected, rtol=1e-10,
                               atol=1e-10)
    line = 2.0 - 0.5 * np.arange(n)  # a line is its own smooth, to the ends
    np.testing.assert_allclose(local_linear(line, half_width), line, atol=1e-12)


def test_resampled_rows_keep_a_row_shorter_than_the_window():
    rows = np.array([[3.0, 2.0, np.nan, np.nan] + [np.nan] * 16])
    np.testing.assert_array_equal(resampled_rows(rows, 20, np.random.default_rng(0)), rows)


def test_wild_bootstrap_keeps_the_noise_level():
    """Replicas of pure Gaussian noise have the original residual's spread (Wu 1986)."""
    rows = np.random.default_rng(3).normal(0, 0.5, (1, 2000))
    smooth = ref_local_linear(rows[0], 100)
    drawn = resampled_rows(rows, 2000, np.random.default_rng(4))[0]
    rms = lambda r: np.sqrt(np.mean(r ** 2))  # noqa: E731
    assert rms(drawn - smooth) == pytest.approx(rms(rows[0] - smooth), rel=1e-9)
    assert np.std(drawn - smooth) == pytest.approx(0.5, rel=0.05)
    assert abs(np.mean(drawn - smooth)) < 0.05


def test_debiased_ema_matches_the_loop_and_the_range_test():
    raw = np.random.default_rng(0).normal(1, 0.2, (2, 50))
    np.testing.assert_allclose(debiased_ema(raw, 0.9), np.stack([ref_ema(r, 0.9) for r in raw]),
                               rtol=1e-12)
    # What the compiled range test records (float32) for its own raw losses.
    x = jax.random.normal(jax.random.key(0), (40, 16, 4))  # 40 stacked batches of 16
    y = x @ jnp.arange(1.0, 5.0)

    def loss_fn(params, batch):
        bx, by = batch
        return jnp.mean((bx @ params["w"] - by) ** 2)

    result = lrjax.range_test(loss_fn, {"w": jnp.zeros(4)}, optax.sgd, (x, y), min_lr=1e-4,
                              max_lr=1.0, num_steps=40, smoothing=0.9)
    losses = result.losses_before_divergence()
    n = int(np.isfinite(losses).sum())
    np.testing.assert_allclose(debiased_ema(losses[None, :n], 0.9)[0],
                               result.smoothed_losses[:n], rtol=2e-5)


def test_resampled_result_draws_training_and_validation_and_recomputes_the_ema():
    val = CLEAN + np.random.default_rng(9).normal(0, 0.05, STEPS)
    result = result_of(CLEAN, 0.1, 0, val=val)
    before = (result.losses.copy(), result.smoothed_losses.copy(), result.val_losses.copy())
    drawn = resampled_result(result, np.random.default_rng(5))
    assert not np.array_equal(drawn.losses, result.losses)
    assert not np.array_equal(drawn.val_losses, result.val_losses)
    np.testing.assert_allclose(drawn.smoothed_losses, ref_ema(drawn.losses, 0.98), rtol=1e-12)
    # The user's result is untouched.
    for kept, now in zip(before, (result.losses, result.smoothed_losses, result.val_losses)):
        np.testing.assert_array_equal(kept, now)


# --- the stability measure ------------------------------------------------------------------
def test_a_noise_free_curve_is_stable():
    """Only the smoother's own bias at the bends is left to flip: the replicas barely move."""
    result = lrjax.RangeTestResult(LRS, CLEAN, ref_ema(CLEAN, 0.98), None,
                                   settings={"smoothing": 0.98})
    stability = result.stability()
    assert stability.stable and stability.decades < 0.1 and stability.replicas == REPLICAS
    assert stability.low <= result.suggest() * 1.0001


def test_percentiles_match_a_replay_of_the_replicas():
    """The 10th and 90th percentiles and log10(high / low) of the very replicas read."""
    result = result_of(TWO_FALLS, 0.1, 1)
    read = lambda r: r.suggest(valley_weight=0.0)  # noqa: E731
    stability = suggestion_stability(result, read, replicas=40, seed=3)
    rng = np.random.default_rng(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = [read(resampled_result(result, rng)) for _ in range(40)]
    low, high = np.percentile(values, [10, 90])
    assert (stability.low, stability.high) == pytest.approx((low, high), rel=1e-12)
    assert stability.decades == pytest.approx(math.log10(high / low), rel=1e-12)
    assert stability.stable == (stability.decades < STABLE_DECADES)
    assert stability.replicas == 40


def test_the_same_seed_gives_the_same_answer():
    result = result_of(TWO_FALLS, 0.1, 2)
    assert result.stability(seed=4) == result.stability(seed=4)


def test_clean_noisy_curve_is_stable_and_two_falls_are_not():
    for seed in range(3):
        assert result_of(CLEAN, 0.05, seed).stability().stable
    unstable = [result_of(TWO_FALLS, 0.1, seed).stability() for seed in (1, 2, 3)]
    assert all(not s.stable for s in unstable)
    # The two readings are the two falls: the replicas straddle a factor 10 or more.
    assert all(s.high / s.low >= 10 for s in unstable)


# --- the warning ----------------------------------------------------------------------------
def test_suggest_warns_on_an_unstable_reading_and_still_returns_it():
    result = result_of(TWO_FALLS, 0.1, 1)
    assert result.readability.readable  # the fall stands out of the noise: readable
    with pytest.warns(UnstableSuggestionWarning, match="unstable") as caught:
        value = result.suggest()
    warning = caught[0].message
    assert isinstance(warning, UnreadableCurveWarning)  # one filter catches both kinds
    assert not warning.stability.stable
    assert warning.stability.high / warning.stability.low >= 10
    assert "search_space" in str(warning) and "num_seeds" in str(warning)
    assert caught[0].filename == __file__  # points at the caller
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert value == result.suggest(per_curve=True)  # the same reading


def test_peak_lr_warns_too_and_per_curve_does_not():
    result = result_of(TWO_FALLS, 0.1, 2)
    with pytest.warns(UnstableSuggestionWarning, match="peak_lr"):
        result.peak_lr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result.peak_lr(per_curve=True)
        result.suggest(per_curve=True)
        result.suggest("valley")  # the peers' rules are read as the peers read them


def test_a_stable_reading_does_not_warn():
    result = result_of(CLEAN, 0.05, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result.suggest()
        result.peak_lr()


def test_a_curve_too_noisy_to_read_gets_only_the_readability_warning():
    result = result_of(np.full(STEPS, 2.0), 0.3, 0)  # pure noise
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result.suggest()
    kinds = {type(w.message) for w in caught}
    assert UnreadableCurveWarning in kinds and UnstableSuggestionWarning not in kinds


def test_stability_with_peak_and_train_steps():
    result = result_of(TWO_FALLS, 0.1, 1)
    peak = result.stability(peak=True)
    assert peak.low >= result.stability().low  # a peak is never below the constant rate
    assert isinstance(result.stability(train_steps=2_000), Stability)
    with pytest.raises(ValueError, match="train_steps"):
        result.stability(peak=True, train_steps=10)


@pytest.mark.parametrize("kwargs, match", [({"replicas": 1}, "replicas"),
                                           ({"replicas": 2.5}, "replicas"),
                                           ({"seed": -1}, "seed"),
                                           ({"seed": "a"}, "seed"),
                                           ({"threshold": 0.0}, "threshold"),
                                           ({"threshold": math.nan}, "threshold")])
def test_bad_arguments_are_value_errors_naming_them(kwargs, match):
    result = result_of(CLEAN, 0.05, 0)
    with pytest.raises(ValueError, match=match):
        suggestion_stability(result, lambda r: r.suggest(), **kwargs)


def test_a_linear_ramp_is_not_checked():
    lrs = np.linspace(1e-4, 1.0, STEPS)
    raw = 1 + 2 * sigmoid(-(np.log10(lrs) + 2) / 0.2) + np.random.default_rng(0).normal(0, 0.05, STEPS)
    result = lrjax.RangeTestResult(lrs, raw, ref_ema(raw, 0.98), None, settings={"smoothing": 0.98})
    with pytest.raises(ValueError, match="log-spaced"):
        result.stability()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result.suggest()
    assert not [w for w in caught if isinstance(w.message, UnstableSuggestionWarning)]


def test_a_clean_real_range_test_is_stable():
    """A least-squares range test with SGD whose loss falls by 7 orders of magnitude in a
    few steps: the steep bend and the blow-up are trend, not noise."""
    x = jax.random.normal(jax.random.key(0), (60, 32, 3))
    y = x @ jnp.array([1.0, -2.0, 0.5])

    def loss_fn(w, batch):
        bx, by = batch
        return jnp.mean((bx @ w - by) ** 2)

    result = lrjax.range_test(loss_fn, jnp.zeros(3), optax.sgd, (x, y), min_lr=1e-4,
                              max_lr=10.0, num_steps=60)
    assert result.stability().stable


def test_a_batched_result_is_drawn_per_curve():
    rows = np.stack([TWO_FALLS + np.random.default_rng(s).normal(0, 0.1, STEPS)
                     for s in range(3)])
    result = lrjax.RangeTestResult(LRS, rows, debiased_ema(rows, 0.98), np.full(3, -1),
                                   batch_axes=("seed",), settings={"smoothing": 0.98})
    stability = result.stability(replicas=16)
    assert stability.replicas == 16 and stability.low <= stability.high
    assert result.losses.shape == (3, STEPS)


@pytest.mark.parametrize("curves, checked", [(MAX_CHECKED_CURVES, True),
                                              (MAX_CHECKED_CURVES + 1, False)])
def test_suggest_checks_at_most_sixteen_curves(monkeypatch, curves, checked):
    """The check's cost grows with the curves: past 16, stability() is called by hand."""
    calls = []
    monkeypatch.setattr(stability_check, "suggestion_stability",
                        lambda *args, **kwargs: calls.append(1) or Stability(True, 1.0, 1.0,
                                                                             0.0, 2))
    rows = np.stack([CLEAN + np.random.default_rng(s).normal(0, 0.05, STEPS)
                     for s in range(curves)])
    result = lrjax.RangeTestResult(LRS, rows, debiased_ema(rows, 0.98), np.full(curves, -1),
                                   batch_axes=("seed",), settings={"smoothing": 0.98})
    result.suggest()
    result.peak_lr()
    assert len(calls) == (2 if checked else 0)


def test_lrjax_find_prints_the_stability_warning_once_as_one_line(monkeypatch, capsys):
    from lrjax import cli
    from lrjax.cli import find_command

    unstable = result_of(TWO_FALLS, 0.1, 1)
    unstable = lrjax.RangeTestResult(unstable.lrs.astype(np.float32),
                                     unstable.losses.astype(np.float32),
                                     unstable.smoothed_losses.astype(np.float32), None,
                                     settings={"mode": "exp", "num_steps": STEPS,
                                               "smoothing": 0.98})
    monkeypatch.setattr(find_command, "_run_range_test", lambda *args: unstable)
    status = cli.main(["find", "--steps", str(STEPS), "--quiet", "--no-terminal-plot"])
    err = capsys.readouterr().err
    assert status == 0, err
    lines = [line for line in err.splitlines() if "unstable" in line]
    assert len(lines) == 1, err
    assert lines[0].startswith("lrjax: warning: fall's suggestion is unstable: ")
    assert "use more --steps, a larger --batch-size or more --seeds" in lines[0]
    assert "Warning" not in err and "warnings.warn" not in err


def test_cli_prints_the_warning_in_one_line():
    result = result_of(TWO_FALLS, 0.1, 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result.suggest()
    line = warning_line(caught[0].message)
    assert "\n" not in line and "unstable" in line and "--steps" in line


def test_the_method_default_is_the_module_constant():
    import inspect

    assert inspect.signature(lrjax.RangeTestResult.stability).parameters["replicas"].default == REPLICAS
