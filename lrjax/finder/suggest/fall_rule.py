"""lrjax's default suggestion rule, ``fall``: a fixed share of the way down the loss's fall.

A range-test curve has three parts: on the left the rate is too small for the test's
few steps to make progress (flat), in the middle training progresses (the fall), on the
right it is too large (the loss stops falling, turns ragged and blows up). The rule
reads where the fall is, on a zero-lag smoothing of the RAW losses (the EMA trails the
loss by about ``beta / (1 - beta)`` steps, 49 at 0.98, and moves every feature of the
curve to the right):

1. ``s`` = centred moving average of the raw losses before divergence, half-width
   ``max(1, round(0.05 * num_steps))`` (truncated, never extrapolated, at the ends).
2. ``start`` = median of the first tenth of the raw losses (robust to a noisy start);
   the fall ends at the minimum of ``s``, searched up to the point (if any) where ``s``,
   having fallen at least halfway, climbs back above ``start`` (a second dip after a
   blow-up is not part of the fall). A minimum inside the first tenth, or a fall within
   float rounding of the loss, is no fall: the curve is unreadable.
3. The suggestion is the rate at which ``s`` has covered ``fraction`` of the fall
   ``start - min(s)`` for good: the first point after the last one above
   ``start - fraction * (start - min s)`` before the minimum (noise dips in the flat part
   do not count).

**Training-length hint.** With ``train_steps=T`` (the steps of the constant-rate run the
user will train), the reading may be raised, never lowered:

    ``max(plain reading, min(rate at 3/4 of the fall, sum(lrs[: bottom + 1]) / T))``

where the plain reading is step 3's (a share ``fraction`` of 0.3, or less), the 3/4
share is read on the same curve (the validation curve when there is one) and ``bottom``
is the minimum of the smoothed TRAINING curve found in step 2: where the ramp stops
making progress on what it optimizes. The sum of the rates up to there is the ramp's
training time (the gradient-flow time ``sum_t lr_t``); a constant rate ``lr`` run for
``T`` steps covers ``lr * T`` of it, so ``sum / T`` is the constant rate that trains as
long as the ramp could. A short training needs a larger rate to cover that ground in its
few steps, so the reading is raised toward ``sum / T``, never past three quarters of the
fall (well inside it) and never below the plain reading: a long training keeps the plain
reading. ``fraction=`` replaces the 3/4 share (the plain reading is then the smaller of
0.3 and it).

Why a raise and not a cap: until this version the hint was ``min(3/4 rate, sum / T)``,
which LOWERED the reading of every training longer than the ramp's time. On the finder
benchmark's development half (``benchmarks/finder_quality.py``, 4-seed grids, qualities
interpolated on the grid) that cap lowered 3 of its 7 constant-rate problems (a
transformer trained 2.5x the range test: 0.94 -> 0.72) and lifted the small regression
that overfits (0.88 -> 0.96); the raise loses on none (development worst / geometric
mean of the default call with the hint: 0.882 / 0.973, the cap's 0.723 / 0.955, no hint
0.882 / 0.957; held-out, checked after: 0.803 / 0.950, 0.803 / 0.948 and 0.803 / 0.947).

The share is 0.3 (``fraction=0.3``). A training curve cannot show overfitting, and the
best constant rate of a small problem that overfits sits near the START of the fall; on
problems that do not overfit, three tenths of the way down is still well inside the
fall, where training progresses. Chosen on the benchmark's development half (4-seed
grids): shares 0.26-0.32 keep its worst problem at 0.882 with geometric means 0.951-0.958,
0.33 drops the regression that overfits to 0.831, and 0.25 (the share before) leaves a
transformer at 0.870 (worst 0.867, mean 0.944); 0.3 is inside that band, away from its
edge. A VALIDATION curve can show overfitting: ``RangeTestResult.suggest()`` reads one by
its turn instead (``lrjax.finder.suggest.turn_rule``), unless ``fraction=`` is given. See
the docs' benchmark page (``docs/benchmarks/finder_quality.md``) for both halves.

References:
    Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017, sec. 3.3
    (reading the range test where the loss starts to fall and where the fall slows).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from lrjax.finder.suggest.curve import (
    Reading,
    _as_curve,
    _finite_length,
    _warned,
    truncated_mean,
    unreadable,
)
from lrjax.finder.suggest.readability_check import warn_if_noisy

__all__ = ["read_fall", "smoothed_start", "suggest_fall", "truncated_mean"]

#: Share of the fall covered at the suggestion.
FRACTION = 0.3
#: With a ``train_steps`` hint: the share of the fall the time-matched raise stops at.
CEILING_FRACTION = 0.75
# The smoother's half-width and the start window, as fractions of the curve's points.
_HALF_WIDTH_FRACTION = 0.05
_START_FRACTION = 0.1


def read_fall(lrs: ArrayLike, losses: ArrayLike, fraction: float | None = None,
              half_width: int | None = None, num_steps: int | None = None,
              train_steps: int | None = None, train_losses: ArrayLike | None = None) -> Reading:
    """The ``fall`` rule on one raw curve; a :class:`~lrjax.finder.suggest.curve.Reading` (no warning).

    Args:
        lrs: learning rates (1-D, increasing).
        losses: RAW losses; the first non-finite value ends the curve (divergence).
        fraction: share of the fall covered at the suggestion, in ``(0, 1]`` (default
            0.3; with ``train_steps``, the share the raise stops at, default 0.75).
        half_width: the smoother's half-width (default 5% of ``num_steps``).
        num_steps: the range test's steps (default ``len(lrs)``).
        train_steps: optional training-length hint (steps of the constant-rate run):
            raises the reading toward the time-matched rate; see the module docstring.
        train_losses: with ``train_steps``, the RAW training curve whose minimum sets
            the ramp's training time when ``losses`` is a validation curve (default:
            ``losses`` itself).

    Returns:
        ``Reading(lr, None)``, or ``Reading(lrs[0], reason)`` for an unreadable curve.
    """
    lrs, losses = _as_curve(lrs, losses)
    if train_steps is not None and (isinstance(train_steps, bool) or not isinstance(
            train_steps, (int, np.integer)) or train_steps < 1):
        raise ValueError(f"train_steps must be an integer >= 1 or None, got {train_steps!r}.")
    if fraction is None:
        fraction = FRACTION if train_steps is None else CEILING_FRACTION
    if not (isinstance(fraction, (int, float, np.floating)) and 0 < fraction <= 1):
        raise ValueError(f"fraction must be a number in (0, 1], got {fraction!r}.")
    steps = lrs.size if num_steps is None else int(num_steps)
    width = max(1, round(_HALF_WIDTH_FRACTION * steps)) if half_width is None else half_width
    # The rule's windows are shares of a log-spaced ramp's steps (decades): read a curve of
    # another spacing (mode="linear") on the log-spaced ramp with the same ends.
    grid = _log_grid(lrs)
    fall = _find_fall(_on_grid(grid, lrs, losses), steps, width)
    if isinstance(fall, str):
        return Reading(float(lrs[0]), fall)
    smooth, start, bottom = fall

    def covered(share: float) -> int:
        """The tested rate's index where ``smooth`` has covered ``share`` of the fall for good."""
        level = start - share * (start - float(smooth[bottom]))
        above = np.flatnonzero(smooth[:bottom] > level)
        return _tested(grid, lrs, int(above[-1]) + 1 if above.size else 0)

    index = covered(fraction)
    if train_steps is None:
        return Reading(float(lrs[index]), None)
    floor = covered(min(FRACTION, fraction))  # the plain reading: the hint never lowers it
    bottom = _tested(grid, lrs, bottom)
    if train_losses is not None:
        # The training curve's minimum ends what the ramp could train (its time).
        train_losses = _on_grid(grid, lrs, np.asarray(train_losses, np.float64))
        train_fall = _find_fall(train_losses, steps, width)
        bottom = bottom if isinstance(train_fall, str) else _tested(grid, lrs, train_fall[2])
    # The constant rate that trains as long (sum of the rates) as the ramp at that minimum.
    matched = float(np.sum(lrs[: bottom + 1])) / train_steps
    return Reading(float(max(lrs[floor], min(lrs[index], matched))), None)


def _log_grid(lrs: np.ndarray) -> np.ndarray | None:
    """The log-spaced ramp with ``lrs``' ends and length, or None when ``lrs`` is one."""
    steps = np.diff(np.log(lrs))
    if steps.size < 2 or np.ptp(steps) <= 1e-2 * np.mean(steps):  # float32 rounding passes
        return None
    return np.geomspace(lrs[0], lrs[-1], lrs.size)


def _on_grid(grid: np.ndarray | None, lrs: np.ndarray, losses: np.ndarray) -> np.ndarray:
    """``losses`` interpolated (in log rate) onto ``grid``, NaN past the last finite point."""
    if grid is None:
        return losses
    n = _finite_length(losses)
    out = np.full(grid.size, np.nan)
    inside = grid <= lrs[max(n, 1) - 1] * (1 + 1e-12)
    if n:
        out[inside] = np.interp(np.log(grid[inside]), np.log(lrs[:n]), losses[:n])
    return out


def _tested(grid: np.ndarray | None, lrs: np.ndarray, index: int) -> int:
    """The index into ``lrs`` of the first tested rate at or above ``grid[index]``."""
    if grid is None:
        return index
    return min(int(np.searchsorted(lrs, grid[index] * (1 - 1e-12))), lrs.size - 1)


def smoothed_start(losses: np.ndarray, steps: int, width: int) -> tuple[np.ndarray, int, float] | str:
    """``(smoothed curve before divergence, start-window length, start level)`` or why not.

    The part of reading a raw curve that ``fall`` and ``turn`` share: the finite prefix,
    its readability, the centred mean of half-width ``width``, and the start level, the
    median of the first tenth of the raw losses (robust to a noisy start).
    """
    n = _finite_length(losses)
    raw = losses[:n]
    why = unreadable(raw) if n >= 2 else "fewer than two finite points before divergence"
    if n >= 2 and why == "the loss never decreases":
        why = None  # a raw curve may start on a high batch; the caller judges the smoothed one
    if why is not None:
        return why
    head = max(1, round(_START_FRACTION * steps))
    return truncated_mean(raw, width), head, float(np.median(raw[:head]))


def _find_fall(losses: np.ndarray, steps: int, width: int) -> tuple[np.ndarray, float, int] | str:
    """Steps 1-2 of the rule: ``(smoothed curve, start, index of its minimum)`` or why not."""
    curve = smoothed_start(losses, steps, width)
    if isinstance(curve, str):
        return curve
    smooth, head, start = curve
    if smooth.min() < start:
        # Cut where the curve, having fallen at least halfway, climbs back above its start.
        halfway = start - 0.5 * (start - smooth.min())
        back = np.flatnonzero((smooth > start) & (np.minimum.accumulate(smooth) < halfway))
        smooth = smooth[: back[0]] if back.size else smooth
    bottom = int(np.argmin(smooth))
    low = float(smooth[bottom])
    if bottom < head or not low < start or unreadable(np.concatenate([[start], smooth[: bottom + 1]])):
        # A minimum inside the start window is no fall (a rising curve's first points).
        return "the smoothed loss never falls below its start"
    return smooth, start, bottom


def suggest_fall(lrs: ArrayLike, losses: ArrayLike, *, fraction: float | None = None,
                 half_width: int | None = None, num_steps: int | None = None,
                 train_steps: int | None = None, train_losses: ArrayLike | None = None) -> float:
    """lrjax's default rule on one curve: ``fraction`` of the way down the loss's fall.

    See the module docstring for the rule. Pass the RAW losses (a training or a
    validation curve); ``RangeTestResult.suggest()`` picks the curve itself (validation
    when there is one) and takes the lower median over seeds.

    Args:
        lrs: learning rates (1-D, increasing).
        losses: RAW losses at those rates, NaN from divergence on.
        fraction: share of the fall covered, in ``(0, 1]`` (default 0.3; with
            ``train_steps`` the share the raise stops at, default 0.75).
        half_width: the smoother's half-width in points (default 5% of the points).
        num_steps: the range test's steps (default ``len(lrs)``).
        train_steps: the steps the user will train at a constant rate: raises the
            suggestion toward the rate that trains as long as the ramp had at the
            minimum (never past 3/4 of the fall, never below the plain reading).
        train_losses: with ``train_steps`` and a validation curve as ``losses``: the RAW
            training curve, whose minimum sets the ramp's training time.

    Returns:
        The suggested learning rate (``lrs[0]`` with a warning for an unreadable curve).
        A curve whose fall is not clearly larger than its noise
        (``lrjax.finder.suggest.readability_check.readability``: fall < 8 x its smoothed noise) still gives the rule's reading,
        with an ``UnreadableCurveWarning``: it may sit on a noise dip.

    Example:
        >>> lrs = np.logspace(-6, 0, 61)
        >>> curve = 2 - np.tanh(np.log10(lrs) + 3)  # falls from 3 to 1 around 1e-3
        >>> bool(1e-4 < suggest_fall(lrs, curve) < 1e-3 < suggest_fall(lrs, curve, fraction=0.75))
        True
        >>> short = suggest_fall(lrs, curve, train_steps=200)  # raised: 3/4 of the fall
        >>> bool(short == suggest_fall(lrs, curve, fraction=0.75))
        True
        >>> long = suggest_fall(lrs, curve, train_steps=10_000)  # raised to time-matched
        >>> bool(np.isclose(long, lrs[: np.argmin(curve) + 1].sum() / 10_000))
        True
        >>> suggest_fall(lrs, curve, train_steps=10**7) == suggest_fall(lrs, curve)  # plain
        True

    References:
        Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017, sec. 3.3.
    """
    reading = read_fall(lrs, losses, fraction, half_width, num_steps, train_steps, train_losses)
    if reading.failed is None:
        warn_if_noisy(losses, num_steps, "fall")
    return _warned("fall", reading, lrs)
