"""Whether a suggestion holds when the curve's noise is drawn again: a wild bootstrap.

A range-test curve is one draw of its batch noise. :func:`suggestion_stability` draws it
again: each raw curve (training, and validation when there is one) before divergence is
split into its smooth part ``s`` (a centred local-linear fit over the ``fall`` rule's window,
half-width ``max(1, round(0.05 num_steps))``: the window's mean inside, the trend's line at
the ends) and its residual ``e = y - s``, and a replica is
``y* = s + sign * e`` with an independent random sign per step (Rademacher weights: the
wild bootstrap, which keeps each step's noise size where it is), its EMA recomputed as the
range test records it. The rule reads ``replicas`` such results; the suggestion is
**stable** when the 10th and 90th percentiles of those readings are less than
``STABLE_DECADES`` (1, a factor 10) apart in ``log10`` rate.

Why a second check beside :func:`~lrjax.finder.suggest.readability_check.readability`:
that one compares the fall with the noise, and a curve can pass it and still be read off
a part of the curve the noise moves, e.g. a slow classification whose 100-step fall is
mostly calibration (the output's bias moving toward the class frequencies) and whose
share of the fall lands on a long, shallow slope. The bootstrap measures the reading
itself. Chosen on the finder benchmark's development half (``benchmarks/finder_quality.py``,
37 problems, the default and the careful call: 74 suggestions, 12 already warned as too
noisy, 6 below 0.8 of the grid's best without a warning), 64 replicas drawn with 3 seeds,
thresholds of 0.75, 1, 1.25 and 1.5 decades: at **1 decade** 3 silent suggestions below
0.8 are left for every seed (1.25 and 1.5: 4; 0.75: 3 with more warnings), and 8 of the
62 others are warned, 1 of them on a suggestion that scores at least 0.95. The 3 left are
read consistently wrong, not moved by the noise (SGD-momentum schedule peaks): no
resampling can see them. The smoother was the fall rule's truncated centred mean at
first; its ends lag a blow-up's rise and a steep start, and flipping that lag is not
noise: it warned 13-14 of the 62 (6-7 scoring at least 0.95) and a clean least-squares
range test, for the same 3 silent. 32 replicas left 3 or 4 depending on the seed. On the
69 held-out problems (read after): 10 silent suggestions below 0.8 -> 5, 11-12 of 110
others warned, 4-5 of them scoring at least 0.95. See
``docs/benchmarks/finder_quality.md``.

References:
    Wu, "Jackknife, bootstrap and other resampling methods in regression analysis",
    Annals of Statistics 1986 (the wild bootstrap); Mammen, "Bootstrap and wild bootstrap
    for high dimensional linear models", Annals of Statistics 1993; Efron & Tibshirani,
    "An Introduction to the Bootstrap", 1993 (percentile intervals).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any, Callable, NamedTuple

import numpy as np

from lrjax._engine.checks import check_static, check_steps
from lrjax.finder.suggest.curve import _finite_length, truncated_mean
from lrjax.finder.suggest.fall_rule import _log_grid
from lrjax.finder.suggest.readability_check import (
    NOISY_ADVICE,
    UnreadableCurveWarning,
    smoothing_window,
)

#: A suggestion is stable when its replicas' 10th and 90th percentiles are closer than this
#: many decades of rate (1: a factor 10).
STABLE_DECADES = 1.0
#: Replicas drawn (about 1-2 ms each for a 100-step result: 0.1 s for a 3-seed result with
#: validation).
REPLICAS = 64
#: ``suggest()`` and ``peak_lr()`` check results of at most this many curves (seeds x sweep
#: values) on their own: the check reads every curve ``REPLICAS`` times (about 40 ms per
#: curve, 0.6 s for 16), and the vote of many curves moves less with the noise of each.
#: ``RangeTestResult.stability()`` measures any result.
MAX_CHECKED_CURVES = 16
# The percentiles whose distance is the spread.
_LOW_PERCENTILE, _HIGH_PERCENTILE = 10.0, 90.0


class Stability(NamedTuple):
    """How far a suggestion moves when the curve's noise is drawn again (:func:`suggestion_stability`).

    Attributes:
        stable: ``decades < threshold`` (default ``STABLE_DECADES``, 1).
        low: the 10th percentile of the replicas' suggestions.
        high: their 90th percentile.
        decades: ``log10(high / low)`` (0 for a noise-free curve).
        replicas: how many replicas were read.
    """

    stable: bool
    low: float
    high: float
    decades: float
    replicas: int


class UnstableSuggestionWarning(UnreadableCurveWarning):
    """A suggestion moves by more than a factor 10 when the curve's noise is drawn again.

    A kind of :class:`UnreadableCurveWarning` (a filter on that catches both);
    ``stability`` holds the :class:`Stability` measured and ``rule`` the rule read
    (``"fall"`` or ``"peak_lr"``).
    """

    def __init__(self, message: str, stability: Stability, rule: str = "fall",
                 curve: str = "training") -> None:
        super().__init__(message, None, curve)
        self.stability = stability
        self.rule = rule


def unstable_message(stability: Stability, rule: str, advice: str = NOISY_ADVICE) -> str:
    """The one-line warning for an unstable suggestion.

    Example:
        >>> unstable_message(Stability(False, 1e-3, 0.05, 1.7, 64), "fall")
        "fall's suggestion is unstable: drawing the curve's noise again moves it from 0.001 to 0.05 (10th to 90th percentile of 64 replicas, 1.7 decades); use more steps, a larger batch (or accumulation_steps), val_data or more seeds (num_seeds), or search around it (search_space)"
    """
    return (f"{rule}'s suggestion is unstable: drawing the curve's noise again moves it from "
            f"{stability.low:.3g} to {stability.high:.3g} (10th to 90th percentile of "
            f"{stability.replicas} replicas, {stability.decades:.2g} decades); {advice}, or "
            "search around it (search_space)")


def local_linear(values: np.ndarray, half_width: int) -> np.ndarray:
    """A centred local-linear smoother: at each point, the least-squares line through the
    ``2 half_width + 1`` points around it (fewer at the ends), evaluated there.

    Inside, where the window is whole, that is the window's mean (a symmetric window's
    slope does not move its centre); in the first and last ``half_width`` points it follows
    the trend where a truncated mean lags it (a blow-up's last points, a steep start).

    Example:
        >>> local_linear(np.arange(6.0), 2)  # a line is its own smooth, ends included
        array([0., 1., 2., 3., 4., 5.])
    """
    y = np.asarray(values, np.float64)
    n = y.size
    out = truncated_mean(y, half_width)  # inside, the window's mean: the line's centre
    for i in [*range(min(half_width, n)), *range(max(half_width, n - half_width), n)]:
        lo, hi = max(0, i - half_width), min(n, i + half_width + 1)
        offsets = np.arange(lo, hi) - i
        centred = offsets - offsets.mean()
        spread = float(centred @ centred)
        slope = float(centred @ (y[lo:hi] - out[i])) / spread if spread > 0 else 0.0
        out[i] -= slope * offsets.mean()
    return out


def resampled_rows(rows: np.ndarray, num_steps: int, rng: np.random.Generator) -> np.ndarray:
    """Each raw curve's smooth part plus its residual with random signs (wild bootstrap).

    The smooth part is :func:`local_linear` of half-width ``max(1, round(0.05
    num_steps))`` (the ``fall`` rule's window): a truncated mean at the ends would leave
    the blow-up's own rise in the residual, and flipping it is not noise.

    Args:
        rows: ``(curves, steps)`` raw losses; each row's first non-finite value ends the
            part resampled (divergence), the rest is kept as it is.
        num_steps: the range test's steps (sets the smoother, as for the ``fall`` rule).
        rng: the random generator.

    Returns:
        A new array of the same shape; a row with fewer finite points than the smoother's
        window is copied unchanged.

    Example:
        >>> rows = np.array([[3.0, 2.9, 2.5, 2.0, 1.6, 1.5, 1.7, np.nan]])
        >>> out = resampled_rows(rows, 8, np.random.default_rng(0))
        >>> bool(np.isnan(out[0, -1])), out.shape
        (True, (1, 8))
    """
    rows = np.asarray(rows, np.float64)
    return _draw_rows(rows, _decompose(rows, num_steps), rng)


def _decompose(rows: np.ndarray, num_steps: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Per row: the length drawn again (0: none), its smooth part and its residual."""
    half_width = smoothing_window(num_steps) // 2  # the fall rule's window
    parts = []
    for row in np.asarray(rows, np.float64):
        n = _finite_length(row)
        if n <= 2 * half_width + 1:
            parts.append((0, row[:0], row[:0]))
            continue
        smooth = local_linear(row[:n], half_width)
        parts.append((n, smooth, row[:n] - smooth))
    return parts


def debiased_ema(rows: np.ndarray, beta: float) -> np.ndarray:
    """The range test's bias-corrected EMA of each row: ``avg_t / (1 - beta**(t + 1))``,
    ``avg_t = beta avg_{t-1} + (1 - beta) loss_t`` (``lrjax.finder.driver``)."""
    rows = np.asarray(rows, np.float64)
    out = np.empty_like(rows)
    avg = np.zeros(rows.shape[:-1])
    for step in range(rows.shape[-1]):
        avg = beta * avg + (1 - beta) * rows[..., step]
        out[..., step] = avg / (1 - beta ** (step + 1))
    return out


def _draw_rows(rows: np.ndarray, parts: list, rng: np.random.Generator) -> np.ndarray:
    """``rows`` with each decomposed prefix replaced by its smooth part plus its residual
    with a random sign per step."""
    rows = rows.copy()
    for row, (n, smooth, residual) in zip(rows, parts):
        if n:
            row[:n] = smooth + rng.choice((-1.0, 1.0), n) * residual
    return rows


class _Resampler:
    """A result's curves split once into smooth part and residual; :meth:`draw` makes a
    replica (the smoother and the reshapes run once, not once per replica)."""

    def __init__(self, result: Any) -> None:
        self.result = result
        steps = result.num_steps
        self.shape = np.shape(result.losses)
        self.beta = float(result.settings.get("smoothing", 0.98))
        self.losses = np.asarray(result.losses, np.float64).reshape(-1, steps)
        self.smoothed = np.asarray(result.smoothed_losses, np.float64).reshape(-1, steps)
        self.train = result._before_divergence(result.losses).reshape(-1, steps)
        self.train_parts = _decompose(self.train, steps)
        self.val = self.val_parts = self.val_losses = None
        if result.val_losses is not None:
            self.val_losses = np.asarray(result.val_losses, np.float64).reshape(-1, steps)
            self.val = result._before_divergence(result.val_losses).reshape(-1, steps)
            self.val_parts = _decompose(self.val, steps)

    def draw(self, rng: np.random.Generator) -> Any:
        train = _draw_rows(self.train, self.train_parts, rng)
        drawn = np.isfinite(train)
        ema = debiased_ema(np.where(drawn, train, 0.0), self.beta)
        smoothed = np.where(drawn, ema, self.smoothed)  # after divergence: as recorded
        losses = np.where(drawn, train, self.losses)
        val = None
        if self.val is not None:
            val_drawn = _draw_rows(self.val, self.val_parts, rng)
            val = np.where(np.isfinite(val_drawn), val_drawn, self.val_losses).reshape(self.shape)
        return dataclasses.replace(self.result, losses=losses.reshape(self.shape),
                                   smoothed_losses=smoothed.reshape(self.shape), val_losses=val)


def resampled_result(result: Any, rng: np.random.Generator) -> Any:
    """A copy of a ``RangeTestResult`` whose training and validation curves are drawn again
    (:func:`resampled_rows`) and whose EMA is recomputed up to each curve's divergence."""
    return _Resampler(result).draw(rng)


def suggestion_stability(result: Any, read: Callable[[Any], float], *,
                         replicas: int = REPLICAS, seed: int = 0,
                         threshold: float = STABLE_DECADES) -> Stability:
    """How far ``read(result)`` moves when the result's curves are drawn again.

    ``read`` is applied to ``replicas`` copies of ``result`` whose raw curves are each
    ``s + sign * (y - s)`` (``s`` the :func:`local_linear` smooth over the ``fall`` rule's
    window, a random sign per step; the EMA recomputed), with every warning silenced; the suggestion is stable when
    ``log10(q90 / q10) < threshold`` for the replicas' 10th and 90th percentiles.

    Args:
        result: a ``RangeTestResult``.
        read: ``result -> rate`` (e.g. ``lambda r: r.suggest()``).
        replicas: replicas to read (>= 2).
        seed: the generator's seed (the same seed, the same answer).
        threshold: decades of rate a stable suggestion's replicas stay within (> 0).

    Returns:
        A :class:`Stability`.

    Raises:
        ValueError: a ramp that is not log-spaced (``mode="linear"``), ``replicas`` < 2 or
            not whole, ``seed`` not a whole number >= 0, ``threshold`` not a positive
            number.

    Example:
        >>> import lrjax, numpy as np
        >>> lrs = np.geomspace(1e-5, 1.0, 100)
        >>> clean = 1 + 2 / (1 + np.exp(3 * (np.log10(lrs) + 2)))
        >>> result = lrjax.RangeTestResult(lrs, clean, clean, None)
        >>> suggestion_stability(result, lambda r: r.suggest()).stable
        True

    References:
        Wu, Annals of Statistics 1986 (the wild bootstrap); Efron & Tibshirani, "An
        Introduction to the Bootstrap", 1993, ch. 13 (percentile intervals).
    """
    if not log_ramp(result):
        raise ValueError("suggestion_stability: the ramp is not log-spaced (mode='linear'); the "
                         "resampling's window assumes the default mode='exp'.")
    replicas = check_steps("replicas", replicas, minimum=2)
    seed = check_steps("seed", seed, minimum=0)
    threshold = check_static("threshold", threshold, low=0.0, low_open=True)
    rng = np.random.default_rng(seed)
    resampler = _Resampler(result)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = np.array([float(read(resampler.draw(rng))) for _ in range(replicas)])
    low, high = (float(v) for v in np.percentile(values, [_LOW_PERCENTILE, _HIGH_PERCENTILE]))
    decades = math.log10(high / low) if low > 0 else math.inf
    return Stability(bool(decades < threshold), low, high, decades, replicas)


def log_ramp(result: Any) -> bool:
    """Whether a result's ramp is log-spaced (``mode="exp"``), the only one checked: on a
    linear ramp the fall fills a few of the first points, inside one smoothing window."""
    return _log_grid(np.asarray(result.lrs, np.float64)) is None


def warn_if_unstable(result: Any, read: Callable[[Any], float], rule: str,
                     stacklevel: int = 3) -> None:
    """An :class:`UnstableSuggestionWarning` when ``read``'s suggestion is not stable."""
    stability = suggestion_stability(result, read)
    if not stability.stable:
        warnings.warn(UnstableSuggestionWarning(unstable_message(stability, rule), stability,
                                                rule), stacklevel=stacklevel)
