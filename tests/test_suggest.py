"""Suggestion rules on hand-made curves, against plain-loop numpy references."""

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lrjax
from lrjax.suggest import centred_smooth, usable_curve

LRS = np.logspace(-5, 1, 60)
RULES = ["valley", "steepest", "minimum", "slide"]


# --- independent references (straight loops from the rules' definitions) --------------
def ref_valley(lrs, losses):
    n = len(losses)
    length, first = [1] * n, list(range(n))
    for i in range(n):
        for j in range(i):
            # >=: among equally long predecessors the latest wins (tightest valley)
            if losses[j] > losses[i] and length[j] + 1 >= length[i]:
                length[i], first[i] = length[j] + 1, first[j]
    end = 0
    for i in range(n):
        if length[i] > length[end]:
            end = i
    span = end - first[end]
    return lrs[first[end] + span // 3 + span // 6]


def ref_steepest(lrs, losses):
    best, where = math.inf, 0
    for i in range(len(losses) - 1):
        slope = (losses[i + 1] - losses[i]) / (math.log(lrs[i + 1]) - math.log(lrs[i]))
        if slope < best:
            best, where = slope, i
    return lrs[where]


def ref_slide(lrs, losses, lr_diff=15, thresh=0.005):
    n = len(losses)
    grad = [0.0] * n
    for i in range(n):  # np.gradient: one-sided at the ends, central inside
        if i == 0:
            grad[i] = losses[1] - losses[0]
        elif i == n - 1:
            grad[i] = losses[-1] - losses[-2]
        else:
            grad[i] = (losses[i + 1] - losses[i - 1]) / 2
    right = n - 1
    left = right - min(lr_diff, n - 1)
    found = lrs[left]
    while left >= 0 and abs(grad[right] - grad[left]) > thresh:
        found = lrs[left]
        right, left = right - 1, left - 1
    return found


def ref_centred_smooth(values, half_width):
    """Order-1 Savitzky-Golay from its definition: at each point, the least-squares line
    through the window centred on it, or through the first/last full window at the ends,
    evaluated there (normal equations written out, no polyfit)."""
    n = len(values)
    h = min(half_width, (n - 1) // 2)
    out = []
    for i in range(n):
        lo = min(max(i - h, 0), n - 1 - 2 * h)
        ks = list(range(lo, lo + 2 * h + 1))
        k_mean = sum(ks) / len(ks)
        v_mean = sum(values[k] for k in ks) / len(ks)
        spread = sum((k - k_mean) ** 2 for k in ks)
        slope = sum((k - k_mean) * (values[k] - v_mean) for k in ks) / spread if spread else 0.0
        out.append(v_mean + slope * (i - k_mean))
    return np.asarray(out)


def ref_cyclical_bounds(lrs, raw, half_width):
    """The documented rule with loops: smooth the finite prefix, 10% / 90% of the fall."""
    finite = 0
    while finite < len(raw) and math.isfinite(raw[finite]):
        finite += 1
    y = ref_centred_smooth(raw[:finite], half_width)
    low = min(y)
    base = next(i for i in range(finite) if y[i] <= y[0] - 0.1 * (y[0] - low))
    top = next(i for i in range(finite) if y[i] <= y[0] - 0.9 * (y[0] - low))
    return (lrs[base] if base < top else lrs[top] / 4), lrs[top]


def ref_ema_and_divergence(losses, beta=0.98, threshold=4.0):
    """The range test's bias-corrected EMA and divergence step, from their definitions."""
    avg, best, smoothed = 0.0, math.inf, []
    for t, loss in enumerate(losses):
        avg = beta * avg + (1 - beta) * loss
        smoothed.append(avg / (1 - beta ** (t + 1)))
        best = min(best, smoothed[-1])
        if smoothed[-1] > threshold * best:
            return np.asarray(smoothed), t
    return np.asarray(smoothed), None


def trimmed(losses):
    """The default usable part of a finite 60-point curve: skip 6 at the start, 5 at the end."""
    return LRS[6:-5], np.asarray(losses)[6:-5]


def bowl(center=-2.0, width=1.5):
    """A smooth loss curve with its minimum at lr = 10**center."""
    return 1.0 + ((np.log10(LRS) - center) / width) ** 2


def noisy_bowl(seed):
    return bowl() + np.random.default_rng(seed).normal(scale=0.05, size=LRS.size)


# --- the rules against the references -------------------------------------------------
@pytest.mark.parametrize("curve", [bowl(), noisy_bowl(0), noisy_bowl(1), bowl(0.0, 3.0)])
def test_rules_match_loop_references(curve):
    x, y = trimmed(curve)
    assert lrjax.suggest_valley(LRS, curve) == pytest.approx(ref_valley(x, y))
    assert lrjax.suggest_steepest(LRS, curve) == pytest.approx(ref_steepest(x, y))
    assert lrjax.suggest_minimum(LRS, curve) == pytest.approx(x[int(np.argmin(y))] / 10)
    assert lrjax.suggest_slide(LRS, curve) == pytest.approx(ref_slide(x, y))


def test_minimum_of_a_bowl_is_a_tenth_of_its_center():
    # The bowl's minimum is at lr = 1e-2, which is not on the grid: use the nearest grid point.
    nearest = LRS[np.argmin(np.abs(np.log10(LRS) + 2))]
    assert lrjax.suggest_minimum(LRS, bowl()) == pytest.approx(nearest / 10)


def test_steepest_finds_the_inflection_of_a_sigmoid():
    # loss = 1 - tanh(log10(lr) + 2): steepest descent against log lr at lr = 1e-2.
    curve = 1 - np.tanh(np.log10(LRS) + 2)
    got = lrjax.suggest_steepest(LRS, curve)
    assert abs(math.log10(got) + 2) <= 6 / 59 + 1e-9  # within one grid step


def test_valley_on_a_plateau_then_fall():
    # Flat (equal values are not a decrease), then a strict fall from index 20 to 40, then rise.
    curve = np.concatenate([np.full(20, 3.0), np.linspace(3.0, 1.0, 21)[1:], np.linspace(1.1, 2, 20)])
    x, y = trimmed(curve)
    assert lrjax.suggest_valley(LRS, curve) == pytest.approx(ref_valley(x, y))
    # The valley runs from the last plateau point (index 19) to the bottom (39): L = 20,
    # suggestion at 19 + 6 + 3 = 28.
    assert lrjax.suggest_valley(LRS, curve) == pytest.approx(LRS[28])


def test_nan_tail_is_cut_before_reading():
    curve = bowl().copy()
    curve[45:] = np.nan  # divergence at step 45
    x, y = LRS[6:40], curve[6:40]
    assert lrjax.suggest_minimum(LRS, curve) == pytest.approx(x[np.argmin(y)] / 10)
    assert lrjax.suggest_valley(LRS, curve) == pytest.approx(ref_valley(x, y))


def test_usable_curve_trims_and_falls_back():
    x, y = usable_curve(LRS, bowl())
    np.testing.assert_array_equal(x, LRS[6:-5])
    short = np.full(60, np.nan)
    short[:3] = [3.0, 2.0, 1.0]
    x, y = usable_curve(LRS, short)  # trimming would leave nothing: untrimmed prefix
    np.testing.assert_array_equal(y, [3.0, 2.0, 1.0])


@pytest.mark.parametrize("rule", RULES + ["cyclical"])
@pytest.mark.parametrize("case", ["increasing", "at_once", "all_nan", "flat"])
def test_unreadable_curves_warn_and_fall_back_to_min_lr(rule, case):
    curve = {
        "increasing": np.linspace(1.0, 5.0, 60),
        "at_once": np.concatenate([[2.0], np.full(59, np.nan)]),
        "all_nan": np.full(60, np.nan),
        "flat": np.full(60, 2.0),
    }[case]
    with pytest.warns(UserWarning, match="falling back"):
        if rule == "cyclical":
            got = lrjax.suggest_cyclical_bounds(LRS, curve)
            assert got == (LRS[0], LRS[0])
        else:
            got = lrjax.suggest_lr(LRS, curve, rule)
            assert got == LRS[0]


def test_centred_smooth_matches_reference_and_has_no_lag():
    noisy = np.random.default_rng(3).normal(size=23)
    for half_width in (0, 1, 4, 11, 30):
        np.testing.assert_allclose(centred_smooth(noisy, half_width),
                                   ref_centred_smooth(noisy, half_width), rtol=1e-10, atol=1e-12)
    # Zero lag: a straight line comes out unchanged, ends included (an EMA would trail it).
    line = 3.0 - 0.25 * np.arange(40)
    np.testing.assert_allclose(centred_smooth(line, 5), line, rtol=1e-12)
    assert centred_smooth([2.0], 3).tolist() == [2.0]
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="half_width"):
            centred_smooth(line, bad)


def test_cyclical_bounds_by_hand():
    # Flat at 2 up to index 10, falls 0.04 a step to 1 at index 35, then rises 0.1 a step.
    fall, rise = 2.0 - 0.04 * np.arange(1, 26), 1.0 + 0.1 * np.arange(1, 25)
    curve = np.concatenate([np.full(11, 2.0), fall, rise])
    base, top = lrjax.suggest_cyclical_bounds(LRS, curve, half_width=0)
    # No smoothing: the fall is 1; 10% covered (<= 1.9) first at 2 - 0.04 * 3 (index 13),
    # 90% covered (<= 1.1) first at 2 - 0.04 * 23 (index 33), two steps before the minimum.
    assert (base, top) == (LRS[13], LRS[33])
    # Default smoothing (half-width 3 of 60 points) against the loop reference.
    want = ref_cyclical_bounds(LRS, curve, 3)
    assert lrjax.suggest_cyclical_bounds(LRS, curve) == pytest.approx(want)


@pytest.mark.parametrize("seed", range(4))
def test_cyclical_bounds_on_noisy_curves_match_the_reference(seed):
    curve = noisy_bowl(seed)
    curve[50:] = np.nan  # diverged at step 50
    got = lrjax.suggest_cyclical_bounds(LRS, curve, half_width=4)
    assert got == pytest.approx(ref_cyclical_bounds(LRS, curve, 4))


def test_cyclical_bounds_cliff_uses_a_quarter_of_max():
    curve = np.concatenate([[2.0, 0.5], np.linspace(0.6, 3, 58)])
    base, top = lrjax.suggest_cyclical_bounds(LRS, curve, half_width=0)
    assert (base, top) == (pytest.approx(LRS[1] / 4), LRS[1])


# A range-test curve of known shape: a sigmoid fall of 2 in log10(lr) centred at 10**-3.5,
# then a quadratic blow-up from 10**-2 on; 100 steps from 1e-6 to 10 (0.0707 decades each).
SYNTH_LRS = np.logspace(-6, 1, 100)
SYNTH_STEP = 7 / 99


def synthetic_loss(lrs):
    x = np.log10(lrs)
    return 1 + 2 / (1 + np.exp((x + 3.5) / 0.3)) + 40 * np.maximum(x + 2, 0) ** 2


def first_covering(curve, fraction):
    """First index where ``curve`` has covered ``fraction`` of its fall to its minimum."""
    return int(np.argmax(curve <= curve[0] - fraction * (curve[0] - curve.min())))


@pytest.mark.parametrize("seed", range(5))
def test_cyclical_bounds_are_not_shifted_by_the_ema_lag(seed):
    clean = synthetic_loss(SYNTH_LRS)
    raw = clean + np.random.default_rng(seed).normal(scale=0.05, size=clean.size)
    ema, diverged = ref_ema_and_divergence(raw)
    assert diverged is not None
    # The noise-free curve's 10% / 90% points, over the same steps as the noisy one.
    want_base = SYNTH_LRS[first_covering(clean[:diverged], 0.1)]
    want_max = SYNTH_LRS[first_covering(clean[:diverged], 0.9)]
    clean_min = SYNTH_LRS[np.argmin(clean[:diverged])]
    raw[diverged:] = np.nan  # what the range test records
    result = lrjax.RangeTestResult(lrs=SYNTH_LRS, losses=raw, smoothed_losses=ema,
                                   diverged_at=diverged)
    base, top = result.cyclical_bounds()
    assert (base, top) == lrjax.suggest_cyclical_bounds(SYNTH_LRS, raw)
    # Tolerance 2 grid steps for max_lr (the 90% point sits on a steep part of the fall),
    # 4 for base_lr (on the flat shoulder noise moves the 10% crossing more).
    assert abs(math.log10(top / want_max)) <= 2 * SYNTH_STEP + 1e-9
    assert abs(math.log10(base / want_base)) <= 4 * SYNTH_STEP + 1e-9
    # The EMA's lag: the old rule (max_lr at the EMA's minimum before divergence) lands
    # past the noise-free minimum, where the loss is already rising; even the same 90%
    # rule read off the EMA lands at least half a decade to the right.
    old_max = SYNTH_LRS[np.argmin(ema[:diverged])]
    assert old_max > clean_min and math.log10(old_max / want_max) > 0.8
    ema_90 = SYNTH_LRS[first_covering(ema[:diverged], 0.9)]
    assert math.log10(ema_90 / want_max) > 0.5


def test_slide_on_short_curve_shortens_the_window():
    lrs, curve = LRS[:8], bowl()[:8]
    x, y = usable_curve(lrs, curve)
    assert lrjax.suggest_slide(lrs, curve) == pytest.approx(ref_slide(x, y, lr_diff=len(y) - 1))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    values=st.lists(st.one_of(st.floats(0.01, 100.0), st.just(float("nan"))), min_size=2, max_size=40),
)
def test_rules_never_return_nan(values):
    losses = np.asarray(values)
    lrs = np.logspace(-6, 0, losses.size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for rule in RULES:
            got = lrjax.suggest_lr(lrs, losses, rule)
            assert math.isfinite(got) and lrs[0] / 10 - 1e-18 <= got <= lrs[-1]
        base, top = lrjax.suggest_cyclical_bounds(lrs, losses)
        assert 0 < base <= top <= lrs[-1]


@pytest.mark.parametrize(
    "args, match",
    [
        ((LRS, bowl()[:10]), "equal length"),
        ((LRS[::-1], bowl()), "strictly increasing"),
        ((-LRS, bowl()), "positive"),
        ((np.array([]), np.array([])), "empty"),
    ],
)
def test_bad_curves_raise(args, match):
    with pytest.raises(ValueError, match=match):
        lrjax.suggest_valley(*args)


def test_bad_method_and_window_raise():
    with pytest.raises(ValueError, match="method"):
        lrjax.suggest_lr(LRS, bowl(), "best")
    with pytest.raises(ValueError, match="lr_diff"):
        lrjax.suggest_slide(LRS, bowl(), lr_diff=0)
