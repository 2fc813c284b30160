"""A dependency-free text plot of a range-test curve: loss against learning rate on a log axis.

Pure Python string building (no curses, no terminal queries), so the output can be
printed, logged or compared in tests. Used by ``lrjax find``.

Example:
    >>> import numpy as np
    >>> lrs = np.logspace(-5, 0, 50)
    >>> print(text_plot(lrs, (np.log10(lrs) + 2) ** 2, marks={"valley": 1e-2}))  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import numpy as np

UNICODE_GLYPHS = {
    "point": "•",
    "background": "·",
    "mark": "┊",
    "y_axis": "│",
    "y_tick": "┤",
    "x_axis": "─",
    "x_tick": "┬",
    "corner": "└",
}
ASCII_GLYPHS = {
    "point": "*",
    "background": ".",
    "mark": "|",
    "y_axis": "|",
    "y_tick": "+",
    "x_axis": "-",
    "x_tick": "+",
    "corner": "+",
}
# What a suggestion rule is called on plots and in reports: the minimum rule's lr is a
# tenth of the lr at the loss minimum, and its label says so.
RULE_LABELS = {"minimum": "minimum/10"}
MIN_WIDTH = 16
MIN_HEIGHT = 3
TOP_QUANTILE = 0.98  # of a raw curve before its minimum: one noisy batch does not set the top
PAD_BELOW, PAD_ABOVE = 0.05, 0.08  # margins, as fractions of the y range


def rule_label(method: str) -> str:
    """How a suggestion rule is named on plots: ``minimum`` is ``minimum/10``.

    Example:
        >>> rule_label("minimum"), rule_label("valley")
        ('minimum/10', 'valley')
    """
    return RULE_LABELS.get(method, method)


def loss_limits(curves: Iterable[Sequence[float]]) -> tuple[float, float] | None:
    """y limits that show where a range test's answer is: the descent and the minimum.

    ``low`` is the lowest finite value of any curve (the raw minimum included, so it never
    falls off the bottom); ``high`` is the highest value any curve takes up to its own
    minimum (its ``TOP_QUANTILE`` quantile, so a single noisy batch does not stretch the
    axis). The rise after the minimum, up to divergence, may leave the frame at the top:
    it can reach ``diverge_threshold`` times the minimum and would squeeze the descent
    into a few rows. Both ends get a small margin (none below 0 for a loss that is >= 0).

    Args:
        curves: 1-D loss curves (NaN/inf allowed, ignored), e.g. raw, smoothed, validation.

    Returns:
        ``(low, high)`` with ``low < high``, or ``None`` when no curve has a finite value.

    Example:
        >>> low, high = loss_limits([[3.0, 2.0, 0.5, 9.0]])
        >>> bool(low < 0.5 < 3.0 < high < 9.0)
        True
    """
    lows, highs, wholes = [], [], []
    for curve in curves:
        values = np.asarray(curve, np.float64).reshape(-1)
        values = values[np.isfinite(values)]
        if values.size == 0:
            continue
        head = values[: int(np.argmin(values)) + 1]
        lows.append(float(values.min()))
        highs.append(float(np.quantile(head, TOP_QUANTILE)))
        wholes.append(float(np.quantile(values, TOP_QUANTILE)))
    if not lows:
        return None
    low, high = min(lows), max(highs)
    if high <= low:  # every curve rises from its first point: show the start of the rise
        high = max(wholes)
    if high <= low:  # constant curves
        half = max(abs(low) * 0.05, 1e-6)
        return low - half, low + half
    span = high - low
    # A loss that never goes below 0 gets no negative values on its axis.
    bottom = max(low - PAD_BELOW * span, 0.0) if low >= 0 else low - PAD_BELOW * span
    return bottom, high + PAD_ABOVE * span


class Frame(NamedTuple):
    """Data limits of the plot area: x (already log10 when the axis is logarithmic) and y."""

    x_low: float
    x_high: float
    y_low: float
    y_high: float


def _cell(value: float, low: float, high: float, cells: int) -> int:
    """Index of the cell (0 .. cells-1) holding ``value`` on an axis from ``low`` to ``high``."""
    if high == low:  # a degenerate axis puts everything in the middle cell
        return (cells - 1) // 2
    return round((value - low) / (high - low) * (cells - 1))


def _to_axis(value: float, log_x: bool) -> float:
    """Position of ``value`` on the x axis; NaN where a log axis cannot show it (value <= 0)."""
    if not math.isfinite(value):
        return math.nan
    if log_x:
        return math.log10(value) if value > 0 else math.nan
    return value


def _finite_points(
    xs: Sequence[float], ys: Sequence[float], log_x: bool
) -> list[tuple[float, float]]:
    points = [(_to_axis(float(x), log_x), float(y)) for x, y in zip(xs, ys)]
    return [(x, y) for x, y in points if math.isfinite(x) and math.isfinite(y)]


def _frame(points: list[tuple[float, float]], y_limits: tuple[float, float] | None) -> Frame:
    x_values = [x for x, _ in points]
    y_values = [y for _, y in points]
    y_low, y_high = y_limits if y_limits is not None else (min(y_values), max(y_values))
    return Frame(min(x_values), max(x_values), float(y_low), float(y_high))


def _validate(
    xs: Sequence[float],
    ys: Sequence[float],
    width: int,
    height: int,
    y_limits: tuple[float, float] | None,
) -> None:
    if len(xs) != len(ys):
        raise ValueError(f"lrs and losses must have the same length, got {len(xs)} and {len(ys)}")
    if not isinstance(width, int) or width < MIN_WIDTH:
        raise ValueError(f"width must be an integer >= {MIN_WIDTH}, got {width!r}")
    if not isinstance(height, int) or height < MIN_HEIGHT:
        raise ValueError(f"height must be an integer >= {MIN_HEIGHT}, got {height!r}")
    if y_limits is not None:
        low, high = (float(v) for v in y_limits)
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"y_limits must be finite with low < high, got {y_limits!r}")


def _format_number(value: float, log_x: bool) -> str:
    return f"{value:.0e}" if log_x else f"{value:.3g}"


def _x_labels(frame: Frame, width: int, log_x: bool) -> str:
    """Labels at both ends and the middle of the x axis."""

    def value_at(fraction: float) -> float:
        position = frame.x_low + fraction * (frame.x_high - frame.x_low)
        return 10.0**position if log_x else position

    left = _format_number(value_at(0.0), log_x)
    middle = _format_number(value_at(0.5), log_x)
    right = _format_number(value_at(1.0), log_x)
    line = [" "] * (width + len(right))
    for start, text in (
        (0, left),
        ((width - 1) // 2 - len(middle) // 2, middle),
        (width - len(right), right),
    ):
        line[start : start + len(text)] = text
    return "".join(line).rstrip()


def text_plot(
    lrs: Sequence[float],
    losses: Sequence[float],
    *,
    marks: Mapping[str, float] | None = None,
    width: int = 60,
    height: int = 15,
    log_x: bool = True,
    y_limits: tuple[float, float] | None = None,
    ascii_only: bool = False,
    x_label: str = "learning rate",
    y_label: str | None = None,
    background: Sequence[float] | None = None,
    labels: tuple[str, str] | None = None,
) -> str:
    """Render ``losses`` against ``lrs`` as a text scatter plot with vertical marker lines.

    A point ``(lr, loss)`` lands in column ``round((log10(lr) - lo) / (hi - lo) * (width - 1))``
    and row ``round((y_high - loss) / (y_high - y_low) * (height - 1))`` (row 0 at the top),
    where ``lo, hi`` are the smallest and largest plotted ``log10(lr)``. Points with a
    non-finite value, with ``lr <= 0`` on a log axis, or outside ``y_limits`` are left out;
    on an axis of zero extent (one lr, or a constant loss) points sit in the middle cell.
    Each mark draws a vertical line in its column, headed by the first letter of its name,
    and gets a legend line with its value. ``background`` (e.g. the raw loss behind the
    smoothed one) is drawn in a lighter glyph under ``losses``.

    Args:
        lrs: learning rates (x).
        losses: losses (y), same length as ``lrs``.
        marks: name -> learning rate, e.g. ``{"valley": 3e-3}``; marks outside the x range
            appear in the legend only.
        width: columns of the plot area (>= 16).
        height: rows of the plot area (>= 3).
        log_x: logarithmic x axis (the default) or linear.
        y_limits: ``(low, high)`` of the y axis; default the range of the plotted values.
        ascii_only: draw with ASCII characters only (for terminals without Unicode).
        x_label: caption under the x axis (`` (log scale)`` is added on a log axis).
        y_label: what the y values are, written above the y axis; none when ``None``.
        background: a second curve over the same ``lrs``, drawn under ``losses``.
        labels: ``(losses name, background name)``: a key line under the plot saying
            which glyph is which.

    Returns:
        The plot as one string of lines (no trailing newline); a one-line note when there
        is no point to plot.

    Example:
        >>> text = text_plot([1e-4, 1e-3, 1e-2], [2.0, 1.0, 3.0], width=20, height=4)
    """
    _validate(lrs, losses, width, height, y_limits)
    if background is not None and len(background) != len(lrs):
        raise ValueError(
            f"background must have the length of lrs ({len(lrs)}), got {len(background)}"
        )
    glyph = ASCII_GLYPHS if ascii_only else UNICODE_GLYPHS
    points = _finite_points(lrs, losses, log_x)
    behind = [] if background is None else _finite_points(lrs, background, log_x)
    if not points:
        return "(nothing to plot: no finite loss)"
    frame = _frame(points + behind, y_limits)
    grid = [[" "] * width for _ in range(height)]
    mark_columns = _draw_marks(grid, marks or {}, frame, log_x, glyph)
    for series, char in ((behind, glyph["background"]), (points, glyph["point"])):
        for x, y in series:
            if frame.y_low <= y <= frame.y_high:
                row = height - 1 - _cell(y, frame.y_low, frame.y_high, height)
                grid[row][_cell(x, frame.x_low, frame.x_high, width)] = char
    lines = _assemble(grid, frame, mark_columns, marks or {}, log_x, glyph, x_label)
    if labels is not None:  # under the caption, where the legend starts
        key = f"{glyph['point']} {labels[0]}"
        if background is not None:
            key += f"   {glyph['background']} {labels[1]}"
        indent = lines[height].index(glyph["corner"]) + 1
        lines.insert(height + 3, " " * indent + key)
    if y_label is not None:
        lines.insert(0, y_label)
    return "\n".join(lines)


def _draw_marks(
    grid: list[list[str]],
    marks: Mapping[str, float],
    frame: Frame,
    log_x: bool,
    glyph: Mapping[str, str],
) -> list[int]:
    """Draw each mark's vertical line (its initial on top); return the columns used."""
    width = len(grid[0])
    columns = []
    for name, value in marks.items():
        x = _to_axis(float(value), log_x)
        if not (math.isfinite(x) and frame.x_low <= x <= frame.x_high):
            continue
        column = _cell(x, frame.x_low, frame.x_high, width)
        for row in grid:
            row[column] = glyph["mark"]
        grid[0][column] = name[:1] or glyph["mark"]
        columns.append(column)
    return columns


def _assemble(
    grid: list[list[str]],
    frame: Frame,
    mark_columns: list[int],
    marks: Mapping[str, float],
    log_x: bool,
    glyph: Mapping[str, str],
    x_label: str,
) -> list[str]:
    """Add the y labels and axis, the x axis with its ticks and labels, and the legend."""
    height, width = len(grid), len(grid[0])
    y_labels = {0: f"{frame.y_high:.3g}", height - 1: f"{frame.y_low:.3g}"}
    if height >= 5:
        y_labels[(height - 1) // 2] = f"{(frame.y_low + frame.y_high) / 2:.3g}"
    margin = max(len(label) for label in y_labels.values())
    lines = []
    for index, row in enumerate(grid):
        label = y_labels.get(index)
        axis = glyph["y_tick"] if label is not None else glyph["y_axis"]
        lines.append(f"{(label or ''):>{margin}} {axis}{''.join(row)}".rstrip())
    x_axis = [glyph["x_axis"]] * width
    for column in mark_columns:
        x_axis[column] = glyph["x_tick"]
    lines.append(" " * (margin + 1) + glyph["corner"] + "".join(x_axis))
    lines.append(" " * (margin + 2) + _x_labels(frame, width, log_x))
    scale = " (log scale)" if log_x else ""
    lines.append(" " * (margin + 2) + f"{x_label}{scale}".center(width).rstrip())
    for name, value in marks.items():
        lines.append(" " * (margin + 2) + f"{name[:1]} = {name}: {float(value):.3g}")
    return lines
