"""The curve under every suggestion rule: the usable part of a range-test curve, and readings.

Each rule (the peers' rules in :mod:`lrjax.finder.suggest.rules`, ``fall`` and ``turn``)
reads the same thing: the learning rates and losses of one curve, cut where the peer's
recorder would stop (:func:`recorded_curve`), trimmed as the peer trims it
(:func:`usable_curve`), refused when too short or flat (:func:`unreadable`), and returned
as a :class:`Reading` (the rate, and why the curve could not be read).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

SuggestFn = Callable[..., float]

# The smallest number of points a rule needs to say anything about a slope.
_MIN_POINTS = 2
# A curve whose whole range is within this fraction of its size is flat (float32 rounding).
_FLAT_RTOL = 1e-5


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


def _check_skip(name: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}.")
    return int(value)


def recorded_curve(
    lrs: ArrayLike, losses: ArrayLike, diverged_at: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """The curve as fastai's and torch-lr-finder's recorders would hold it.

    Both record the step at which the smoothed loss crosses the divergence threshold and
    stop there, so a finite diverging step ``d`` gives the first ``d + 1`` points. A NaN
    loss stops neither (NaN compares false): they record NaN to the end, so a curve
    whose diverging step is not finite keeps its full length, NaN from ``d`` on.

    Args:
        lrs: the range test's learning rates, ``(num_steps,)``.
        losses: one curve as the range test recorded it (finite up to and including a
            finite diverging step).
        diverged_at: the divergence step, or ``None`` / a negative value for "never".

    Returns:
        ``(lrs, losses)`` as float64 arrays, possibly shorter than the input.

    Example:
        >>> x, y = recorded_curve(np.logspace(-3, 0, 4), [3.0, 2.0, 9.0, np.nan], 2)
        >>> y.tolist()
        [3.0, 2.0, 9.0]
    """
    lrs, losses = _as_curve(lrs, losses)
    losses = losses.copy()
    if diverged_at is None or int(diverged_at) < 0 or int(diverged_at) >= losses.size:
        return lrs, losses
    step = int(diverged_at)
    if np.isfinite(losses[step]):
        return lrs[: step + 1], losses[: step + 1]
    losses[step:] = np.nan
    return lrs, losses


def usable_curve(
    lrs: ArrayLike,
    losses: ArrayLike,
    skip_start: int | None = None,
    skip_end: int | None = None,
    num_steps: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The part of a recorded curve a rule reads, trimmed as fastai's ``lr_find`` trims.

    ``lrs[skip_start : len - skip_end]`` (defaults ``num_steps // 10`` and 5, fastai's
    ``recorder.lrs[num_it//10:-5]``), then cut before the first non-finite loss. When
    that leaves fewer than two points, the untrimmed finite prefix is returned instead.

    Args:
        lrs: learning rates, positive and strictly increasing.
        losses: the loss at each learning rate, as recorded (see :func:`recorded_curve`).
        skip_start: points dropped at the start (default ``num_steps // 10``).
        skip_end: points dropped at the end of the recorded curve (default 5).
        num_steps: the range test's number of steps (fastai's ``num_it``; default
            ``len(lrs)``); only sets the default ``skip_start``.

    Returns:
        ``(lrs, losses)`` of the usable part, float64 (possibly fewer than two points).

    Example:
        >>> x, y = usable_curve(np.logspace(-4, 0, 20), np.linspace(3, 1, 20))
        >>> len(x)  # 2 dropped at the start, 5 at the end
        13
    """
    lrs, losses = _as_curve(lrs, losses)
    total = lrs.size
    num_steps = total if num_steps is None else int(num_steps)
    skip_start = _check_skip("skip_start", skip_start)
    skip_end = _check_skip("skip_end", skip_end)
    skip_start = num_steps // 10 if skip_start is None else skip_start
    skip_end = 5 if skip_end is None else skip_end
    x, y = lrs[skip_start : max(total - skip_end, 0)], losses[skip_start : max(total - skip_end, 0)]
    keep = _finite_length(y)
    if keep >= _MIN_POINTS:
        return x[:keep], y[:keep]
    finite = _finite_length(losses)
    return lrs[:finite], losses[:finite]


def unreadable(y: np.ndarray) -> str | None:
    """Why a usable curve gives no suggestion, or ``None`` when it can be read.

    Three cases: fewer than two points; a loss that never goes below its first value;
    a flat loss whose whole range is within ``1e-5`` of its size (float32 rounding,
    about 100 units in the last place, is all that moves: no learning-rate signal).
    """
    if y.size < _MIN_POINTS:
        return "fewer than two finite points before divergence"
    if not np.min(y[1:]) < y[0]:
        return "the loss never decreases"
    scale = np.max(np.abs(y))
    if np.ptp(y) <= _FLAT_RTOL * scale or scale == 0:
        return f"the loss is flat (its range is within {_FLAT_RTOL:g} of its size)"
    return None


def truncated_mean(values: ArrayLike, half_width: int) -> np.ndarray:
    """Centred moving average whose window is cut, not extrapolated, at the ends.

    ``out[i] = mean(values[max(0, i-h) : i+h+1])``: zero lag inside the curve; near the
    ends the window is one-sided (unlike a line fit, it never overshoots the data).

    Args:
        values: 1-D finite values.
        half_width: ``h >= 0`` points on each side.

    Returns:
        The smoothed values, float64, same length.

    Example:
        >>> truncated_mean([0.0, 3.0, 0.0, 3.0], 1).tolist()
        [1.5, 1.0, 2.0, 1.5]
    """
    if isinstance(half_width, bool) or not isinstance(half_width, (int, np.integer)) or half_width < 0:
        raise ValueError(f"half_width must be an integer >= 0, got {half_width!r}.")
    values = np.asarray(values, np.float64)
    n = values.size
    total = np.concatenate([[0.0], np.cumsum(values)])
    index = np.arange(n)
    low, high = np.maximum(index - half_width, 0), np.minimum(index + half_width + 1, n)
    return (total[high] - total[low]) / (high - low)



class Reading(NamedTuple):
    """One curve's suggestion: the rate, and why the curve was unreadable (``None`` if it was read)."""

    lr: float
    failed: str | None


def _fallback(lrs: np.ndarray, rule: str, why: str) -> None:
    warnings.warn(
        f"{rule}: {why}; falling back to the smallest learning rate tested, {lrs[0]:.3g}. "
        "Widen the range (smaller min_lr) or check the loss.",
        UserWarning,
        stacklevel=4,
    )


def _read(
    read: Callable[[np.ndarray, np.ndarray], Any],
    lrs: ArrayLike,
    losses: ArrayLike,
    skip_start: int | None,
    skip_end: int | None,
    num_steps: int | None,
) -> Reading:
    """``read(x, y)`` on the usable part, or the fallback ``lrs[0]`` with the reason."""
    all_lrs, _ = _as_curve(lrs, losses)
    x, y = usable_curve(lrs, losses, skip_start, skip_end, num_steps)
    why = unreadable(y)
    if why is not None:
        return Reading(float(all_lrs[0]), why)
    return Reading(read(x, y), None)


def _warned(rule: str, reading: Reading, lrs: ArrayLike) -> float:
    if reading.failed is not None:
        _fallback(np.asarray(lrs, np.float64), rule, reading.failed)
    return reading.lr
