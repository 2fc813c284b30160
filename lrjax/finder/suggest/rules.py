"""Learning-rate suggestions read off a range-test curve (host side, numpy).

The peers' rules, each equal to the peer's own function on the same recorded curve
(tests/test_fastai_parity.py checks them against fastai and torch-lr-finder):

* ``valley``, ``slide``, ``steep``, ``minimum``: fastai's ``lr_find`` suggestion
  functions, read off the curve trimmed as ``lr_find`` trims it (the first
  ``num_steps // 10`` points and the last 5 recorded ones dropped, then cut at the first
  NaN);
* ``steepest``: torch-lr-finder's ``plot(suggest_lr=True)``: the steepest point of
  ``np.gradient`` of the loss, 10 points skipped at the start and 5 at the end.

A peer records the diverging step and stops; a NaN loss does not stop fastai, which
records NaN from there on. :func:`recorded_curve` turns a range test's curve into what
the peer's recorder would hold, so that trimming matches. lrjax's own default rule,
``fall``, reads the raw losses (a training curve by its fall, ``lrjax.finder.suggest.fall_rule``; a
validation curve by its turn, ``lrjax.finder.suggest.turn_rule``); ``lrjax.finder.suggest.vote`` applies
any rule to a whole ``RangeTestResult`` (which curve, and the seeds' vote).

Every rule returns a float and never NaN. A curve a rule cannot read (fewer than two
finite usable points, a loss that never decreases, or a flat loss whose spread is float
rounding) gives a ``UserWarning`` and the documented fallback, the smallest learning
rate of the curve; where the peer would return something else there (fastai's valley
returns the LARGEST rate of a rising curve) lrjax deliberately warns instead.

A curve can also be too noisy to read at all: :func:`lrjax.finder.suggest.readability_check.readability`
(its own module) compares the fall of
the raw curve (its start level minus the minimum of the ``fall`` rule's centred mean)
with the raw loss's noise (a MAD of each loss's residual from the median of its
neighbours) left after that mean's ``window`` points, and calls the curve readable when
``fall >= 8 * noise / sqrt(window)``. A rule read off a curve that is not still
returns its reading, with an ``UnreadableCurveWarning`` saying what would help
(more steps, a larger batch or ``accumulation_steps``, ``val_data``, more seeds).

Smith's reading of the range test for cyclical bounds lives in ``lrjax.finder.suggest.cyclical_bounds``.

References:
    Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017, sec. 3.3.
    fastai ``callback.schedule`` (``valley``, ``slide``, ``steep``, ``minimum``, ``lr_find``).
    torch-lr-finder ``LRFinder.plot`` (steepest gradient).
    Hampel, "The influence curve and its role in robust estimation", JASA 1974, and
    Rousseeuw & Croux, "Alternatives to the median absolute deviation", JASA 1993 (the
    MAD behind the noise estimate).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from lrjax.finder.suggest.curve import SuggestFn, _as_curve, _read, _warned
from lrjax.finder.suggest.fall_rule import suggest_fall


def suggest_valley(
    lrs: ArrayLike, losses: ArrayLike, *, skip_start: int | None = None,
    skip_end: int | None = None, num_steps: int | None = None,
) -> float:
    """fastai's default: about halfway down the longest valley of the loss curve.

    With ``n_i`` the length of the longest strictly decreasing subsequence ending at
    point ``i`` (not necessarily contiguous), ``e`` the first point where ``n_e`` is
    largest and ``L = n_e``, fastai takes the valley to start at ``s = e - L`` (the
    last ``L`` points before ``e``, whatever the subsequence skipped) and suggests
    ``lr[s + floor(L/3) + floor(L/6)]``. Equal to ``fastai.callback.schedule.valley``
    on the same trimmed curve; a curve that never decreases warns and falls back
    (fastai returns the largest rate there), and ``s + ...`` is clipped at 0.

    Args:
        lrs: learning rates (1-D, increasing).
        losses: smoothed losses, as recorded (NaN after divergence is fine).
        skip_start: points dropped at the start (default ``num_steps // 10``).
        skip_end: recorded points dropped at the end (default 5).
        num_steps: the range test's steps, fastai's ``num_it`` (default ``len(lrs)``).

    Returns:
        The suggested learning rate.

    Example:
        >>> lrs = np.logspace(-4, 0, 40)
        >>> float(suggest_valley(lrs, (np.log10(lrs) + 1) ** 2)) == float(lrs[15])
        True

    References:
        fastai ``callback.schedule.valley`` (Howard & Gugger, "fastai", 2020).
    """
    return _warned("valley", _read(_valley, lrs, losses, skip_start, skip_end, num_steps), lrs)


def _valley(x: np.ndarray, y: np.ndarray) -> float:
    n = y.size
    length = np.ones(n, dtype=np.int64)  # longest strictly decreasing subsequence ending at i
    for i in range(1, n):
        higher = y[:i] > y[i]
        if higher.any():
            length[i] = length[:i][higher].max() + 1
    end = int(np.argmax(length))  # the first longest, as fastai's strict comparison
    size = int(length[end])
    return float(x[max(end - size + size // 3 + size // 6, 0)])


def suggest_steep(
    lrs: ArrayLike, losses: ArrayLike, *, skip_start: int | None = None,
    skip_end: int | None = None, num_steps: int | None = None,
) -> float:
    """fastai's ``steep``: where the loss falls fastest against ``log(lr)``.

    With slopes ``d_i = (loss[i+1] - loss[i]) / (log lr[i+1] - log lr[i])`` over the
    trimmed curve, returns ``lr[argmin d]`` (the left end of the steepest segment).

    Args:
        lrs: learning rates (1-D, increasing).
        losses: smoothed losses, as recorded.
        skip_start: points dropped at the start (default ``num_steps // 10``).
        skip_end: recorded points dropped at the end (default 5).
        num_steps: the range test's steps, fastai's ``num_it`` (default ``len(lrs)``).

    Returns:
        The suggested learning rate.

    Example:
        >>> lrs = np.logspace(-4, 0, 40)
        >>> float(suggest_steep(lrs, 1 - np.tanh(np.log10(lrs) + 2))) == float(lrs[19])
        True

    References:
        Smith (2017), sec. 3.3; fastai ``callback.schedule.steep``.
    """
    return _warned("steep", _read(_steep, lrs, losses, skip_start, skip_end, num_steps), lrs)


def _steep(x: np.ndarray, y: np.ndarray) -> float:
    slopes = np.diff(y) / np.diff(np.log(x))
    return float(x[int(np.argmin(slopes))])


def suggest_steepest(
    lrs: ArrayLike, losses: ArrayLike, *, skip_start: int | None = 10,
    skip_end: int | None = 5, num_steps: int | None = None,
) -> float:
    """torch-lr-finder's suggestion: the point of steepest ``np.gradient`` of the loss.

    ``lr[argmin np.gradient(losses)]`` over the recorded curve without its first 10 and
    last 5 points (torch-lr-finder's ``plot`` defaults). The gradient is per step
    (central differences inside, one-sided at the ends), so on the exponential ramp it
    is the slope against ``log(lr)`` up to a constant factor.

    Args:
        lrs: learning rates (1-D, increasing).
        losses: smoothed losses, as recorded.
        skip_start: points dropped at the start (default 10, as torch-lr-finder).
        skip_end: recorded points dropped at the end (default 5).
        num_steps: only used when ``skip_start=None`` (then ``num_steps // 10``).

    Returns:
        The suggested learning rate.

    Example:
        >>> lrs = np.logspace(-4, 0, 40)
        >>> float(suggest_steepest(lrs, 1 - np.tanh(np.log10(lrs) + 2))) == float(lrs[19])
        True

    References:
        Smith (2017), sec. 3.3; torch-lr-finder ``LRFinder.plot(suggest_lr=True)``.
    """
    reading = _read(_steepest, lrs, losses, skip_start, skip_end, num_steps)
    return _warned("steepest", reading, lrs)


def _steepest(x: np.ndarray, y: np.ndarray) -> float:
    return float(x[int(np.argmin(np.gradient(y)))])


def suggest_minimum(
    lrs: ArrayLike, losses: ArrayLike, *, skip_start: int | None = None,
    skip_end: int | None = None, num_steps: int | None = None,
) -> float:
    """fastai's ``minimum``: one tenth of the rate at the lowest loss, never below ``lrs[0]``.

    ``max(lr[argmin loss] / 10, lrs[0])`` on the trimmed curve. fastai returns the tenth
    even when it lies below every rate tested; lrjax clamps it to the smallest one.

    Args:
        lrs: learning rates (1-D, increasing).
        losses: smoothed losses, as recorded.
        skip_start: points dropped at the start (default ``num_steps // 10``).
        skip_end: recorded points dropped at the end (default 5).
        num_steps: the range test's steps, fastai's ``num_it`` (default ``len(lrs)``).

    Returns:
        The suggested learning rate.

    Example:
        >>> lrs = np.logspace(-4, 0, 41)
        >>> round(float(np.log10(suggest_minimum(lrs, (np.log10(lrs) + 1) ** 2))), 1)  # minimum at 0.1
        -2.0

    References:
        fastai ``callback.schedule.minimum`` (Howard & Gugger, "fastai", 2020).
    """
    floor = float(_as_curve(lrs, losses)[0][0])
    read = functools.partial(_minimum, floor=floor)
    return _warned("minimum", _read(read, lrs, losses, skip_start, skip_end, num_steps), lrs)


def _minimum(x: np.ndarray, y: np.ndarray, floor: float) -> float:
    return max(float(x[int(np.argmin(y))] / 10.0), floor)


def suggest_slide(
    lrs: ArrayLike,
    losses: ArrayLike,
    *,
    lr_diff: int = 15,
    thresh: float = 0.005,
    adjust_value: float = 1.0,
    skip_start: int | None = None,
    skip_end: int | None = None,
    num_steps: int | None = None,
) -> float:
    """fastai's interval slide rule.

    With ``g = np.gradient(losses)`` (per step) on the trimmed curve, a window of
    ``lr_diff`` steps slides left from the right end while ``|g[right] - g[left]| > thresh``;
    the suggestion is ``adjust_value`` times the learning rate at the window's left end
    where it stops (the last left end visited). ``thresh`` is in loss units per step, as
    in fastai; ``lr_diff`` is shortened to fit short curves (fastai raises IndexError).

    Args:
        lrs: learning rates (1-D, increasing).
        losses: smoothed losses, as recorded.
        lr_diff: window width in steps (integer >= 1).
        thresh: gradient difference below which the window stops (finite, >= 0).
        adjust_value: factor applied to the learning rate found (finite, > 0).
        skip_start: points dropped at the start (default ``num_steps // 10``).
        skip_end: recorded points dropped at the end (default 5).
        num_steps: the range test's steps, fastai's ``num_it`` (default ``len(lrs)``).

    Returns:
        The suggested learning rate.

    Example:
        >>> lrs = np.logspace(-4, 0, 60)
        >>> lr = suggest_slide(lrs, 1 / (1 + lrs * 100))

    References:
        fastai ``callback.schedule.slide`` (interval slide rule).
    """
    read = _slide_reader(lr_diff, thresh, adjust_value)
    return _warned("slide", _read(read, lrs, losses, skip_start, skip_end, num_steps), lrs)


def _slide_reader(lr_diff: int = 15, thresh: float = 0.005,
                  adjust_value: float = 1.0) -> Callable[[np.ndarray, np.ndarray], float]:
    """The slide rule with its arguments validated (ValueError naming the bad one)."""
    if isinstance(lr_diff, bool) or not isinstance(lr_diff, (int, np.integer)) or lr_diff < 1:
        raise ValueError(f"lr_diff must be an integer >= 1, got {lr_diff!r}.")
    if not (isinstance(thresh, (int, float, np.number)) and math.isfinite(thresh) and thresh >= 0):
        raise ValueError(f"thresh must be a finite number >= 0, got {thresh!r}.")
    if not (isinstance(adjust_value, (int, float, np.number)) and math.isfinite(adjust_value)
            and adjust_value > 0):
        raise ValueError(f"adjust_value must be a finite number > 0, got {adjust_value!r}.")
    return functools.partial(_slide, lr_diff=int(lr_diff), thresh=float(thresh),
                             adjust_value=float(adjust_value))


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


#: The default of ``RangeTestResult.suggest`` (see ``lrjax.finder.suggest.fall_rule`` and ``lrjax.finder.suggest.turn_rule``).
DEFAULT_METHOD = "fall"

SUGGESTERS: dict[str, SuggestFn] = {
    "fall": suggest_fall,
    "valley": suggest_valley,
    "slide": suggest_slide,
    "steep": suggest_steep,
    "steepest": suggest_steepest,
    "minimum": suggest_minimum,
}

# The peers' rules read the smoothed curve as the peer records it; ``fall`` the raw one.
_READERS: dict[str, Callable[..., float]] = {
    "valley": _valley,
    "slide": _slide,
    "steep": _steep,
    "steepest": _steepest,
    "minimum": _minimum,
}


def suggest_lr(lrs: ArrayLike, losses: ArrayLike, method: str = "valley", **kwargs: Any) -> float:
    """Dispatches to ``suggest_<method>``; ``method`` in ``fall, valley, slide, steep, steepest, minimum``.

    Example:
        >>> lrs = np.logspace(-4, 0, 41)
        >>> round(float(np.log10(suggest_lr(lrs, (np.log10(lrs) + 1) ** 2, "minimum"))), 1)
        -2.0

    References:
        See each rule: :func:`suggest_valley`, :func:`suggest_slide`, :func:`suggest_steep`,
        :func:`suggest_steepest`, :func:`suggest_minimum`, ``lrjax.finder.suggest.fall_rule``
        (Smith 2017; fastai; torch-lr-finder).
    """
    if method not in SUGGESTERS:
        raise ValueError(f"method must be one of {tuple(SUGGESTERS)}, got {method!r}.")
    return SUGGESTERS[method](lrs, losses, **kwargs)
