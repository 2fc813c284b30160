"""Whether a range test saw the model learn: its lowest loss against a constant predictor's.

A range-test curve can fall, and fall clearly out of its noise, while the model only
calibrates its output: a classifier's logits move to the class frequencies, a regressor's
bias to the targets' mean. Until the loss is below what the best CONSTANT prediction
scores (``baseline_loss``: the cross-entropy of the class frequencies, the variance of
the targets under squared error), the curve says nothing about the rate at which the
model learns the task, and a rule reads a rate off calibration. :func:`share_below`
measures how far below the baseline the curves got; ``RangeTestResult.suggest()`` and
``peak_lr()`` warn (:class:`NoLearningWarning`) when it is under :data:`LEARNED_SHARE`,
and the ``fall`` rule and ``peak_lr()`` then return at least fastai's ``minimum`` rule
(:data:`EDGE_FLOOR`): the curve says nothing about where the model learns, and the one
landmark left is where its training stops being stable.

Why: on the finder benchmark (``benchmarks/finder_quality.py``) the careful call's
validation curve on slow nonlinear classification (``make_hastie_10_2``, a
checkerboard) turned while its loss was still at the constant predictor's, and the
rate read there was up to 20x below the best one, with no other warning (qualities 0.43
to 0.73 of the grid's best).

References:
    Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017, sec. 3.3
    (the range test); the constant predictor as the baseline of a loss is the null model
    of the coefficient of determination (R^2) and of the deviance.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from lrjax.finder.suggest.curve import _finite_length, truncated_mean
from lrjax.finder.suggest.readability_check import UnreadableCurveWarning, smoothing_window

#: The share of ``|baseline_loss|`` the curves' lowest point must be below the baseline
#: for the range test to have seen the model learn. Chosen on the finder benchmark's
#: development half (careful calls with a validation batch; 0, 0.02, 0.03 and 0.05 tried)
#: as the largest that warned on at most 3 of its 41 careful calls not warned already;
#: then checked on the twentieth batch, written and committed before it ran.
LEARNED_SHARE = 0.02


class NoLearningWarning(UnreadableCurveWarning):
    """A suggestion was read off a range test whose loss never got clearly below a
    constant predictor's (``baseline_loss``): the curve shows calibration, not learning.

    A kind of :class:`~lrjax.finder.suggest.UnreadableCurveWarning` (a filter on that
    catches both). ``share`` is :func:`share_below`'s reading, ``baseline_loss`` the
    baseline it was read against, ``curve`` which curve (``"validation"`` or
    ``"training"``), ``floored`` whether the suggestion it comes with was raised to
    :data:`EDGE_FLOOR`'s floor (``fall`` and ``peak_lr()``; the peers' rules are not).
    """

    def __init__(self, message: str, share: float, baseline_loss: float,
                 curve: str = "validation", floored: bool = False) -> None:
        super().__init__(message, None, curve)
        self.share = share
        self.baseline_loss = baseline_loss
        self.floored = floored


#: What helps a range test that saw no learning (the last part of the warning).
LEARNING_ADVICE = ("use more steps (num_steps) or a ramp (min_lr, max_lr) that spends more "
                   "of them where the model learns, or search around the suggestion "
                   "(search_space())")


#: What ``fall`` and ``peak_lr()`` do on such a range test (the middle of the warning).
EDGE_FLOOR = ("so fall and peak_lr() return at least fastai's minimum rule (a tenth of the rate "
              "at the training loss's lowest point: the one landmark such a curve has)")


def no_learning_message(share: float, baseline_loss: float, curve: str = "validation",
                        advice: str = LEARNING_ADVICE, floored: bool = False) -> str:
    """The one-line :class:`NoLearningWarning` message (``floored``: the suggestion was
    raised to :data:`EDGE_FLOOR`'s floor, as ``fall`` and ``peak_lr()`` do).

    Example:
        >>> no_learning_message(-0.01, 0.6931)
        "the validation loss never got clearly below a constant predictor's (baseline_loss 0.6931; its lowest smoothed value is 1.0% above it, less than 2% below): the range test saw the model calibrate its output, not learn the task, and the suggestion is read off that; use more steps (num_steps) or a ramp (min_lr, max_lr) that spends more of them where the model learns, or search around the suggestion (search_space())"
    """
    where = f"{abs(share):.1%} {'above' if share < 0 else 'below'} it"
    return (f"the {curve} loss never got clearly below a constant predictor's "
            f"(baseline_loss {baseline_loss:.4g}; its lowest smoothed value is {where}, less "
            f"than {LEARNED_SHARE:.0%} below): the range test saw the model calibrate its "
            f"output, not learn the task, "
            f"{EDGE_FLOOR if floored else 'and the suggestion is read off that'}; {advice}")


def check_baseline(value: Any) -> float | None:
    """``baseline_loss`` as a float: ``None`` or a finite nonzero real number, else a
    ``ValueError`` naming it."""
    if value is None:
        return None
    number = math.nan
    if not isinstance(value, (bool, np.bool_, str, bytes)) and np.ndim(value) == 0:
        try:
            number = float(value)
        except (TypeError, ValueError):  # a tracer too: a static number is needed
            pass
    if not math.isfinite(number) or number == 0:
        raise ValueError(f"baseline_loss must be a finite nonzero number (the loss of the best "
                         f"constant prediction), got {value!r:.60}.")
    return number


def lowest_point(losses: ArrayLike, num_steps: int | None = None) -> float:
    """The minimum of a raw curve's centred mean (the ``fall`` rule's smoother, half-width
    ``max(1, round(0.05 num_steps))``) over its finite prefix; NaN when that prefix is
    shorter than the smoother's window."""
    y = np.asarray(losses, np.float64).reshape(-1)
    window = smoothing_window(y.size if num_steps is None else num_steps)
    y = y[: _finite_length(y)]
    if y.size < window:
        return math.nan
    return float(truncated_mean(y, window // 2).min())


def share_below(rows: ArrayLike, baseline_loss: float, num_steps: int | None = None) -> float:
    """How far below a constant predictor's loss the curves got, as a share of it.

    Formula: ``(baseline_loss - L) / |baseline_loss|`` with ``L`` the median over the
    curves (rows, NaN from divergence on) of each one's :func:`lowest_point`; NaN when
    no curve is long enough to smooth. 0 at the baseline, negative above it; for a
    squared error with ``baseline_loss`` the targets' variance it is the R^2 the range
    test reached.

    Args:
        rows: raw loss curves, ``(num_curves, num_steps)`` or one curve.
        baseline_loss: the best constant prediction's loss (nonzero).
        num_steps: the range test's steps (default the rows' length).

    Returns:
        The share (a float; NaN when unmeasured).

    Example:
        >>> import numpy as np
        >>> calibrating = np.linspace(1.0, 0.70, 100)  # down to a coin's log 2 = 0.693
        >>> round(share_below(calibrating, np.log(2)), 3)
        -0.021
        >>> round(share_below(np.linspace(1.0, 0.3, 100), np.log(2)), 2)
        0.54
    """
    baseline = check_baseline(baseline_loss)
    rows = np.atleast_2d(np.asarray(rows, np.float64))
    lows = [lowest_point(row, num_steps) for row in rows]
    lows = [low for low in lows if not math.isnan(low)]
    if not lows:
        return math.nan
    return (baseline - float(np.median(lows))) / abs(baseline)


def not_learned(share: float | None) -> bool:
    """Whether :func:`share_below`'s ``share`` is measured (not ``None`` nor NaN) and
    under :data:`LEARNED_SHARE`: the range test saw no learning."""
    return share is not None and not math.isnan(share) and share < LEARNED_SHARE


def warn_if_not_learned(share: float | None, baseline_loss: float | None, curve: str,
                        stacklevel: int = 3, floored: bool = False) -> None:
    """A :class:`NoLearningWarning` when :func:`not_learned` (``floored``: the message
    says the suggestion was raised to :data:`EDGE_FLOOR`'s floor)."""
    if baseline_loss is None or not not_learned(share):
        return
    message = no_learning_message(share, baseline_loss, curve, floored=floored)
    warnings.warn(NoLearningWarning(message, share, baseline_loss, curve, floored),
                  stacklevel=stacklevel)
