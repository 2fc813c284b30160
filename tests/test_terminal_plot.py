"""Tests of lrjax.plot.terminal against cell positions computed here from the stated formula."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lrjax.plot.terminal import PAD_ABOVE, PAD_BELOW, TOP_QUANTILE, loss_limits, text_plot

POINT, MARK, POINT_ASCII = "•", "┊", "*"


def plot_area(text: str, height: int, tick: str = "┤") -> list[str]:
    """The ``height`` rows of the plot area, with the y labels and the y axis cut off."""
    rows = text.split("\n")[:height]
    start = rows[0].index(tick) + 1  # the top row always carries a labelled tick
    return [row[start:] for row in rows]


def cells_of(area: list[str], glyph: str) -> set[tuple[int, int]]:
    return {(r, c) for r, row in enumerate(area) for c, ch in enumerate(row) if ch == glyph}


def scaled(value, low, high, cells):
    """Nearest cell of ``value`` on ``cells`` cells from low to high; the middle if low == high."""
    if high == low:
        return (cells - 1) // 2
    return round((value - low) / (high - low) * (cells - 1))


def expected_cells(lrs, losses, width, height, log_x=True, y_limits=None):
    """Reference: row 0 is the top; columns span the plotted x range; rounding to nearest."""
    kept = []
    for lr, loss in zip(lrs, losses):
        if not (math.isfinite(lr) and math.isfinite(loss)) or (log_x and lr <= 0):
            continue
        kept.append((math.log10(lr) if log_x else lr, loss))
    xs = [x for x, _ in kept]
    ys = [y for _, y in kept]
    y_low, y_high = y_limits if y_limits else (min(ys), max(ys))
    cells = set()
    for x, y in kept:
        if not y_low <= y <= y_high:
            continue
        col = scaled(x, min(xs), max(xs), width)
        cells.add((height - 1 - scaled(y, y_low, y_high, height), col))
    return cells


def test_points_land_where_the_formula_puts_them():
    rng = np.random.default_rng(0)
    lrs = np.logspace(-6, 1, 80)
    losses = rng.uniform(0.1, 3.0, 80)
    losses[[5, 40]] = np.nan
    losses[41] = np.inf
    lrs_with_zero = np.concatenate([[0.0], lrs])  # lr 0 cannot be shown on a log axis
    losses_with_zero = np.concatenate([[1.0], losses])
    text = text_plot(lrs_with_zero, losses_with_zero, width=50, height=12)
    area = plot_area(text, 12)
    assert cells_of(area, POINT) == expected_cells(lrs, losses, 50, 12)
    assert max(len(row) for row in area) <= 50


def test_decreasing_curve_runs_from_top_left_to_bottom_right():
    lrs = np.logspace(-5, 0, 30)
    area = plot_area(text_plot(lrs, np.linspace(3.0, 1.0, 30), width=30, height=8), 8)
    assert area[0][0] == POINT
    assert area[7][29] == POINT


def test_mark_is_a_vertical_line_in_its_column_with_legend_and_tick():
    lrs = np.logspace(-4, 0, 40)  # log10 from -4 to 0 over 41 columns: one column per 0.1
    losses = (np.log10(lrs) + 2.0) ** 2
    text = text_plot(lrs, losses, marks={"valley": 10**-1.5}, width=41, height=10)
    area = plot_area(text, 10)
    column = round((-1.5 + 4.0) / 4.0 * 40)
    mark_rows = {r for r, c in cells_of(area, MARK) if c == column}
    point_rows = {r for r, c in cells_of(area, POINT) if c == column}
    assert area[0][column] in ("v", POINT)  # the mark's initial heads the line
    assert mark_rows | point_rows | {0} == set(range(10))
    axis_line = text.split("\n")[10]
    assert axis_line.index("┬") == axis_line.index("└") + 1 + column
    assert "v = valley: 0.0316" in text


def test_mark_outside_the_range_is_only_in_the_legend():
    text = text_plot([1e-3, 1e-2], [1.0, 2.0], marks={"minimum": 5.0}, width=20, height=4)
    assert MARK not in text and "┬" not in text
    assert "m = minimum: 5" in text


def test_ascii_only_uses_ascii():
    lrs = np.logspace(-3, 0, 20)
    text = text_plot(lrs, lrs**2, marks={"steepest": 0.01}, ascii_only=True, width=20, height=5)
    assert all(ord(ch) < 128 for ch in text)
    area = plot_area(text, 5, tick="+")
    assert cells_of(area, POINT_ASCII) == expected_cells(lrs, lrs**2, 20, 5)


def test_linear_axis_and_y_limits_drop_points_outside():
    lrs = np.linspace(0.0, 1.0, 21)
    losses = np.linspace(0.0, 4.0, 21)
    text = text_plot(lrs, losses, log_x=False, y_limits=(1.0, 3.0), width=21, height=5)
    area = plot_area(text, 5)
    assert cells_of(area, POINT) == expected_cells(lrs, losses, 21, 5, False, (1.0, 3.0))
    assert "(log scale)" not in text


def test_constant_curve_and_single_point_sit_in_the_middle():
    area = plot_area(text_plot([1e-3, 1e-2, 1e-1], [2.0, 2.0, 2.0], width=20, height=5), 5)
    assert cells_of(area, POINT) == {(2, 0), (2, 10), (2, 19)}
    area = plot_area(text_plot([1e-3], [2.0], width=20, height=5), 5)
    assert cells_of(area, POINT) == {(2, 9)}


def test_nothing_finite_gives_a_note():
    assert text_plot([1e-3, 1e-2], [math.nan, math.inf]) == "(nothing to plot: no finite loss)"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"lrs": [1.0, 2.0], "losses": [1.0]}, "same length"),
        ({"width": 5}, "width"),
        ({"height": 2}, "height"),
        ({"y_limits": (2.0, 1.0)}, "y_limits"),
        ({"y_limits": (0.0, math.nan)}, "y_limits"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, match):
    call = {"lrs": [1e-3, 1e-2], "losses": [1.0, 2.0]} | kwargs
    with pytest.raises(ValueError, match=match):
        text_plot(call.pop("lrs"), call.pop("losses"), **call)


@settings(max_examples=40, deadline=None)
@given(
    losses=st.lists(
        st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=1, max_size=40
    ),
    width=st.integers(16, 70),
    height=st.integers(3, 20),
)
def test_any_curve_renders_within_its_frame(losses, width, height):
    lrs = np.logspace(-7, 1, len(losses))
    text = text_plot(lrs, losses, marks={"valley": 1e-3}, width=width, height=height)
    finite = [y for y in losses if math.isfinite(y)]
    if not finite:
        assert text.startswith("(nothing to plot")
        return
    lines = text.split("\n")
    assert len(lines) == height + 4  # area, x axis, x labels, caption, one legend line
    area = plot_area(text, height)
    assert cells_of(area, POINT) == expected_cells(lrs, losses, width, height)


def test_y_label_background_and_key():
    lrs = np.logspace(-4, 0, 30)
    smoothed = np.linspace(3.0, 1.0, 30)
    raw = smoothed - 0.8  # the raw loss falls lower than its lagging average
    text = text_plot(lrs, smoothed, background=raw, y_label="training loss",
                     labels=("smoothed loss", "raw loss"), width=30, height=10)
    lines = text.split("\n")
    assert lines[0] == "training loss"  # says what the y values are, above the axis
    area = plot_area("\n".join(lines[1:]), 10)
    limits = (min(raw.min(), smoothed.min()), max(raw.max(), smoothed.max()))
    main = expected_cells(lrs, smoothed, 30, 10, y_limits=limits)
    behind = expected_cells(lrs, raw, 30, 10, y_limits=limits)
    assert cells_of(area, POINT) == main
    assert cells_of(area, "·") == behind - main  # drawn under the main curve
    assert "• smoothed loss   · raw loss" in text
    assert lines[13].strip() == "learning rate (log scale)"
    ascii_text = text_plot(lrs, smoothed, background=raw, ascii_only=True,
                           labels=("smoothed loss", "raw loss"), width=30, height=10)
    assert "* smoothed loss   . raw loss" in ascii_text


def test_background_of_the_wrong_length_is_rejected():
    with pytest.raises(ValueError, match="background"):
        text_plot([1e-3, 1e-2], [1.0, 2.0], background=[1.0])


def test_loss_limits_span_the_minimum_and_the_start_not_the_blow_up():
    curve = [3.0, 2.0, 0.5, 9.0]
    low, high = loss_limits([curve])
    top = np.quantile([3.0, 2.0, 0.5], TOP_QUANTILE)  # the values up to the minimum
    span = top - 0.5
    np.testing.assert_allclose([low, high], [0.5 - PAD_BELOW * span, top + PAD_ABOVE * span])
    # A second (raw) curve lower than the first sets the bottom; NaN/inf are ignored.
    low2, high2 = loss_limits([curve, [math.nan, 2.5, 0.1, math.inf]])
    span2 = top - 0.1
    np.testing.assert_allclose([low2, high2], [0.0, top + PAD_ABOVE * span2])  # 0: no pad below 0


@pytest.mark.parametrize(
    "curves, check",
    [
        ([[math.nan, math.inf]], lambda limits: limits is None),
        ([[1.0, 1.0, 1.0]], lambda limits: limits[0] < 1.0 < limits[1]),
        ([[0.02, 1.0, 3.0]], lambda limits: limits[0] == 0.0 and limits[1] > 2.9),  # only rises
        ([[-1.0, -3.0, 5.0]], lambda limits: limits[0] < -3.0 and -1.0 < limits[1] < 5.0),
    ],
)
def test_loss_limits_edge_cases(curves, check):
    assert check(loss_limits(curves))
