"""The ``turn`` rule: a step back from where the validation loss stops falling.

A range test with ``val_data`` records, at every step of the ramp, the loss on a fixed
held-out batch. That curve is smooth (the batch never changes) and it falls for as long
as a larger rate still makes the model generalise better. Where it first turns up, the
ramp's rate has become too large for the problem: unstable, or (on a small noisy data
set) fitting noise so fast that the held-out loss gets worse while the training loss
still falls. The best constant rate sits a fixed factor below that turn, on problems
that overfit as on problems that do not; a share of the fall cannot say this, since a
problem that overfits has its best rate near the start of its fall and one that does not
far down it (see docs/guides/suggestions.md, "Choosing a learning rate from the curve"):

1. ``s`` = centred moving average of the raw losses before divergence, half-width
   ``max(1, round(0.01 * num_steps))`` (light: the validation curve has no batch noise);
   ``start`` = median of the first tenth of the raw losses.
2. The turn is the first step ``i`` past the first tenth, once ``s`` has covered at least
   a tenth of its whole fall ``start - min(s)``, at which ``s`` climbs back above its
   running minimum ``m_i`` by more than ``tolerance`` (default 0.3) of the fall so far
   ``start - m_i``; the turn's rate is the rate at that running minimum (at ``argmin s``
   when the curve never turns before divergence).
3. The suggestion is ``lr_turn / divisor`` (default 5, never below ``lrs[0]``).

**Tolerance 0.3, not 0.1.** On slow nonlinear classification (``make_hastie_10_2``, a
checkerboard, clustered classes) the validation loss first falls as the output layer
calibrates, bumps up by 15-25% of that fall, then falls further as the features form;
at 0.1 the bump was read as the turn, 10-30x below the best rate (the finder benchmark's
fifteenth batch, development). On the 37 development problems (interpolated, careful
call, worst / geometric mean) tolerances 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5 give
0.335 / 0.897, 0.335 / 0.896, 0.393 / 0.918, 0.393 / 0.924, **0.393 / 0.929**, 0.393 /
0.929, 0.393 / 0.929, 0.393 / 0.929 (0.5 costs a cosine Adam MLP 1.00 -> 0.88): 0.3 is
the low edge of the plateau, nearest the old value. The regression that overfits turns
by 80% of its fall so far and still counts; a cosine AdamW MLP that overfits 300 rows
drops 0.99 -> 0.88. The worst, a one-cycle checkerboard MLP (0.39), is the validation
curve's own: its lowest point is 50x below the best peak (``peak_lr()`` now never reads a
schedule's peak below the training curve's, 0.56 there).

**Training-length hint: not applied to a turn.** ``train_steps`` is accepted (the same
signature as ``suggest_fall`` and ``RangeTestResult.suggest``) but a validation turn is
not moved by the training's length: the turn already marks where held-out loss stops
improving, and on the finder benchmark's development half (``benchmarks/
finder_quality.py``) the hint (then a cap at the time-matched rate, see
``lrjax.finder.suggest.fall_rule``) lowered the careful call's quality on 3 of 10 problems
(0.97 -> 0.03 on a recurrent net, 1.00 -> 0.82 on a transformer) and raised it on none;
the held-out half agreed (0.95 -> 0.00 on a GRU). The turn is always capped at three
quarters of the validation curve's fall (the stability ceiling).

**Noise.** A curve whose fall is not clearly larger than its noise (fall < 8 x its smoothed noise,
``lrjax.finder.suggest.readability_check.readability``) may turn on a noise bump: ``suggest_turn`` still returns
its reading, with an ``UnreadableCurveWarning``; ``RangeTestResult.suggest()`` does not
read such a validation curve at all: it warns and reads the training curve's fall.

Read on a training curve the rule is unreliable: batch noise makes ``s`` rise and fall
all along the fall (``suggest()`` uses it only on validation curves).

References:
    Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017, sec. 3.3
    (the range test, read where the loss stops improving); fastai's ``minimum`` rule
    (``lr_find``: the rate of the minimum over 10) is the same step back, taken from the
    lagged training EMA's global minimum.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from lrjax._engine.checks import check_static
from lrjax.finder.suggest.curve import Reading, _as_curve, _warned, unreadable
from lrjax.finder.suggest.readability_check import warn_if_noisy
from lrjax.finder.suggest.fall_rule import CEILING_FRACTION, read_fall, smoothed_start

#: The suggestion is the turn's rate divided by this.
DIVISOR = 5.0
#: A rise above the running minimum larger than this share of the fall so far is the turn.
TOLERANCE = 0.3
# The curve must have covered this share of its whole fall before a rise counts (a
# wobble in the flat start is not a turn).
_MIN_FALL_SHARE = 0.1
_HALF_WIDTH_FRACTION = 0.01


def read_turn(lrs: ArrayLike, losses: ArrayLike, divisor: float = DIVISOR,
              tolerance: float = TOLERANCE, half_width: int | None = None,
              num_steps: int | None = None, train_steps: int | None = None,
              train_losses: ArrayLike | None = None) -> Reading:
    """The ``turn`` rule on one raw curve; a :class:`~lrjax.finder.suggest.curve.Reading` (no warning).

    Args:
        lrs: learning rates (1-D, increasing).
        losses: RAW losses (a validation curve); the first non-finite value ends it.
        divisor: the suggestion is the turn's rate over this, > 0 (a finite number).
        tolerance: a rise above the running minimum by more than this share of the fall
            so far is the turn, in ``(0, 1)``.
        half_width: the smoother's half-width in points (default 1% of ``num_steps``,
            at least 1).
        num_steps: the range test's steps (default ``len(lrs)``).
        train_steps: the training-length hint, accepted and checked but not applied to
            a turn (see the module docstring); the reading gets the 3/4-fall ceiling.
        train_losses: accepted with ``train_steps``; unused (no hint on a turn).

    Returns:
        ``Reading(lr, None)``, or ``Reading(lrs[0], reason)`` for an unreadable curve.
    """
    lrs, losses = _as_curve(lrs, losses)
    divisor = check_static("divisor", divisor, low=0.0, low_open=True)
    tolerance = check_static("tolerance", tolerance, low=0.0, high=1.0, low_open=True,
                             high_open=True)
    steps = lrs.size if num_steps is None else int(num_steps)
    turn = _turn_index(losses, steps, half_width, tolerance)
    if train_steps is not None and (isinstance(train_steps, bool) or not isinstance(
            train_steps, (int, np.integer)) or train_steps < 1):
        raise ValueError(f"train_steps must be an integer >= 1 or None, got {train_steps!r}.")
    if isinstance(turn, str):
        return Reading(float(lrs[0]), turn)
    reading = Reading(float(max(lrs[0], lrs[turn] / divisor)), None)
    if train_steps is None:
        return reading
    # With a train_steps the turn gets the stability ceiling suggest() gives it (three
    # quarters of the fall), never the hint (see the module docstring).
    cap = read_fall(lrs, losses, CEILING_FRACTION, num_steps=num_steps)
    return reading if cap.failed is not None else Reading(min(reading.lr, cap.lr), None)


def _turn_index(losses: np.ndarray, steps: int, half_width: int | None = None,
               tolerance: float = TOLERANCE) -> int | str:
    """Steps 1-2 of the rule: the index of the turn's running minimum, or why there is none."""
    if half_width is None:
        half_width = max(1, round(_HALF_WIDTH_FRACTION * steps))
    curve = smoothed_start(losses, steps, half_width)
    if isinstance(curve, str):
        return curve
    smooth, head, start = curve
    fall = start - float(smooth.min())
    if not fall > 0 or int(np.argmin(smooth)) < head or unreadable(
            np.concatenate([[start], smooth])) is not None:
        return "the smoothed loss never falls below its start"
    running = np.minimum.accumulate(smooth)
    fallen = start - running
    rises = (smooth > running + tolerance * fallen) & (fallen >= _MIN_FALL_SHARE * fall)
    rises[:head] = False
    after = np.flatnonzero(rises)
    end = int(after[0]) if after.size else smooth.size
    return int(np.argmin(smooth[:end]))


def suggest_turn(lrs: ArrayLike, losses: ArrayLike, *, divisor: float = DIVISOR,
                 tolerance: float = TOLERANCE, half_width: int | None = None,
                 num_steps: int | None = None, train_steps: int | None = None,
                 train_losses: ArrayLike | None = None) -> float:
    """A fifth of the rate at which a (validation) loss curve first turns up.

    ``lr = lr_turn / divisor`` with ``lr_turn`` the rate where the lightly smoothed raw
    curve reaches the minimum it then climbs back from (by more than ``tolerance`` of
    its fall so far); see the module docstring. Pass a RAW validation curve;
    ``RangeTestResult.suggest()`` (rule ``fall``) reads it this way whenever the range
    test recorded ``val_losses``, and seeds vote by their lower median.

    Args:
        lrs: learning rates (1-D, increasing).
        losses: RAW losses at those rates, NaN from divergence on.
        divisor: the turn's rate is divided by this (> 0, default 5).
        tolerance: the share of the fall so far that a rise must exceed to be the turn,
            in ``(0, 1)`` (default 0.3).
        half_width: the smoother's half-width in points (default 1% of the points).
        num_steps: the range test's steps (default ``len(lrs)``).
        train_steps: the steps the user will train at a constant rate: accepted, as by
            ``suggest_fall`` and ``RangeTestResult.suggest``, but a turn is not capped by
            it (the module docstring says why); the reading is capped at three quarters
            of the curve's fall, as ``RangeTestResult.suggest()`` caps a turn.
        train_losses: accepted with ``train_steps``; unused.

    Returns:
        The suggested learning rate (``lrs[0]`` with a warning for an unreadable curve).
        A curve whose fall is not clearly larger than its noise (fall < 8 x its smoothed noise) still
        gives the reading, with an ``UnreadableCurveWarning`` (it may be a noise bump).

    Example:
        >>> lrs = np.logspace(-6, 0, 61)
        >>> x = np.log10(lrs)
        >>> val = 2 - np.tanh(x + 3) + np.where(x > -1.5, 3 * (x + 1.5), 0)  # turns at 10**-1.5
        >>> lr = suggest_turn(lrs, val)  # the 3-point smoother moves a sharp kink by one rate
        >>> bool(np.isclose(lr, 10**-1.6 / 5))
        True

    References:
        Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017, sec. 3.3.
    """
    reading = read_turn(lrs, losses, divisor, tolerance, half_width, num_steps, train_steps,
                        train_losses)
    if reading.failed is None:
        warn_if_noisy(losses, num_steps, "turn", curve="validation")
    return _warned("turn", reading, lrs)
