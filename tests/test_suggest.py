"""Suggestion rules on hand-made curves, against plain-loop numpy references."""

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_curves import finite_prefix, loop_truncated_mean

import lrjax
from lrjax.finder.suggest.curve import recorded_curve
from lrjax.finder.suggest.curve import usable_curve
from lrjax.finder.suggest.cyclical_bounds import centred_smooth

LRS = np.logspace(-5, 1, 60)
RULES = ["fall", "valley", "slide", "steep", "steepest", "minimum"]


# --- independent references (straight loops from the rules' definitions) --------------
def ref_valley(lrs, losses):
    """fastai's valley from its definition: the first longest strictly decreasing
    subsequence ending at e, of length L, is taken to start at e - L."""
    n = len(losses)
    length = [1] * n
    for i in range(n):
        for j in range(i):
            if losses[j] > losses[i]:
                length[i] = max(length[i], length[j] + 1)
    end = 0
    for i in range(n):
        if length[i] > length[end]:
            end = i
    size = length[end]
    return lrs[max(end - size + size // 3 + size // 6, 0)]


def ref_steep(lrs, losses):
    """fastai's steep: the left end of the steepest segment against log(lr)."""
    best, where = math.inf, 0
    for i in range(len(losses) - 1):
        slope = (losses[i + 1] - losses[i]) / (math.log(lrs[i + 1]) - math.log(lrs[i]))
        if slope < best:
            best, where = slope, i
    return lrs[where]


def ref_gradient(losses):
    """np.gradient with unit spacing: one-sided at the ends, central inside."""
    n = len(losses)
    return [losses[1] - losses[0] if i == 0 else losses[-1] - losses[-2] if i == n - 1
            else (losses[i + 1] - losses[i - 1]) / 2 for i in range(n)]


def ref_steepest(lrs, losses):
    """torch-lr-finder: the argmin of the per-step gradient, 10 points skipped at the
    start and 5 at the end of the recorded curve."""
    lrs, losses = lrs[10:len(lrs) - 5], losses[10:len(losses) - 5]
    grad = ref_gradient(list(losses))
    return lrs[min(range(len(grad)), key=grad.__getitem__)]


def ref_slide(lrs, losses, lr_diff=15, thresh=0.005):
    n = len(losses)
    grad = ref_gradient(list(losses))
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
    assert lrjax.finder.suggest.suggest_valley(LRS, curve) == pytest.approx(ref_valley(x, y))
    assert lrjax.finder.suggest.suggest_steep(LRS, curve) == pytest.approx(ref_steep(x, y))
    assert lrjax.finder.suggest.suggest_steepest(LRS, curve) == pytest.approx(ref_steepest(LRS, curve))
    assert lrjax.finder.suggest.suggest_minimum(LRS, curve) == pytest.approx(max(x[int(np.argmin(y))] / 10, LRS[0]))
    assert lrjax.finder.suggest.suggest_slide(LRS, curve) == pytest.approx(ref_slide(x, y))


def test_minimum_of_a_bowl_is_a_tenth_of_its_center():
    # The bowl's minimum is at lr = 1e-2, which is not on the grid: use the nearest grid point.
    nearest = LRS[np.argmin(np.abs(np.log10(LRS) + 2))]
    assert lrjax.finder.suggest.suggest_minimum(LRS, bowl()) == pytest.approx(nearest / 10)


def test_steepest_finds_the_inflection_of_a_sigmoid():
    # loss = 1 - tanh(log10(lr) + 2): steepest descent against log lr at lr = 1e-2.
    curve = 1 - np.tanh(np.log10(LRS) + 2)
    for rule in (lrjax.finder.suggest.suggest_steep, lrjax.finder.suggest.suggest_steepest):
        assert abs(math.log10(rule(LRS, curve)) + 2) <= 6 / 59 + 1e-9  # within one grid step


def test_valley_on_a_plateau_then_fall():
    # Flat (equal values are not a decrease), then a strict fall from index 20 to 40, then rise.
    curve = np.concatenate([np.full(20, 3.0), np.linspace(3.0, 1.0, 21)[1:], np.linspace(1.1, 2, 20)])
    x, y = trimmed(curve)
    assert lrjax.finder.suggest.suggest_valley(LRS, curve) == pytest.approx(ref_valley(x, y))
    # The longest decreasing run is one plateau point and the 20 falling ones: L = 21,
    # ending at 39, so fastai's start is 39 - 21 = 18 and the suggestion 18 + 7 + 3 = 28.
    assert lrjax.finder.suggest.suggest_valley(LRS, curve) == pytest.approx(LRS[28])


def test_nan_tail_is_cut_before_reading():
    curve = bowl().copy()
    curve[45:] = np.nan  # a NaN from step 45: the last 5 recorded points are NaN already
    x, y = LRS[6:45], curve[6:45]
    assert lrjax.finder.suggest.suggest_minimum(LRS, curve) == pytest.approx(x[np.argmin(y)] / 10)
    assert lrjax.finder.suggest.suggest_valley(LRS, curve) == pytest.approx(ref_valley(x, y))


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
            got = lrjax.finder.suggest.suggest_cyclical_bounds(LRS, curve)
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
    base, top = lrjax.finder.suggest.suggest_cyclical_bounds(LRS, curve, half_width=0)
    # No smoothing: the fall is 1; 10% covered (<= 1.9) first at 2 - 0.04 * 3 (index 13),
    # 90% covered (<= 1.1) first at 2 - 0.04 * 23 (index 33), two steps before the minimum.
    assert (base, top) == (LRS[13], LRS[33])
    # Default smoothing (half-width 3 of 60 points) against the loop reference.
    want = ref_cyclical_bounds(LRS, curve, 3)
    assert lrjax.finder.suggest.suggest_cyclical_bounds(LRS, curve) == pytest.approx(want)


@pytest.mark.parametrize("seed", range(4))
def test_cyclical_bounds_on_noisy_curves_match_the_reference(seed):
    curve = noisy_bowl(seed)
    curve[50:] = np.nan  # diverged at step 50
    got = lrjax.finder.suggest.suggest_cyclical_bounds(LRS, curve, half_width=4)
    assert got == pytest.approx(ref_cyclical_bounds(LRS, curve, 4))


def test_cyclical_bounds_cliff_uses_a_quarter_of_max():
    curve = np.concatenate([[2.0, 0.5], np.linspace(0.6, 3, 58)])
    base, top = lrjax.finder.suggest.suggest_cyclical_bounds(LRS, curve, half_width=0)
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
    assert (base, top) == lrjax.finder.suggest.suggest_cyclical_bounds(SYNTH_LRS, raw)
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
    assert lrjax.finder.suggest.suggest_slide(lrs, curve) == pytest.approx(ref_slide(x, y, lr_diff=len(y) - 1))


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
            assert math.isfinite(got) and lrs[0] <= got <= lrs[-1]
        base, top = lrjax.finder.suggest.suggest_cyclical_bounds(lrs, losses)
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
        lrjax.finder.suggest.suggest_valley(*args)


def test_bad_method_and_window_raise():
    with pytest.raises(ValueError, match="method"):
        lrjax.suggest_lr(LRS, bowl(), "best")
    with pytest.raises(ValueError, match="lr_diff"):
        lrjax.finder.suggest.suggest_slide(LRS, bowl(), lr_diff=0)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="adjust_value"):
            lrjax.finder.suggest.suggest_slide(LRS, bowl(), adjust_value=bad)
    with pytest.raises(ValueError, match="thresh"):
        lrjax.finder.suggest.suggest_slide(LRS, bowl(), thresh=-1.0)
    with pytest.raises(ValueError, match="fraction"):
        lrjax.finder.suggest.suggest_fall(LRS, bowl(), fraction=0.0)


# --- lrjax's default rule, fall --------------------------------------------------------------
def ref_fall(lrs, raw, fraction, half_width, with_bottom=False):
    """The documented fall rule with loops: truncated centred mean, median start, the
    cut after a blow-up, the last crossing of the level before the minimum (and, with
    ``with_bottom``, the index of that minimum)."""
    smooth = loop_truncated_mean(finite_prefix(raw), half_width)
    n = len(smooth)
    head = max(1, round(0.1 * len(lrs)))
    start = float(np.median(raw[:head]))
    low_all = min(smooth)
    running = math.inf
    for i in range(n):
        running = min(running, smooth[i])
        if smooth[i] > start and running < start - 0.5 * (start - low_all):
            smooth = smooth[:i]
            break
    bottom = min(range(len(smooth)), key=smooth.__getitem__)
    level = start - fraction * (start - smooth[bottom])
    index = 0
    for i in range(bottom):
        if smooth[i] > level:
            index = i + 1
    return (lrs[index], bottom) if with_bottom else lrs[index]


def sigmoid_curve(seed, noise=0.05, centre=-3.0, blow_up=-1.0):
    x = np.log10(LRS)
    clean = 1 + 2 / (1 + np.exp((x - centre) / 0.25)) + 30 * np.maximum(x - blow_up, 0) ** 2
    return clean + np.random.default_rng(seed).normal(scale=noise, size=x.size)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("fraction", [0.25, 0.75])
def test_fall_matches_the_loop_reference(seed, fraction):
    raw = sigmoid_curve(seed)
    raw[55:] = np.nan  # diverged
    got = lrjax.finder.suggest.suggest_fall(LRS, raw, fraction=fraction)
    assert got == pytest.approx(ref_fall(LRS, raw, fraction, 3))


def test_fall_reads_the_right_share_of_a_clean_fall():
    # 2 / (1 + exp((x + 3) / 0.25)) covers 25% of its fall at x = -3 - 0.25 ln 3 and 75% at
    # x = -3 + 0.25 ln 3 (the noise-free fall from 3 to 1, the blow-up far to the right).
    raw = sigmoid_curve(0, noise=0.0, blow_up=5.0)
    step = 6 / 59
    for fraction, x in ((0.25, -3 - 0.25 * math.log(3)), (0.75, -3 + 0.25 * math.log(3))):
        got = math.log10(lrjax.finder.suggest.suggest_fall(LRS, raw, fraction=fraction))
        assert abs(got - x) <= 2 * step  # the smoother's window and the grid


def test_fall_ignores_a_second_dip_after_a_blow_up():
    raw = sigmoid_curve(1, noise=0.01)
    raw[45:50] = 0.2  # after blowing up (above the start), a dip lower than the first minimum
    with_dip = lrjax.finder.suggest.suggest_fall(LRS, raw)
    raw[45:50] = raw[44]
    assert with_dip == lrjax.finder.suggest.suggest_fall(LRS, raw)


def result_from_raw(raw, val=None, smoothing=0.98):
    """A RangeTestResult made from raw curves with the range test's EMA and divergence."""
    raw = np.atleast_2d(np.asarray(raw, np.float64))
    smoothed, diverged = [], []
    for row in raw:
        ema, step = ref_ema_and_divergence(np.nan_to_num(row, nan=np.inf), smoothing)
        if not np.all(np.isfinite(row)):
            first_bad = int(np.flatnonzero(~np.isfinite(row))[0])
            step = first_bad if step is None else min(step, first_bad)
        full = np.full(row.size, np.nan)
        full[: ema.size] = ema
        smoothed.append(full)
        diverged.append(-1 if step is None else step)
    shape = raw.shape if raw.shape[0] > 1 else raw.shape[1:]
    batched = raw.shape[0] > 1
    return lrjax.RangeTestResult(
        lrs=LRS, losses=raw.reshape(shape), smoothed_losses=np.asarray(smoothed).reshape(shape),
        diverged_at=np.asarray(diverged) if batched else (None if diverged[0] < 0 else diverged[0]),
        val_losses=None if val is None else np.asarray(val, np.float64).reshape(shape),
        batch_axes=("seed",) if batched else ())


def test_result_fall_reads_the_validation_curve_when_given():
    train = sigmoid_curve(2, noise=0.02)
    val = sigmoid_curve(3, noise=0.02, centre=-4.0)  # generalisation improves earlier
    plain = result_from_raw(train)
    careful = result_from_raw(train, val=val)
    cut = plain.losses_before_divergence()
    assert plain.suggest(valley_weight=0) == lrjax.finder.suggest.suggest_fall(LRS, cut)
    val_cut = np.where(np.isnan(cut), np.nan, val)
    # A validation curve is read by its turn capped at 3/4 of its fall
    # (tests/test_suggest_turn.py), or with fraction= by that share of its fall.
    assert careful.suggest(valley_weight=0) == min(lrjax.finder.suggest.suggest_turn(LRS, val_cut),
                                    lrjax.finder.suggest.suggest_fall(LRS, val_cut, fraction=0.75))
    assert careful.suggest(fraction=0.25, valley_weight=0) == lrjax.finder.suggest.suggest_fall(LRS, val_cut)
    assert careful.suggest(fraction=0.25, valley_weight=0) < plain.suggest(valley_weight=0)
    assert plain.suggest("fall", fraction=0.75, valley_weight=0) == lrjax.finder.suggest.suggest_fall(LRS, cut, fraction=0.75)
    # An unreadable validation curve (NaN from step 0) falls back to the training curve.
    dead = result_from_raw(train, val=np.full(60, np.nan))
    assert dead.suggest(valley_weight=0) == plain.suggest(valley_weight=0)


def ref_fall_with_hint(lrs, train, val, train_steps):
    """The documented hint with loops: the plain reading (0.3 of the (validation) fall)
    raised toward the rate that trains ``train_steps`` steps as long as the ramp's sum of
    rates to the training curve's minimum, never past 3/4 of the fall."""
    curve = train if val is None else val
    ceiling = ref_fall(lrs, curve, 0.75, 3)
    plain = ref_fall(lrs, curve, 0.3, 3)
    _, bottom = ref_fall(lrs, train, 0.75, 3, with_bottom=True)
    time = 0.0
    for i in range(bottom + 1):
        time += lrs[i]
    return max(plain, min(ceiling, time / train_steps)), ceiling, time / train_steps, plain


@pytest.mark.parametrize("seed", range(3))
def test_fall_train_steps_hint_matches_the_loop_reference(seed):
    train = sigmoid_curve(seed, noise=0.02)
    train[56:] = np.nan  # diverged
    val = sigmoid_curve(seed + 10, noise=0.02, centre=-3.5)
    val[56:] = np.nan
    plain, careful = result_from_raw(train), result_from_raw(train, val=val)
    cut = plain.losses_before_divergence()
    branches = set()
    _, ceiling, time, floor = ref_fall_with_hint(LRS, cut, None, 1)  # matched at 1 step: time
    between = round(time / math.sqrt(ceiling * floor))  # matched inside (floor, ceiling)
    for steps in (5, between, 10**6):
        want, ceiling, matched, floor = ref_fall_with_hint(LRS, cut, None, steps)
        assert plain.suggest(train_steps=steps, valley_weight=0) == pytest.approx(want)
        assert plain.suggest(train_steps=steps, valley_weight=0) >= plain.suggest(valley_weight=0)  # never lowered
        branches.add("ceiling" if ceiling < matched else "matched" if matched > floor else "floor")
        want_val, ceiling, matched, floor = ref_fall_with_hint(LRS, cut, val, steps)
        # (without fraction=, the validation curve is read by its turn: test_suggest_turn.py)
        assert careful.suggest(train_steps=steps, fraction=0.75, valley_weight=0) == pytest.approx(want_val)
        assert lrjax.finder.suggest.suggest_fall(LRS, val, train_steps=steps, train_losses=cut) == pytest.approx(
            want_val)
    assert branches == {"ceiling", "matched", "floor"}  # each part of the rule was exercised
    # A short training is raised to the ceiling; fraction= changes the ceiling's share.
    assert careful.suggest(train_steps=5, fraction=0.5, valley_weight=0) == pytest.approx(
        ref_fall(LRS, val, 0.5, 3))


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "100"])
def test_fall_train_steps_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match="train_steps"):
        lrjax.finder.suggest.suggest_fall(LRS, sigmoid_curve(0), train_steps=bad)
    with pytest.raises(ValueError, match="train_steps"):
        result_from_raw(sigmoid_curve(0)).suggest(train_steps=bad)


# --- degenerate curves (issue 9) ---------------------------------------------------------------
def test_constant_loss_with_one_ulp_wobble_gives_no_confident_suggestion():
    base = np.float32(2.302585)
    wobble = np.where(np.arange(60) % 3 == 1, np.nextafter(base, np.float32(0)), base)
    result = result_from_raw(wobble.astype(np.float64))
    for rule in RULES:
        with pytest.warns(UserWarning, match="flat|never"):
            assert result.suggest(rule) == LRS[0]
        with pytest.warns(UserWarning, match="flat|never"):
            assert lrjax.suggest_lr(LRS, result.smoothed_losses, rule) == LRS[0]


def test_failed_curves_do_not_vote():
    good = [sigmoid_curve(seed, noise=0.02) for seed in (4, 5)]
    dead = np.full(60, np.nan)  # NaN from step 0
    result = result_from_raw([dead, good[0], dead, good[1]])
    singles = sorted(result_from_raw(curve).suggest() for curve in good)
    for rule in RULES:
        with pytest.warns(UserWarning, match="2 of 4 curves are unreadable"):
            got = result.suggest(rule)
        want = sorted(result_from_raw(curve).suggest(rule) for curve in good)[0]  # lower median
        assert got == want and got > LRS[0]
    with pytest.warns(UserWarning, match="2 of 4"):
        assert result.suggest() == singles[0]
    with pytest.warns(UserWarning, match="falling back"):
        assert result_from_raw([dead, dead]).suggest() == LRS[0]


def test_minimum_never_below_min_lr():
    curve = np.concatenate([[3.0] * 7, [0.5], np.linspace(0.6, 3.0, 52)])  # lowest at step 7
    assert LRS[7] / 10 < LRS[0]  # what fastai returns
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a readable curve, no fallback
        assert lrjax.finder.suggest.suggest_minimum(LRS, curve) == LRS[0]
        assert result_from_raw(curve, smoothing=0.0).suggest("minimum") == LRS[0]


def test_slide_rejects_a_non_positive_adjust_value_on_results_too():
    result = result_from_raw(sigmoid_curve(6))
    for bad in (-1, 0):
        with pytest.raises(ValueError, match="adjust_value"):
            result.suggest("slide", adjust_value=bad)
    with pytest.raises(ValueError, match="method"):
        result.suggest("best")


def test_replay_loss_of_exactly_zero_at_step_zero_does_not_diverge_at_step_one():
    import jax.numpy as jnp
    import optax

    losses = jnp.asarray(np.concatenate([[0.0], np.linspace(0.5, 0.1, 19)]), jnp.float32)
    result = lrjax.range_test(lambda p, b: b + 0.0 * p, jnp.zeros(()), optax.sgd, losses,
                              num_steps=20)
    assert result.diverged_at is None
    np.testing.assert_array_equal(np.isfinite(result.losses), True)


# ---- the valley blend (fall's reading on a whole result) ----------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fall_blends_the_valley_in_log_rate(seed):
    """suggest() = fall**0.65 * valley**0.35 per curve: the loop reference of the fall
    (ref_fall) and fastai's valley (tested equal to fastai's own in
    tests/test_fastai_parity.py) on the curve the peer records."""
    train = sigmoid_curve(seed, noise=0.02)
    train[56:] = np.nan
    result = result_from_raw(train)
    fall = ref_fall(LRS, train, 0.3, 3)
    x, y = recorded_curve(LRS, np.asarray(result.smoothed_losses), result.diverged_at)
    valley = lrjax.finder.suggest.suggest_valley(x, y, num_steps=LRS.size)
    assert lrjax.finder.suggest.vote.VALLEY_WEIGHT == 0.35
    assert result.suggest() == pytest.approx(fall ** 0.65 * valley ** 0.35, rel=1e-9)
    assert result.suggest(valley_weight=0) == pytest.approx(fall, rel=1e-12)
    assert result.suggest(valley_weight=1) == pytest.approx(valley, rel=1e-12)
    assert result.suggest(valley_weight=0.5) == pytest.approx(math.sqrt(fall * valley), rel=1e-9)
    # the peak of a schedule is twice the blended reading on a training curve
    assert result.peak_lr() == pytest.approx(2 * result.suggest(), rel=1e-12)


def test_fall_blends_the_valley_into_a_validation_turn_and_each_seed_votes():
    rows = [sigmoid_curve(seed, noise=0.02) for seed in (4, 5, 6)]
    vals = [1 + 2 / (1 + np.exp((np.log10(LRS) + 3.5) / 0.25))
            + 3 * np.maximum(np.log10(LRS) + 2.0 + 0.1 * k, 0) for k in range(3)]
    result = result_from_raw(rows, val=vals)
    turns = result.suggest(valley_weight=0, per_curve=True)
    valleys = result.suggest("valley", per_curve=True)
    want = sorted(turns ** 0.65 * valleys ** 0.35)[1]  # the lower median of three
    assert result.suggest() == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("bad, error", [(-0.1, ValueError), (1.5, ValueError),
                                        (float("nan"), ValueError), (True, TypeError),
                                        ("0.3", TypeError)])
def test_valley_weight_is_checked(bad, error):
    result = result_from_raw(sigmoid_curve(0, noise=0.02))
    with pytest.raises(error, match="valley_weight"):
        result.suggest(valley_weight=bad)
    with pytest.raises(ValueError, match="takes no valley_weight"):
        result.suggest("valley", valley_weight=0.5)


def test_fall_on_a_linear_ramp_is_not_blended():
    """The EMA valley reads lag in steps; on a linear ramp that is most of the range, so
    fall keeps its own reading there (a log-spaced ramp of the same ends is blended)."""
    lrs = np.linspace(1e-4, 1.0, 60)
    raw = 1 + 2 / (1 + np.exp((lrs - 0.3) / 0.05)) + np.random.default_rng(0).normal(0, 0.01, 60)
    ema, _ = ref_ema_and_divergence(raw, 0.98)
    result = lrjax.RangeTestResult(lrs=lrs, losses=raw, smoothed_losses=ema, diverged_at=None,
                                   val_losses=None, batch_axes=())
    assert result.suggest() == result.suggest(valley_weight=0)
    assert result.suggest() == lrjax.finder.suggest.suggest_fall(lrs, raw)
