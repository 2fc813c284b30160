"""plot_range_test: what is drawn (artists, labels, limits, markers), checked against numpy.

The results are built here from synthetic curves (no compile): the raw loss falls far below
its lagging EMA, as on real runs, so a y axis that follows the smoothed curve would cut off
the raw minimum. Headless: conftest sets MPLBACKEND=Agg.
"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import lrjax  # noqa: E402

STEPS = 80
LRS = np.logspace(-6, 1, STEPS)


def ema(raw, beta=0.95):
    """Bias-corrected EMA, the range test's smoothing, in numpy."""
    out, avg = np.empty(len(raw)), 0.0
    for i, value in enumerate(raw):
        avg = beta * avg + (1 - beta) * value
        out[i] = avg / (1 - beta ** (i + 1))
    return out


def raw_curve(seed=0, shift=0.0):
    """Plateau at 2.3, a fall to ~0.3 near lr 1e-2, then a blow-up; a little noise."""
    x = np.log10(LRS) + shift
    fall = 2.0 / (1 + np.exp(-(x + 3.0) * 3.0))
    rise = np.where(x > -1.0, (x + 1.0) ** 2 * 20, 0.0)
    return 2.3 - fall + rise + np.random.default_rng(seed).normal(0, 0.03, STEPS)


def diverged(smoothed, threshold=4.0):
    hit = np.flatnonzero(smoothed > threshold * np.minimum.accumulate(smoothed))
    return int(hit[0]) if hit.size else -1


def result_of(raws, *, batch_axes=(), sweep=None, val=None):
    """A RangeTestResult as range_test returns it: NaN after each curve's diverging step."""
    raws = np.array(raws, np.float64)
    smoothed = np.stack([ema(row) for row in raws.reshape(-1, STEPS)]).reshape(raws.shape)
    steps = np.array([diverged(row) for row in smoothed.reshape(-1, STEPS)])
    for raw, smooth, step in zip(raws.reshape(-1, STEPS), smoothed.reshape(-1, STEPS), steps):
        if step >= 0:
            raw[step + 1 :] = smooth[step + 1 :] = np.nan
    single = raws.ndim == 1
    return lrjax.RangeTestResult(
        lrs=LRS.astype(np.float32),
        losses=raws.astype(np.float32),
        smoothed_losses=smoothed.astype(np.float32),
        diverged_at=(int(steps[0]) if steps[0] >= 0 else None) if single
        else steps.reshape(raws.shape[:-1]),
        val_losses=None if val is None else np.asarray(val, np.float32),
        batch_axes=batch_axes,
        sweep=sweep,
        settings={"mode": "exp", "num_steps": STEPS},
    )


def draw(result, **kwargs):
    ax = Figure().subplots()
    assert lrjax.plot_range_test(result, ax=ax, **kwargs) is ax
    return ax


def line(ax, label_start):
    (found,) = [ln for ln in ax.get_lines() if ln.get_label().startswith(label_start)]
    return found


def legend_texts(ax):
    return [text.get_text() for text in ax.get_legend().get_texts()]


@pytest.fixture(scope="module")
def single():
    return result_of(raw_curve())


def test_raw_and_smoothed_are_drawn_and_the_y_axis_holds_the_raw_minimum(single):
    ax = draw(single)
    step = single.diverged_at
    assert step is not None  # the synthetic curve blows up, as a real test does
    raw, smoothed = line(ax, "raw loss"), line(ax, "smoothed loss")
    np.testing.assert_allclose(raw.get_xdata(), single.lrs, rtol=1e-6)
    np.testing.assert_allclose(raw.get_ydata()[: step + 1], single.losses[: step + 1], rtol=1e-6)
    np.testing.assert_allclose(smoothed.get_ydata()[: step + 1],
                               single.smoothed_losses[: step + 1], rtol=1e-6)
    assert raw.get_color() == smoothed.get_color() and raw.get_linewidth() < smoothed.get_linewidth()
    low, high = ax.get_ylim()
    raw_before = single.losses[:step]
    assert low <= np.nanmin(raw_before) < np.nanmin(single.smoothed_losses[:step])
    # The raw minimum is far below the smoothed one here: a y axis following the
    # smoothed curve (the old plot) would have cut it off.
    assert np.nanmin(raw_before) < np.nanmin(single.smoothed_losses[:step]) - 0.5
    assert low >= 0  # a loss >= 0 gets no negative axis
    # The top shows the plateau but is not stretched by the blow-up before divergence.
    assert high >= np.nanmax(single.smoothed_losses[:10])
    assert high < np.nanmax(single.smoothed_losses[:step])
    assert ax.get_xscale() == "log" and ax.get_xlabel().startswith("learning rate")
    assert ax.get_ylabel() == "loss"


def test_suggestion_is_a_dot_on_the_smoothed_curve(single):
    ax = draw(single, method="valley")
    valley = single.suggest("valley")
    dot = line(ax, "suggestion (valley)")
    assert dot.get_marker() == "o" and dot.get_linestyle() == "None"
    index = int(np.argmin(np.abs(LRS - valley)))  # valley returns a grid lr
    np.testing.assert_allclose(dot.get_xdata(), [single.lrs[index]], rtol=1e-6)
    np.testing.assert_allclose(dot.get_ydata(), [single.smoothed_losses[index]], rtol=1e-6)
    assert f"{valley:.2g}" in dot.get_label() and f"{valley:.2g}" in ax.get_title()


def test_every_other_rule_has_its_own_marker_and_minimum_says_divided_by_10(single):
    ax = draw(single, method="valley")
    others = {m: v for m, v in single.suggestions().items() if m != "valley"}
    marks = [line(ax, lrjax.plot.figures.rule_label(m) + ":") for m in others]
    assert len({m.get_marker() for m in marks}) == len(marks)  # distinct shapes
    assert len({m.get_color() for m in marks}) == len(marks)  # and colours
    for mark, (method, value) in zip(marks, others.items()):
        np.testing.assert_allclose(mark.get_xdata(), [value], rtol=1e-6)
        # On the smoothed curve, read linearly in log10(lr) (numpy's interp as reference).
        finite = np.isfinite(single.smoothed_losses)
        expected = np.interp(np.log10(value), np.log10(LRS[finite]),
                             single.smoothed_losses[finite])
        np.testing.assert_allclose(mark.get_ydata(), [expected], rtol=1e-5)
    texts = legend_texts(ax)
    assert any(text.startswith("minimum/10: ") for text in texts)
    assert not any(text.startswith("minimum: ") for text in texts)


def test_divergence_is_marked_and_cyclical_bounds_are_a_band(single):
    ax = draw(single)
    cross = line(ax, "diverged at lr")
    assert cross.get_marker() == "x"
    np.testing.assert_allclose(cross.get_xdata(), [single.lrs[single.diverged_at]], rtol=1e-6)
    base_lr, max_lr = single.cyclical_bounds()
    (band,) = [p for p in ax.patches if p.get_label().startswith("cyclical bounds")]
    # In data coordinates whatever the patch type (Polygon or Rectangle by version).
    display = band.get_transform().transform(band.get_path().vertices)
    xs = ax.transData.inverted().transform(display)[:, 0]
    np.testing.assert_allclose([xs.min(), xs.max()], [base_lr, max_lr], rtol=1e-6)


def test_by_default_the_results_own_default_rule_is_marked(single):
    ax = draw(single)
    (dot,) = [ln for ln in ax.get_lines() if ln.get_label().startswith("suggestion (")]
    np.testing.assert_allclose(dot.get_xdata(), [single.suggest()], rtol=1e-6)
    assert f"{single.suggest():.2g}" in ax.get_title()


def test_method_picks_the_marked_rule_and_a_new_figure_without_ax(single):
    ax = lrjax.plot_range_test(single, method="steepest", title="mine")
    dot = line(ax, "suggestion (steepest)")
    np.testing.assert_allclose(dot.get_xdata(), [single.suggest("steepest")], rtol=1e-6)
    assert ax.get_title() == "mine"
    assert any(text.startswith("valley: ") for text in legend_texts(ax))
    plt.close(ax.figure)


def test_validation_loss_is_drawn_and_inside_the_y_range():
    val = raw_curve(seed=5) - 0.25
    result = result_of(raw_curve(), val=val)
    ax = draw(result)
    drawn = line(ax, "validation loss")
    step = result.diverged_at
    np.testing.assert_allclose(drawn.get_ydata()[: step + 1], result.val_losses[: step + 1],
                               rtol=1e-6)
    assert drawn.get_linestyle() == "--"
    assert ax.get_ylim()[0] <= np.nanmin(result.val_losses[:step])


def test_the_default_rule_reads_the_validation_curve_and_its_dot_sits_there():
    val = raw_curve(seed=5) - 0.25
    result = result_of(raw_curve(), val=val)
    ax = draw(result)  # the default rule, fall, reads the validation curve by its turn
    chosen = result.suggest()
    dot = line(ax, "suggestion (fall)")
    finite = np.isfinite(result.val_losses)
    want = np.interp(np.log10(chosen), np.log10(LRS[finite]), result.val_losses[finite])
    np.testing.assert_allclose(dot.get_xdata(), [chosen], rtol=1e-6)
    np.testing.assert_allclose(dot.get_ydata(), [want], rtol=1e-5)


def test_seeds_are_a_median_with_a_band():
    raws = np.stack([raw_curve(seed=s, shift=0.1 * s) for s in range(3)])
    result = result_of(raws, batch_axes=("seed",))
    ax = draw(result, method="valley")
    steps = np.asarray(result.diverged_at)
    first = int(steps.min())
    smoothed = line(ax, "smoothed loss (median of 3 seeds)")
    np.testing.assert_allclose(smoothed.get_ydata()[:first],
                               np.median(result.smoothed_losses[:, :first], axis=0), rtol=1e-6)
    (band,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert "3 seeds" in band.get_label()
    ys = band.get_paths()[0].vertices[:, 1]
    np.testing.assert_allclose([ys.min(), ys.max()],
                               [np.nanmin(result.smoothed_losses), np.nanmax(result.smoothed_losses)],
                               rtol=1e-6)
    crosses = line(ax, "diverged: 3 of 3 seeds")
    np.testing.assert_allclose(np.sort(crosses.get_xdata()), np.sort(result.lrs[steps]), rtol=1e-6)
    dot = line(ax, "suggestion (valley)")
    np.testing.assert_allclose(dot.get_xdata(), [result.suggest("valley")], rtol=1e-6)


def test_sweep_has_one_curve_and_one_suggestion_dot_per_value():
    values = [1e-4, 1e-3, 1e-2]
    raws = np.stack([[raw_curve(seed=s, shift=0.5 * i) for s in range(2)]
                     for i in range(len(values))])
    result = result_of(raws, batch_axes=("weight_decay", "seed"),
                       sweep={"weight_decay": values})
    ax = draw(result, method="valley")
    curves = [ln for ln in ax.get_lines() if ln.get_label().startswith("weight_decay=")]
    assert [c.get_label().split(":")[0] for c in curves] == [f"weight_decay={v:g}" for v in values]
    assert len({c.get_color() for c in curves}) == 3
    dots = [ln for ln in ax.get_lines() if ln.get_marker() == "o" and len(ln.get_xdata()) == 1]
    assert len(dots) == 3
    per_curve = np.asarray(result.suggest("valley", per_curve=True))
    for i, (curve, dot) in enumerate(zip(curves, dots)):
        # Each value's own suggestion: the result's vote over that value's seeds alone,
        # which is what a range test of that value by itself would say.
        alone = lrjax.RangeTestResult(
            lrs=result.lrs, losses=result.losses[i], smoothed_losses=result.smoothed_losses[i],
            diverged_at=np.asarray(result.diverged_at)[i], batch_axes=("seed",))
        expected = alone.suggest("valley")
        assert per_curve[i].min() <= expected <= per_curve[i].max()
        np.testing.assert_allclose(dot.get_xdata(), [expected], rtol=1e-6)
        assert dot.get_color() == curve.get_color()
        assert f"valley {expected:.2g}" in curve.get_label()
    # No shared set of suggestion lines across the sweep.
    assert not any(p.get_label().startswith("cyclical") for p in ax.patches)
    assert "weight_decay" in ax.get_title()
    assert ax.get_ylim()[0] <= np.nanmin(result.losses_before_divergence())


def test_a_long_sweep_gets_a_colour_per_value():
    values = [10.0**-k for k in range(12)]  # more values than matplotlib's 10-colour cycle
    result = result_of([raw_curve(seed=i, shift=0.05 * i) for i in range(12)],
                       batch_axes=("weight_decay",), sweep={"weight_decay": values})
    ax = draw(result, method="valley")
    curves = [ln for ln in ax.get_lines() if ln.get_label().startswith("weight_decay=")]
    assert len(curves) == 12
    assert len({tuple(matplotlib.colors.to_rgba(c.get_color())) for c in curves}) == 12
    # Its key sits right of the axes, not over the curves.
    assert ax.get_legend().get_bbox_to_anchor().x0 > ax.bbox.x1


@pytest.mark.filterwarnings("ignore:fall")  # the spike puts the EMA's start above its fall
def test_a_noisy_first_batch_does_not_stretch_the_axis():
    raw = raw_curve()
    raw[2] = 40.0  # one bad batch on the plateau
    result = result_of(raw)
    ax = draw(result)
    assert ax.get_ylim()[1] < 10.0
    assert ax.get_ylim()[0] <= np.nanmin(result.losses_before_divergence())


def test_a_curve_without_divergence_still_draws():
    raw = 2.0 - np.linspace(0, 1, STEPS)  # falls to the end, never diverges
    result = result_of(raw)
    ax = draw(result)
    assert result.diverged_at is None
    assert not [ln for ln in ax.get_lines() if ln.get_label().startswith("diverged")]
    low, high = ax.get_ylim()
    assert low <= np.nanmin(raw) and high >= raw[0]


@pytest.mark.filterwarnings("ignore")  # the rules warn that two points are too few
def test_a_test_that_diverges_at_once_still_draws():
    raw = np.full(STEPS, np.nan)
    raw[:2] = [2.0, np.inf]
    smoothed = raw.copy()
    result = lrjax.RangeTestResult(lrs=LRS, losses=raw, smoothed_losses=smoothed, diverged_at=1,
                                   settings={"mode": "exp"})
    ax = draw(result)
    low, high = ax.get_ylim()
    assert np.isfinite([low, high]).all() and low <= 2.0 <= high
    np.testing.assert_allclose(line(ax, "diverged at lr").get_xdata(), [LRS[1]])
