"""Learning-rate suggestions read off a range-test curve (host side, numpy).

Every rule takes the learning rates and the (smoothed) losses of ONE curve, both 1-D and
of equal length, and returns a float. The rules only look at the usable part of the
curve (see :func:`usable_curve`): the points before the first non-finite loss, without
the first tenth (the loss barely moves at tiny learning rates) and the last few points
before divergence (the blow-up). They never return NaN: a curve that never decreases,
or that has fewer than two usable points (it diverged at once), triggers a
``UserWarning`` and the documented fallback, the smallest learning rate tested.

The rules follow fastai's ``lr_find`` suggestion functions (valley, slide, steep,
minimum) and Smith's reading of the range test for cyclical bounds. The four lr rules
read the bias-corrected EMA (``smoothed_losses``), as fastai and torch-lr-finder do; the
cyclical bounds read a zero-lag (centred) average of the RAW losses instead, because the
EMA lags the loss and puts its minimum where the raw loss is already blowing up.

References:
    Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017, sec. 3.3.
    fastai ``callback.schedule`` (``valley``, ``slide``, ``steep``, ``minimum``).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import ArrayLike

SuggestFn = Callable[..., float]

# The smallest number of points a rule needs to say anything about a slope.
_MIN_POINTS = 2
# cyclical bounds: base_lr is where the loss has covered this fraction of its fall (it
# has started to fall), max_lr where it has covered this one (the fall is slowing).
_BASE_FALL_FRACTION = 0.1
_MAX_FALL_FRACTION = 0.9
# cyclical bounds: the centred window's half-width, as a fraction of the curve's points
# (5%: 11 points of 100, about 0.4 decades of the default 8-decade ramp).
_HALF_WIDTH_FRACTION = 0.05
# Smith's rule of thumb when the curve gives no separate base: base = max / 4.
_BASE_DIVISOR = 4.0


def _as_curve(lrs: ArrayLike, losses: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    lrs = np.asarray(lrs, dtype=np.float64)
    losses = np.asarray(losses, dtype=np.float64)
    if lrs.ndim != 1 or losses.shape != lrs.shape:
        raise ValueError(
            f"lrs and losses must be 1-D arrays of equal length, got shapes {lrs.shape} and "
            f"{losses.shape}."
        )
    if lrs.size == 0:
        raise ValueError("lrs must not be empty.")
    if not (np.all(np.isfinite(lrs)) and np.all(lrs > 0) and np.all(np.diff(lrs) > 0)):
        raise ValueError("lrs must be finite, positive and strictly increasing.")
    return lrs, losses


def _finite_length(losses: np.ndarray) -> int:
    """Length of the prefix before the first non-finite loss (divergence)."""
    bad = np.flatnonzero(~np.isfinite(losses))
    return int(bad[0]) if bad.size else int(losses.size)


def usable_curve(
    lrs: ArrayLike,
    losses: ArrayLike,
    skip_start: int | None = None,
    skip_end: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The part of a curve the rules read: finite prefix, ends trimmed.

    Keeps the points before the first non-finite loss, then drops ``skip_start`` points at
    the start (default ``len(lrs) // 10``, as fastai) and ``skip_end`` at the end (default
    ``min(5, len(lrs) // 10)``; fastai drops 5). When trimming would leave fewer than two
    points, the untrimmed finite prefix is returned instead.

    Args:
        lrs: learning rates, positive and strictly increasing.
        losses: the loss at each learning rate; NaN/inf marks the end of the usable part.
        skip_start: points dropped at the start.
        skip_end: points dropped at the end.

    Returns:
        ``(lrs, losses)`` of the usable part, float64 (possibly fewer than two points).
    """
    lrs, losses = _as_curve(lrs, losses)
    total = lrs.size
    finite_len = _finite_length(losses)
    skip_start = total // 10 if skip_start is None else int(skip_start)
    skip_end = min(5, total // 10) if skip_end is None else int(skip_end)
    if skip_start < 0 or skip_end < 0:
        raise ValueError("skip_start and skip_end must be >= 0.")
    stop = finite_len - skip_end
    if stop - skip_start >= _MIN_POINTS:
        return lrs[skip_start:stop], losses[skip_start:stop]
    return lrs[:finite_len], losses[:finite_len]


def _fallback(lrs: np.ndarray, rule: str, why: str) -> float:
    warnings.warn(
        f"{rule}: {why}; falling back to the smallest learning rate tested, {lrs[0]:.3g}. "
        "Widen the range (smaller min_lr) or check the loss.",
        UserWarning,
        stacklevel=4,
    )
    return float(lrs[0])


def _read_curve(
    rule: str,
    read: Callable[[np.ndarray, np.ndarray], Any],
    lrs: ArrayLike,
    losses: ArrayLike,
    skip_start: int | None,
    skip_end: int | None,
    fallback: Callable[[float], Any] = float,
) -> Any:
    """``read(x, y)`` on the usable part, or the warned fallback when it cannot be read."""
    all_lrs, _ = _as_curve(lrs, losses)
    x, y = usable_curve(lrs, losses, skip_start, skip_end)
    if x.size < _MIN_POINTS:
        return fallback(_fallback(all_lrs, rule, "fewer than two finite points before divergence"))
    if not np.min(y[1:]) < y[0]:
        return fallback(_fallback(all_lrs, rule, "the loss never decreases"))
    return read(x, y)


def suggest_valley(
    lrs: ArrayLike, losses: ArrayLike, *, skip_start: int | None = None, skip_end: int | None = None
) -> float:
    """fastai's default: the middle of the longest valley of the loss curve.

    The valley is the longest strictly decreasing subsequence of the losses (not
    necessarily contiguous); with ``s`` its first and ``e`` its last index and
    ``L = e - s``, the suggestion is ``lr[s + floor(L/3) + floor(L/6)]``, about halfway
    down. Among equally long valleys the first to end wins, and each starts as late as
    possible (a plateau before the fall is not part of the valley). fastai takes
    ``s = e - length``, one point before the valley's true start; we use the true start.

    Args:
        lrs: learning rates (1-D, increasing).
        losses: smoothed losses at those rates (NaN after divergence is fine).
        skip_start: see :func:`usable_curve`.
        skip_end: see :func:`usable_curve`.

    Returns:
        The suggested learning rate.

    Example:
        >>> lrs = np.logspace(-4, 0, 40)
        >>> suggest_valley(lrs, (np.log10(lrs) + 1) ** 2)  # doctest: +SKIP

    References:
        fastai ``callback.schedule.valley``.
    """
    return _read_curve("valley", _valley, lrs, losses, skip_start, skip_end)


def _valley(x: np.ndarray, y: np.ndarray) -> float:
    n = y.size
    length = np.ones(n, dtype=np.int64)  # longest decreasing subsequence ending at i
    start = np.arange(n)  # its first index
    for i in range(1, n):
        before = np.flatnonzero(y[:i] > y[i])
        if before.size:
            # Among the longest predecessors take the latest: the tightest valley.
            best = before[before.size - 1 - np.argmax(length[before][::-1])]
            length[i] = length[best] + 1
            start[i] = start[best]
    end = int(np.argmax(length))
    span = end - int(start[end])
    return float(x[int(start[end]) + span // 3 + span // 6])


def suggest_steepest(
    lrs: ArrayLike, losses: ArrayLike, *, skip_start: int | None = None, skip_end: int | None = None
) -> float:
    """The learning rate where the loss falls fastest against log(lr).

    With slopes ``d_i = (loss[i+1] - loss[i]) / (log lr[i+1] - log lr[i])`` over the usable
    part (ends skipped), returns ``lr[argmin d]`` (the left end of the steepest segment, as
    fastai's ``steep`` and torch-lr-finder do).

    Args:
        lrs: learning rates (1-D, increasing).
        losses: smoothed losses at those rates.
        skip_start: see :func:`usable_curve`.
        skip_end: see :func:`usable_curve`.

    Returns:
        The suggested learning rate.

    Example:
        >>> lrs = np.logspace(-4, 0, 40)
        >>> suggest_steepest(lrs, 1 / (1 + lrs * 100))  # doctest: +SKIP

    References:
        Smith (2017), sec. 3.3; fastai ``steep``; torch-lr-finder ``plot(suggest_lr=True)``.
    """
    return _read_curve("steepest", _steepest, lrs, losses, skip_start, skip_end)


def _steepest(x: np.ndarray, y: np.ndarray) -> float:
    slopes = np.diff(y) / np.diff(np.log(x))
    return float(x[int(np.argmin(slopes))])


def suggest_minimum(
    lrs: ArrayLike, losses: ArrayLike, *, skip_start: int | None = None, skip_end: int | None = None
) -> float:
    """One tenth of the learning rate at the minimum loss before divergence.

    Args:
        lrs: learning rates (1-D, increasing).
        losses: smoothed losses at those rates.
        skip_start: see :func:`usable_curve`.
        skip_end: see :func:`usable_curve`.

    Returns:
        ``lr[argmin loss] / 10``.

    Example:
        >>> lrs = np.logspace(-4, 0, 40)
        >>> round(float(np.log10(suggest_minimum(lrs, (np.log10(lrs) + 1) ** 2))), 1)  # minimum at 0.1
        -2.0

    References:
        fastai ``minimum`` (Howard & Gugger, "fastai", 2020).
    """
    return _read_curve("minimum", _minimum, lrs, losses, skip_start, skip_end)


def _minimum(x: np.ndarray, y: np.ndarray) -> float:
    return float(x[int(np.argmin(y))] / 10.0)


def suggest_slide(
    lrs: ArrayLike,
    losses: ArrayLike,
    *,
    lr_diff: int = 15,
    thresh: float = 0.005,
    adjust_value: float = 1.0,
    skip_start: int | None = None,
    skip_end: int | None = None,
) -> float:
    """fastai's interval slide rule.

    With ``g = np.gradient(losses)`` (per step) on the usable part, a window of
    ``lr_diff`` steps slides left from the right end while ``|g[right] - g[left]| > thresh``;
    the suggestion is ``adjust_value`` times the learning rate at the window's left end
    where it stops (the last left end visited). ``thresh`` is in loss units per step, as
    in fastai; ``lr_diff`` is shortened to fit short curves.

    Args:
        lrs: learning rates (1-D, increasing).
        losses: smoothed losses at those rates.
        lr_diff: window width in steps (>= 1).
        thresh: gradient difference below which the window stops.
        adjust_value: factor applied to the learning rate found.
        skip_start: see :func:`usable_curve`.
        skip_end: see :func:`usable_curve`.

    Returns:
        The suggested learning rate.

    Example:
        >>> lrs = np.logspace(-4, 0, 60)
        >>> suggest_slide(lrs, 1 / (1 + lrs * 100))  # doctest: +SKIP

    References:
        fastai ``slide`` (interval slide rule).
    """
    if int(lr_diff) < 1:
        raise ValueError(f"lr_diff must be >= 1, got {lr_diff!r}.")
    read = functools.partial(_slide, lr_diff=int(lr_diff), thresh=thresh, adjust_value=adjust_value)
    return _read_curve("slide", read, lrs, losses, skip_start, skip_end)


def _slide(x: np.ndarray, y: np.ndarray, lr_diff: int, thresh: float, adjust_value: float) -> float:
    grad = np.gradient(y)
    width = min(lr_diff, y.size - 1)
    right = y.size - 1
    left = right - width
    found = x[left]
    while left >= 0 and abs(grad[right] - grad[left]) > thresh:
        found = x[left]
        right -= 1
        left -= 1
    return float(found * adjust_value)


def centred_smooth(values: ArrayLike, half_width: int) -> np.ndarray:
    """Zero-lag smoothing: a centred moving average, with straight-line fits at the ends.

    With ``h = min(half_width, (n - 1) // 2)`` and windows of ``2h + 1`` points:
    ``out[i] = mean(values[i-h : i+h+1])`` for ``h <= i < n - h``; in the first (last)
    ``h`` points, where a centred window would leave the curve, ``out[i]`` is the
    least-squares line through the first (last) ``2h + 1`` values, evaluated at ``i``.
    This is the Savitzky-Golay filter of order 1. Every window is centred or fitted, so
    a straight-line trend comes out exactly, ends included: no lag, unlike an EMA,
    which trails a falling or rising loss by about ``beta / (1 - beta)`` steps.

    Args:
        values: 1-D finite values.
        half_width: points on each side of the centre (>= 0; 0 returns the values).

    Returns:
        The smoothed values, float64, same length.

    Example:
        >>> centred_smooth([0.0, 3.0, 0.0, 3.0, 0.0, 3.0], 1)
        array([1., 1., 2., 1., 2., 2.])

    References:
        Savitzky & Golay, "Smoothing and Differentiation of Data by Simplified Least
        Squares Procedures", Anal. Chem. 36 (1964).
    """
    integer = isinstance(half_width, (int, np.integer)) and not isinstance(half_width, bool)
    if not integer or half_width < 0:
        raise ValueError(f"half_width must be an integer >= 0, got {half_width!r}.")
    values = np.asarray(values, dtype=np.float64)
    n = values.size
    h = max(0, min(int(half_width), (n - 1) // 2))
    if h == 0:
        return values.copy()
    windows = sliding_window_view(values, 2 * h + 1)
    out = np.empty(n)
    out[h : n - h] = windows.mean(axis=1)
    offsets = np.arange(-h, h + 1)  # from the window's centre
    ends = ((windows[0], h, offsets[:h]), (windows[-1], n - 1 - h, offsets[h + 1 :]))
    for window, centre, at in ends:
        # The least-squares line through the end window, in closed form about its centre.
        slope = np.dot(offsets, window - window.mean()) / np.dot(offsets, offsets)
        out[centre + at] = window.mean() + slope * at
    return out


def suggest_cyclical_bounds(
    lrs: ArrayLike,
    losses: ArrayLike,
    *,
    half_width: int | None = None,
    skip_start: int | None = 0,
    skip_end: int | None = 0,
) -> tuple[float, float]:
    """``(base_lr, max_lr)`` for a cyclical schedule, read off the RAW loss as Smith does.

    Smith (2017, sec. 3.3) reads base_lr where the accuracy starts to increase and
    max_lr where it "slows, becomes ragged, or starts to fall"; on a loss curve: base
    where the loss starts to fall, max where the fall slows down, before the minimum
    and well before divergence. Rule, on the raw losses before divergence (the finite
    prefix):

    1. Smooth them with :func:`centred_smooth` (half-width ``half_width``, default
       ``max(1, round(0.05 * len(lrs)))``: 11-point windows for 100 steps). A centred
       window has no lag; the range test's EMA trails the loss, so its minimum sits
       where the raw loss already spikes (with beta 0.98 over 100 steps, at several
       times the raw minimum's lr).
    2. With ``s`` the smoothed curve, ``fall = s[0] - min(s)``:
       ``base_lr`` is the first lr with ``s <= s[0] - 0.1 * fall`` (10% of the fall
       covered: the loss has started to fall); ``max_lr`` the first lr with
       ``s <= s[0] - 0.9 * fall`` (90% covered: the improvement is slowing down).
    3. When both are the same point (a cliff), ``base_lr = max_lr / 4`` (Smith's rule of
       thumb: base is 1/3 to 1/4 of max).

    Measured with ``examples/find_lr_flax.py`` (digits MLP, 10 seeds): CLR between
    these bounds reached 0.972-0.986 test accuracy with Adam and 0.969-0.983 with SGD
    momentum 0.9; with max_lr at the EMA's minimum, SGD reached 0.09-0.97 (4 of 10
    runs above 0.9).
    A curve whose smoothed loss never decreases (or that diverges at once) warns and
    returns ``(lrs[0], lrs[0])``: a constant schedule at the smallest lr tested.

    Args:
        lrs: learning rates (1-D, increasing).
        losses: RAW losses at those rates; NaN from divergence on (the finite prefix is
            read, the rest ignored). Pass a curve cut at divergence, as
            ``RangeTestResult.cyclical_bounds`` does.
        half_width: the centred window's half-width in points (>= 0).
        skip_start: points dropped at the start before reading (default none: the
            start of the fall matters here), see :func:`usable_curve`.
        skip_end: points dropped at the end before reading (default none).

    Returns:
        ``(base_lr, max_lr)`` with ``base_lr <= max_lr``.

    Example:
        >>> lrs = np.logspace(-5, 0, 50)
        >>> base, top = suggest_cyclical_bounds(lrs, 2 - np.tanh(np.log10(lrs) + 3))

    References:
        Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017, sec. 3.3.
    """
    lrs, losses = _as_curve(lrs, losses)
    if half_width is None:
        half_width = max(1, round(_HALF_WIDTH_FRACTION * lrs.size))
    smoothed = np.full(losses.shape, np.nan)
    finite = _finite_length(losses)
    smoothed[:finite] = centred_smooth(losses[:finite], half_width)
    return _read_curve("cyclical_bounds", _cyclical_bounds, lrs, smoothed, skip_start, skip_end,
                       fallback=lambda low: (low, low))


def _first_below(y: np.ndarray, fraction: float) -> int:
    """First index where ``y`` has covered ``fraction`` of its fall from ``y[0]`` to ``min(y)``."""
    level = y[0] - fraction * (y[0] - np.min(y))
    return int(np.flatnonzero(y <= level)[0])


def _cyclical_bounds(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    base = _first_below(y, _BASE_FALL_FRACTION)
    top = _first_below(y, _MAX_FALL_FRACTION)
    max_lr = float(x[top])
    base_lr = float(x[base]) if base < top else max_lr / _BASE_DIVISOR
    return base_lr, max_lr


SUGGESTERS: dict[str, SuggestFn] = {
    "valley": suggest_valley,
    "steepest": suggest_steepest,
    "minimum": suggest_minimum,
    "slide": suggest_slide,
}


def suggest_lr(lrs: ArrayLike, losses: ArrayLike, method: str = "valley", **kwargs: float) -> float:
    """Dispatches to ``suggest_<method>``; ``method`` in ``valley, steepest, minimum, slide``.

    Example:
        >>> suggest_lr(np.logspace(-4, 0, 40), np.linspace(2, 1, 40), "minimum")  # doctest: +SKIP

    References:
        See each rule: :func:`suggest_valley`, :func:`suggest_steepest`,
        :func:`suggest_minimum`, :func:`suggest_slide` (Smith 2017; fastai; torch-lr-finder).
    """
    if method not in SUGGESTERS:
        raise ValueError(f"method must be one of {tuple(SUGGESTERS)}, got {method!r}.")
    return SUGGESTERS[method](lrs, losses, **kwargs)
