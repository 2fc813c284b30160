"""Whether a range-test curve can be read at all: its fall against its batch noise.

:func:`readability` compares the fall of a raw loss curve (its start level, the median of
the first tenth, minus the minimum of the ``fall`` rule's centred ``window``-point mean)
with the raw loss's noise (a robust, MAD-based standard deviation of each loss's residual
from the median of its 4 neighbours) left after that mean, and calls the curve readable
when ``fall >= 8 * noise / sqrt(window)``. The rules still return their reading of an
unreadable curve, with an :class:`UnreadableCurveWarning` saying what would help.

References:
    Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017, sec. 3.3
    (the range test); Rousseeuw & Croux, "Alternatives to the Median Absolute Deviation",
    JASA 1993 (the MAD behind the noise estimate).
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from lrjax.finder.suggest.curve import _finite_length, truncated_mean

#: A curve is readable when its fall is at least this many times its noise (see :func:`readability`).
READABLE_RATIO = 8.0
# The noise is read off the residual of each raw loss from the median of its 2 + 2 neighbours.
_NOISE_HALF_WIDTH = 2
# 1.4826 * MAD is the standard deviation of a Gaussian; x_i - median(4 iid neighbours) has
# standard deviation 1.138 sigma (sqrt(1 + var(median of 4)), simulated over 10^5 windows).
_MAD_TO_SD = 1.4826
_NEIGHBOUR_RESIDUAL_SD = 1.138
# The fall's smoother and start window, as fractions of the steps (those of the fall rule).
_FALL_HALF_WIDTH_FRACTION = 0.05
_START_FRACTION = 0.1


class Readability(NamedTuple):
    """Whether a range-test curve's fall stands out of its batch noise (:func:`readability`).

    Attributes:
        readable: ``ratio >= READABLE_RATIO`` (8; False when it cannot be measured).
        fall: the start level minus the minimum of the smoothed curve (>= 0).
        noise: the RAW loss's step-to-step noise (a robust standard deviation); NaN
            when fewer than 5 finite points leave nothing to measure.
        ratio: ``fall / (noise / sqrt(window))``: the fall in standard deviations of the
            smoothed curve's noise (``inf`` for a noise-free fall, NaN when unmeasured).
        window: the points the ``fall`` rule's smoother averages (``2 h + 1``,
            ``h = max(1, round(0.05 num_steps))``: 11 for 100 steps).
    """

    readable: bool
    fall: float
    noise: float
    ratio: float
    window: int

class UnreadableCurveWarning(UserWarning):
    """A suggestion was read off a curve whose fall is not clearly larger than its noise.

    The rule's reading is still returned (see :func:`readability`), but it may sit on a
    noise dip. ``readability`` holds the :class:`Readability` measured and ``curve`` says
    which curve (``"training"`` or ``"validation"``).
    """

    def __init__(self, message: str, readability: Readability | None = None,
                 curve: str = "training") -> None:
        super().__init__(message)
        self.readability = readability
        self.curve = curve


#: What helps a curve that is too noisy to read (the last part of the warning).
NOISY_ADVICE = ("use more steps, a larger batch (or accumulation_steps), val_data or more "
                "seeds (num_seeds)")


def noisy_message(reading: Readability, curve: str = "the curve", then: str = "",
                  advice: str = NOISY_ADVICE) -> str:
    """The one-line warning for an unreadable curve; ``then`` says what was returned.

    Example:
        >>> noisy_message(Readability(False, 0.1, 0.3, 1.1, 11))
        'the curve is too noisy to read (fall 0.1 < 8 x 0.0905, its noise 0.3 averaged over 11 steps): use more steps, a larger batch (or accumulation_steps), val_data or more seeds (num_seeds)'
    """
    then = f"; {then}" if then else ""
    return (f"{curve} is too noisy to read (fall {reading.fall:.3g} < {READABLE_RATIO:g} x "
            f"{reading.noise / math.sqrt(reading.window):.3g}, its noise {reading.noise:.3g} "
            f"averaged over {reading.window} steps){then}: {advice}")


def curve_noise(losses: ArrayLike) -> float:
    """The step-to-step noise of a raw loss curve: a robust standard deviation.

    Over the finite prefix (before divergence), each interior loss's residual from the
    median of its two neighbours on each side, ``r_i = x_i - median(x_{i-2}, x_{i-1},
    x_{i+1}, x_{i+2})`` (the median follows any monotone trend exactly, so a fall or a
    blow-up adds nothing), and ``noise = 1.4826 * MAD(r) / 1.138``: the median absolute
    deviation scaled to a Gaussian's standard deviation, then divided by the residual's
    own inflation (``1.138 sigma`` for independent Gaussian noise), so that a curve of
    i.i.d. noise of standard deviation ``sigma`` gives ``sigma``. The MAD ignores up to
    half of the residuals: spikes, the bend at the minimum and the blow-up do not count.

    Args:
        losses: RAW losses; the first non-finite value ends the curve.

    Returns:
        The noise, or NaN with fewer than 5 finite points.

    Example:
        >>> noise = curve_noise(np.linspace(3, 1, 400) + np.random.default_rng(0).normal(0, 0.1, 400))
        >>> bool(0.09 < noise < 0.11)
        True

    References:
        Hampel, "The influence curve and its role in robust estimation", JASA 1974 (the
        MAD); Rousseeuw & Croux, "Alternatives to the median absolute deviation", JASA 1993.
    """
    y = np.asarray(losses, np.float64).reshape(-1)
    y = y[: _finite_length(y)]
    h = _NOISE_HALF_WIDTH
    if y.size < 2 * h + 1:
        return math.nan
    windows = np.lib.stride_tricks.sliding_window_view(y, 2 * h + 1)
    neighbours = np.delete(windows, h, axis=1)
    residual = windows[:, h] - np.median(neighbours, axis=1)
    mad = float(np.median(np.abs(residual - np.median(residual))))
    return _MAD_TO_SD * mad / _NEIGHBOUR_RESIDUAL_SD


def smoothing_window(num_steps: int) -> int:
    """Points the ``fall`` rule's smoother averages: ``2 h + 1``, ``h = max(1, round(0.05 n))``."""
    return 2 * max(1, round(_FALL_HALF_WIDTH_FRACTION * int(num_steps))) + 1


def curve_fall(losses: ArrayLike, num_steps: int | None = None) -> float:
    """How far a raw curve falls: its start level minus the minimum of its smoothed curve.

    ``start`` = median of the first tenth of the raw losses (tenth of ``num_steps``); the
    smoothed curve is the centred :func:`truncated_mean` of half-width ``max(1,
    round(0.05 * num_steps))`` of the finite prefix (the ``fall`` rule's own start and
    smoother). Never negative; 0.0 with no finite point.
    """
    y = np.asarray(losses, np.float64).reshape(-1)
    y = y[: _finite_length(y)]
    if y.size == 0:
        return 0.0
    steps = y.size if num_steps is None else int(num_steps)
    start = float(np.median(y[: max(1, round(_START_FRACTION * steps))]))
    smooth = truncated_mean(y, smoothing_window(steps) // 2)
    return max(start - float(smooth.min()), 0.0)


def readability(losses: ArrayLike, *, num_steps: int | None = None,
                threshold: float = READABLE_RATIO) -> Readability:
    """Whether a raw range-test curve can be read: its fall against its noise.

    ``fall`` = :func:`curve_fall` (the start level, median of the first tenth, minus the
    minimum of the ``fall`` rule's centred mean of ``window = 2 h + 1`` points, ``h =
    max(1, round(0.05 num_steps))``), ``noise`` = :func:`curve_noise` (robust standard
    deviation of each raw loss's residual from the median of its 4 neighbours), and the
    curve is readable when

        ``ratio = fall / (noise / sqrt(window)) >= threshold``  (default 8),

    i.e. when the fall is at least 8 standard deviations of the noise left on the
    smoothed curve the rules read. The smoothed noise, not the raw one, is what can fake
    a fall; it shrinks with more steps (a wider window over the same ramp), a larger
    batch (less noise per step) and more seeds (the mean of ``n`` independent curves
    has ``1 / sqrt(n)`` of the noise, ``RangeTestResult.readability``).

    Why 8: on a curve of pure Gaussian noise the smoothed minimum dips below the start
    level by chance, and the ratio's 99.9th percentile over 2,500 such curves each of
    60, 100, 300 and 1000 steps is 7.0, 6.5, 6.8 and 6.5 (largest 7.3, 8.0, 7.4, 7.7;
    median about 2): the ratio hardly depends on the length, and 8 is above what noise
    alone gives in all but about 1 in 10,000 curves (about 1 in 100 for heavy-tailed
    Student-t noise with 3 degrees of freedom; more for curves under 60 steps). A
    clean range-test curve (flat at 3, a fall to 1, a blow-up) of 100 steps with
    Gaussian noise of standard deviation 0.05, 0.1, 0.3 and 0.5 has a median ratio of
    94, 59, 22 and 13 (1st percentile 75, 48, 16, 9.6): readable. A curve like a barely
    learning recurrent model (a fall of 0.1 under noise of 0.3) has a median of 2.9.

    Args:
        losses: RAW losses (not the EMA: it hides the noise), NaN from divergence on.
        num_steps: the range test's steps (default ``len(losses)``): sets the start
            window and the smoother, as for the ``fall`` rule.
        threshold: the ratio a readable curve reaches (> 0).

    Returns:
        A :class:`Readability` ``(readable, fall, noise, ratio)``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> readability(2 + rng.normal(0, 0.3, 100)).readable  # pure noise
        False
        >>> x = np.linspace(-5, 1, 100)
        >>> clean = 1 + 2 / (1 + np.exp(x + 3)) + rng.normal(0, 0.05, 100)
        >>> readability(clean).readable
        True

    References:
        Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017, sec. 3.3
        (the range test); Hampel 1974 and Rousseeuw & Croux 1993 (the MAD).
    """
    if not (isinstance(threshold, (int, float, np.number)) and not isinstance(threshold, bool)
            and math.isfinite(threshold) and threshold > 0):
        raise ValueError(f"threshold must be a finite number > 0, got {threshold!r}.")
    fall, noise = curve_fall(losses, num_steps), curve_noise(losses)
    window = smoothing_window(np.asarray(losses).size if num_steps is None else num_steps)
    if math.isnan(noise):
        return Readability(False, fall, noise, math.nan, window)
    smoothed_noise = noise / math.sqrt(window)
    ratio = fall / smoothed_noise if noise > 0 else (math.inf if fall > 0 else 0.0)
    return Readability(bool(ratio >= threshold), fall, noise, ratio, window)


def warn_if_noisy(losses: ArrayLike, num_steps: int | None, rule: str, stacklevel: int = 3,
                  curve: str = "training") -> None:
    """An :class:`UnreadableCurveWarning` when a measurable curve is too noisy to read."""
    reading = readability(losses, num_steps=num_steps)
    if not reading.readable and not math.isnan(reading.noise):
        message = noisy_message(reading, then=f"{rule} returns its reading of it anyway")
        warnings.warn(UnreadableCurveWarning(message, reading, curve), stacklevel=stacklevel)
