"""Rules applied to a whole ``RangeTestResult``: one reading per curve, then the vote.

Separate from ``finder/suggest/rules.py`` (rules on one curve) because it knows the result's layout:
which curve a rule reads (the peers: each curve's smoothed losses as the peer records
them; ``fall``: the raw validation curve when there is one, read by its turn
(``lrjax.finder.suggest.turn_rule``), else the raw training curve by its fall (``lrjax.finder.suggest.fall_rule``),
cut before divergence), and how several curves (seeds, sweep values) vote: curves a
rule cannot read do not vote, the rest give their lower median.

It also says when the curves cannot be read at all (:func:`result_readability`): the
mean of the curves (seeds and sweep values) over the steps all of them recorded, whose
fall must be at least 8 times its smoothed noise (``lrjax.finder.suggest.readability_check.readability``; the mean of ``n``
independent seeds has ``1 / sqrt(n)`` of one seed's noise, so more seeds help). When it
is not, ``RangeTestResult.suggest()`` warns (``UnreadableCurveWarning``); a validation
curve that noisy is not read at all (``fall`` reads the training curve instead, with the
warning).

**fall on a whole result: the valley blend.** Per curve, ``fall``'s reading (the
validation turn, or the training curve's share of its fall) is blended in log rate with
fastai's ``valley`` of the same curve's EMA, ``lr = reading**(1 - w) * valley**w`` with
``w = valley_weight`` (default ``VALLEY_WEIGHT``, 0.35; on a log-spaced ramp, the
default ``mode="exp"``: the EMA's lag spans most of a linear ramp); when the TRAINING curves are
too noisy to read, ``fall`` is the larger of fastai's ``valley`` and ``slide`` of each
curve's EMA (which averages about 50 steps of noise where the fall's centred mean averages
11; the warning says so). The two readings fail
on different problems (a share of the fall reads too low on long SGD-momentum trainings
whose best rate sits near the stability edge; ``valley`` reads too high on small
problems that overfit and too low where its decreasing run starts in the flat noisy
part), so their weighted geometric mean hedges. Chosen on the finder benchmark's
development half (``benchmarks/finder_quality.py``, 14 problems, qualities interpolated
on 4-seed grids): worst / geometric mean of the default call 0.690 / 0.924 without
either change, 0.780 / 0.934 with the noisy-curve valley, 0.799 / 0.938 with both at
``w = 0.25`` (0.5: 0.799 / 0.931, 0.75: 0.710 / 0.916, 0 with the switch: 0.780 /
0.934); of the careful call
(validation turn) 0.616 / 0.930, then 0.799 / 0.967 at ``w = 0.25`` with the switch
(0.5: 0.799 / 0.958). ``valley_weight=0`` gives the rule's own reading.

**The ninth batch: 0.35, and valley or slide on a noisy curve.** The seventh and eighth
(held-out) batches put fastai's ``slide`` ahead of the default call on optimizers the
development half lacked, so a ninth batch of eight development problems (AdaBelief,
RMSProp, NAdam, Adamax, Adagrad, a cosine momentum transformer) was added and the two
choices re-made on the 25 development problems (interpolated, default call / careful
call, worst / geometric mean). On a noisy RMSProp GRU the valley fallback read 4.6e-5
where the best rate is 0.018 (quality 0.01): ``valley``'s decreasing run can start in the
flat noisy part. As the noisy-curve reading, ``valley`` gave 0.011 / 0.778 (default),
the fall reading 0.000 / 0.772, ``slide`` 0.760 / 0.932, the geometric mean of the two
0.633 / 0.916 and **the larger of the two 0.760 / 0.933** (the careful call unchanged at
0.677 / 0.947). With that fallback, weights 0.25, 0.35, 0.4, 0.5, 0.6, 0.75 gave 0.760 /
0.933, **0.768 / 0.936**, 0.774 / 0.935, 0.787 / 0.934, 0.771 / 0.933, 0.710 / 0.929
(default) and 0.677 / 0.947, **0.799 / 0.962**, 0.799 / 0.965, 0.799 / 0.962, 0.799 /
0.957, 0.695 / 0.945 (careful): a flat optimum from 0.35 to 0.5; 0.35 is its low edge,
nearest the weight chosen before. Both were taken under a rule fixed before the tenth
(held-out) batch ran: only if neither lowers the held-out half's worst or geometric mean
by more than 0.005. On the 45 held-out problems (interpolated) the fallback alone moved
the default call 0.316 / 0.929 -> 0.316 / 0.927 and the careful call 0.408 / 0.941 ->
0.408 / 0.943; with 0.35 as well, 0.386 / 0.938 and 0.497 / 0.955.

**fall for an optimizer that steps like SGD: times 4.** The range test measures how the
optimizer's step grows with the gradient (``settings["update_scaling"]``,
``lrjax.finder.update_scaling``). Where it grows in proportion (SGD, momentum, Nesterov,
SGDW), each curve's blended reading is multiplied by ``sgd_factor`` (default
``SGD_FACTOR``, 4; at most ``max_lr``; on a log-spaced ramp). Why: an SGD step is
``lr x gradient``, and the gradient shrinks as the loss falls, so a constant-rate training
keeps moving at rates well above where a 100-step ramp's loss falls fastest; its best rate
sits toward the stability edge. An adaptive step (Adam) is about ``lr`` whatever the
gradient, and its reading needs no correction. On the finder benchmark's development half
the SGD-family constant-rate problems' best rates lay 1.3-35x above the careful reading,
the Adam ones 0.7-2.4x (one GRU's 20x, on a plateau that scores 0.95 from 0.2x to 114x).
Chosen there (14 problems, qualities interpolated on 4-seed grids, worst / geometric
mean, the factor on readable and noisy curves alike): factor 1, 2, 3,
4, 5, 6, 8, 10, 12 give 0.799 / 0.938, 0.839 / 0.952, 0.856 / 0.960, 0.856 / 0.964,
0.856 / 0.966, 0.854 / 0.968, 0.856 / 0.972, 0.856 / 0.974, 0.856 / 0.977 for the default
call and 0.799 / 0.967, 0.839 / 0.977, 0.869 / 0.981, **0.875 / 0.982**, 0.863 / 0.981,
0.854 / 0.981, 0.875 / 0.981, 0.896 / 0.982, 0.917 / 0.982 for the careful call, which
collapses past 13 (a plain-SGD least-squares problem diverges: 15 gives 0.707, 20 0.325).
4 is the smallest factor at the careful call's plateau, a factor 3 below that cliff.
Applied to readable curves only, 4 gave 0.799 / 0.958 and 0.799 / 0.976: the noisy
friedman3 regression's valley fallback reads as low as its fall (that extension was made
after the fourth batch below had run in the readable-only form).
Reported after on the held-out half (interpolated): default 0.707 / 0.948 -> 0.921 /
0.978, careful 0.858 / 0.969 -> 0.896 / 0.977; on a fourth batch of 4 held-out SGD-family
problems written before any of it ran (a CNN, an MLP with SGDW, a transformer, a GRU):
default 0.833 / 0.952 -> 0.964 / 0.986, careful 0.883 / 0.965 -> 0.992 / 0.996.
``peak_lr()`` is never below the constant rate this gives (``RangeTestResult.peak_lr``).
The factor also multiplies the noisy-curve fallback (the larger of ``valley`` and
``slide``), which the noise factor below does not. Dropping it there was tested on an
eighteenth batch (4 development, 4 held-out SGD-family problems with noisy curves, criterion
fixed before it ran) and failed on the development half (41 problems, interpolated: the
default call's geometric mean 0.8400 -> 0.8444, under the 0.005 bar): without it a noisy
momentum classifier that the factor reads past its cliff rose 0.78 -> 1.00, but a noisy
1000-step momentum regression, whose best rate sits near its stability edge, fell 0.875 ->
0.799.

**fall for an adaptive optimizer whose step shrinks in noise: times** ``r ** -0.5``. The
range test also measures, for an optimizer that does not step like SGD, how much of a
weak mean gradient its step keeps once the gradient is mostly noise, against a steady
gradient (``settings["noise_response"]``, :func:`lrjax.finder.noise_response`): Adam 1,
Adamax about 0.37 (it divides by the largest recent gradient), AdaBelief about 0.22 (by
the deviation from the mean, small on the ramp's steady early gradients), Lion about 6.
A range test's ramp is short and its gradients mostly signal; a training spends most of
its steps in the noise, where a step that keeps less of the signal moves less, so its
best rate sits above the ramp's reading. Where ``r < 1`` each readable curve's reading
(not a noisy curve's valley-or-slide fallback, already the larger of two readings) is
multiplied by ``r ** -noise_exponent`` (default ``NOISE_EXPONENT``, 0.5: Adamax x1.65,
AdaBelief x2.1; at most ``max_lr``; on a log-spaced ramp; with ``peak_lr()``). Chosen on
the finder benchmark's development half after a twelfth batch (Adamax, AdaBelief, Lion)
was added to it: 31 problems, interpolated, worst / geometric mean of the default and the
careful call for exponents 0, 0.25, 0.5, 0.75, 1, 1.25: 0.768 / 0.949, 0.768 / 0.955,
**0.768 / 0.959**, 0.768 / 0.962, 0.768 / 0.963, 0.768 / 0.964 and 0.843 / 0.969, 0.843 /
0.970, **0.843 / 0.970**, 0.843 / 0.970, 0.843 / 0.969, 0.556 / 0.950 (a CNN's AdaBelief
reading past its cliff): 0.5 is the middle of the careful call's plateau, a factor 3 in
rate below that cliff for AdaBelief. Lowering the reading for ``r > 1`` (Lion) as well
cost the careful call (0.25: worst 0.592, 0.5: 0.305, a Lion MLP whose careful reading is
already at the low edge of its plateau), so it is not done.

References:
    fastai ``lr_find``; torch-lr-finder ``LRFinder.plot``; see ``lrjax.finder.suggest.rules``.
    Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017 (the range
    test for SGD; its rates read toward where the loss stops falling).
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from lrjax._engine.checks import check_static
from lrjax.finder.optimizer_probe import GRADIENT_PROPORTIONAL
from lrjax.finder.suggest.rules import _READERS, SUGGESTERS, _minimum, _slide_reader
from lrjax.finder.suggest.curve import (
    Reading,
    _fallback,
    _finite_length,
    _read,
    recorded_curve,
    unreadable,
)
from lrjax.finder.suggest.readability_check import (
    Readability,
    UnreadableCurveWarning,
    noisy_message,
    readability,
)
from lrjax.finder.suggest.fall_rule import CEILING_FRACTION, _log_grid, _on_grid, read_fall
from lrjax.finder.suggest.turn_rule import read_turn


_PEER_OPTIONS = ("skip_start", "skip_end")
#: The options each rule takes through ``RangeTestResult.suggest()`` (keyword-only).
RULE_OPTIONS: dict[str, tuple[str, ...]] = {
    "fall": ("fraction", "half_width", "train_steps", "divisor", "tolerance", "valley_weight",
             "sgd_factor", "noise_exponent"),
    "valley": _PEER_OPTIONS,
    "slide": (*_PEER_OPTIONS, "lr_diff", "thresh", "adjust_value"),
    "steep": _PEER_OPTIONS,
    "steepest": _PEER_OPTIONS,
    "minimum": _PEER_OPTIONS,
}
#: The weight of fastai's ``valley`` in ``fall``'s reading (a weighted geometric mean).
VALLEY_WEIGHT = 0.35
#: ``fall``'s constant rate for an optimizer whose step grows with the gradient, over the
#: reading (see the module docstring: chosen on the finder benchmark's development half).
SGD_FACTOR = 4.0
#: ``fall``'s reading for an adaptive optimizer whose step shrinks more than Adam's once the
#: gradient is mostly noise (``settings["noise_response"]`` ``r < 1``) is multiplied by
#: ``r ** -NOISE_EXPONENT`` (see the module docstring: chosen on the finder benchmark's
#: development half).
NOISE_EXPONENT = 0.5
# The fewest finite points whose noise can be measured (a residual needs 2 + 2 neighbours).
_MIN_NOISE_POINTS = 5


def rule_options(method: str, options: dict[str, Any], unknown: dict[str, Any]) -> dict[str, Any]:
    """The options given (not ``None``) to ``method``, checked.

    Raises:
        ValueError: an unknown ``method``, or an option ``method`` does not take (naming
            the rule and what it takes).
        TypeError: an unknown keyword (naming it and listing the accepted ones).
    """
    if unknown:
        accepted = ["per_curve", *dict.fromkeys(o for opts in RULE_OPTIONS.values() for o in opts)]
        raise TypeError(f"suggest() got unexpected keyword argument(s) {sorted(unknown)}; it "
                        f"accepts {', '.join(accepted)}.")
    if method not in SUGGESTERS:
        raise ValueError(f"method must be one of {tuple(SUGGESTERS)}, got {method!r}.")
    given = {name: value for name, value in options.items() if value is not None}
    foreign = sorted(set(given) - set(RULE_OPTIONS[method]))
    if foreign:
        raise ValueError(f"the {method!r} rule takes no {', '.join(f'{n}=' for n in foreign)}; "
                         f"it takes {', '.join(f'{n}=' for n in RULE_OPTIONS[method])}.")
    return given


def mean_curve(rows: np.ndarray) -> np.ndarray:
    """The mean of the curves (rows, NaN from divergence on) over the steps all of them
    recorded; curves with fewer than 5 finite points (nothing to measure) are left out,
    and with none left, the first row itself."""
    rows = np.atleast_2d(np.asarray(rows, np.float64))
    lengths = np.asarray([_finite_length(row) for row in rows])
    live = lengths >= _MIN_NOISE_POINTS
    if not live.any():
        return rows[0]
    return rows[live, : int(lengths[live].min())].mean(axis=0)


def result_readability(rows: np.ndarray, num_steps: int) -> Readability:
    """:func:`~lrjax.finder.suggest.readability_check.readability` of the :func:`mean_curve` of ``rows``."""
    return readability(mean_curve(rows), num_steps=num_steps)


def log_spaced(lrs: ArrayLike, rows: np.ndarray) -> np.ndarray:
    """The curves as a log-spaced ramp with the same ends and length would record them.

    Readability reads the first tenth of the steps as the start and smooths over 5% of
    them, which assumes a log-spaced ramp: on a linear one the first tenth already covers
    rates up to a tenth of the maximum (the whole fall), and a curve that clearly falls
    would look flat. A log-spaced ramp comes back unchanged.
    """
    lrs = np.asarray(lrs, np.float64)
    grid = _log_grid(lrs)
    if grid is None:
        return rows
    rows = np.asarray(rows, np.float64)
    flat = rows.reshape(-1, rows.shape[-1])
    return np.stack([_on_grid(grid, lrs, row) for row in flat]).reshape(rows.shape)


def too_noisy(rows: np.ndarray, num_steps: int) -> Readability | None:
    """The readability of the curves' mean when it is too noisy to read, else ``None``.

    ``None`` also for a mean curve that gives nothing to measure or that the rules reject
    on their own (flat, never decreasing: they warn and fall back to ``lrs[0]`` already).
    """
    curve = mean_curve(rows)
    finite = curve[: _finite_length(curve)]
    reading = readability(curve, num_steps=num_steps)
    if reading.readable or np.isnan(reading.noise) or unreadable(finite) is not None:
        return None
    return reading


def _warn_noisy(reading: Readability, curve: str, then: str, stacklevel: int = 4) -> None:
    """Warns at the caller of ``RangeTestResult.suggest`` (4 frames up from here)."""
    message = noisy_message(reading, f"the {curve} curve", then)
    warnings.warn(UnreadableCurveWarning(message, reading, curve), stacklevel=stacklevel)


def _peer_reading(method: str, lrs: np.ndarray, row: np.ndarray, diverged: int,
                  num_steps: int, kwargs: dict[str, Any]) -> Reading:
    """One recorded curve through a peer rule, with the public function's validation."""
    options = dict(kwargs)
    skip = {name: options.pop(name, default) for name, default in
            (("skip_start", 10 if method == "steepest" else None), ("skip_end", None))}
    if method == "slide":
        read = _slide_reader(**options)
    elif options:
        raise TypeError(f"{method} got unexpected arguments {sorted(options)}.")
    elif method == "minimum":
        read = functools.partial(_minimum, floor=float(lrs[0]))
    else:
        read = _READERS[method]
    x, y = recorded_curve(lrs, row, diverged)
    return _read(read, x, y, skip["skip_start"], skip["skip_end"], num_steps)


def read_result(result: Any, method: str, **kwargs: Any) -> list[Reading]:
    """Every curve of a ``RangeTestResult`` through ``method``: one Reading per curve.

    Peer rules read each curve's smoothed losses as the peer records them
    (:func:`recorded_curve`). ``fall`` reads the raw validation curve by its turn when
    the result has one (``divisor=``, ``tolerance=``; ``train_steps=`` is not applied to
    a turn; with ``fraction=`` by that share of its fall instead, which ``train_steps=``
    raises as it does a training curve's), falling back to the training curve where a
    validation curve is unreadable, and the raw training curve by its fall otherwise, cut
    before divergence.
    """
    if method not in SUGGESTERS:
        raise ValueError(f"method must be one of {tuple(SUGGESTERS)}, got {method!r}.")
    lrs = np.asarray(result.lrs, np.float64)
    steps = result.num_steps
    diverged = result._diverged_array().reshape(-1)
    train = result._before_divergence(result.losses)
    if method != "fall":
        rows = np.asarray(result.smoothed_losses, np.float64).reshape(-1, steps)
        readings = [_peer_reading(method, lrs, row, int(d), steps, kwargs)
                    for row, d in zip(rows, diverged)]
        _check_training_noise(log_spaced(lrs, train), steps)
        return readings
    weight = _valley_weight(kwargs.pop("valley_weight", None))
    factor = sgd_factor_of(result, kwargs.pop("sgd_factor", None))
    noise_factor = noise_factor_of(result, kwargs.pop("noise_exponent", None))
    # fastai's valley on each curve's EMA (as the peer reads it): blended into every
    # reading; where the training curves are too noisy, the larger of it and slide is the
    # reading itself.
    emas = np.asarray(result.smoothed_losses, np.float64).reshape(-1, steps)
    valleys = [_ema_reading("valley", lrs, row, int(d), steps) for row, d in zip(emas, diverged)]
    noisy_train = too_noisy(log_spaced(lrs, train), steps)
    if noisy_train is not None:
        # A curve too noisy to read is read by the larger of valley and slide: valley's
        # decreasing run can start in the flat noisy part and read far too low there.
        valleys = [larger(valley, _ema_reading("slide", lrs, row, int(d), steps))
                   for valley, row, d in zip(valleys, emas, diverged)]
    else:
        # Not on that fallback: already the larger of two readings, times 2.1 it put a
        # noisy AdaBelief LSTM past its cliff (the finder benchmark's thirteenth batch).
        factor *= noise_factor
    val = None if result.val_losses is None else result._before_divergence(result.val_losses)
    noisy_val = None if val is None else too_noisy(log_spaced(lrs, val), steps)
    if noisy_val is not None:  # a noise bump is no turn: read the training curve instead
        _warn_noisy(noisy_val, "validation", "fall reads the training curve instead")
        val = None
    if val is not None and kwargs.get("train_steps") is not None and kwargs.get("fraction") is None:
        # No hint on a validation turn (lrjax.finder.suggest.turn_rule's docstring says why).
        kwargs = {name: value for name, value in kwargs.items() if name != "train_steps"}
    if kwargs.get("train_steps") is not None and noisy_train is not None:
        # The hint reads the training curve's minimum: on a curve whose fall does not
        # stand out of its noise that minimum is a noise dip (when the hint was a cap, a
        # GRU's was 35x below its fall reading, quality 0.00), so it is not applied there.
        kwargs = {name: value for name, value in kwargs.items() if name != "train_steps"}
    share = kwargs.pop("fraction", None)
    turn_options = {name: kwargs.pop(name) for name in ("divisor", "tolerance") if name in kwargs}
    if turn_options and (val is None or share is not None):
        raise TypeError(f"fall got {sorted(turn_options)}, which apply only to a validation "
                        "curve read by its turn (a result with val_losses, no fraction=).")
    readings, unread = [], []
    for index, row in enumerate(train):
        reading = None
        if val is not None and share is None:
            reading = _turn_reading(lrs, val[index], row, steps, kwargs, turn_options)
        elif val is not None:  # fraction= asks for a share of the validation fall
            reading = read_fall(lrs, val[index], share, num_steps=steps, train_losses=row,
                                **kwargs)
        if reading is not None and reading.failed is not None:
            unread.append(reading.failed)
        if reading is None or reading.failed is not None:
            reading = read_fall(lrs, row, share, num_steps=steps, **kwargs)
        reading = _with_valley(reading, valleys[index], weight, noisy_train is not None)
        if reading.failed is None and factor != 1.0:
            reading = Reading(min(reading.lr * factor, float(lrs[-1])), None)
        readings.append(reading)
    if unread:  # e.g. val_losses all NaN (an eval_fn that fails): never silently
        warnings.warn(
            f"fall: {len(unread)} of {len(readings)} validation curves could not be read "
            f"({unread[0]}); the training curve's fall is read instead. Check eval_fn and "
            "val_data.", UserWarning, stacklevel=4)
    if noisy_train is not None and any(v.failed is None for v in valleys):
        _warn_noisy(noisy_train, "training", "fall reads the larger of fastai's valley and "
                    "slide of its EMA-smoothed curve instead (the EMA averages about 50 steps "
                    "of noise)")
    elif val is None:
        _check_training_noise(log_spaced(lrs, train), steps)
    return readings


def _ema_reading(method: str, lrs: np.ndarray, row: np.ndarray, diverged: int,
                 steps: int) -> Reading:
    """fastai's ``valley`` or ``slide`` of one EMA curve, or an unread Reading on a ramp
    that is not log-spaced.

    fastai ramps exponentially, and the EMA it reads trails the loss by about 49 steps at
    ``smoothing=0.98``: on a log-spaced ramp that is a fixed factor in rate, on a linear
    ramp (``mode="linear"``) it is most of the range (a least-squares loss that falls at
    rates 0.1-0.5 of a 10-wide ramp reads past its bottom), so there ``fall`` is not
    blended and keeps its own reading.
    """
    if _log_grid(lrs) is not None:
        return Reading(float(lrs[0]), "the ramp is not log-spaced")
    return _peer_reading(method, lrs, row, diverged, steps, {})


def larger(first: Reading, second: Reading) -> Reading:
    """The larger rate of two readings that read (either one if only it reads; ``first``
    if neither does)."""
    read = [reading for reading in (first, second) if reading.failed is None]
    return max(read, key=lambda reading: reading.lr) if read else first


def _valley_weight(value: float | None) -> float:
    return VALLEY_WEIGHT if value is None else check_static("valley_weight", value, low=0.0,
                                                              high=1.0)


def sgd_factor_of(result: Any, value: float | None = None) -> float:
    """The factor on ``fall``'s readings: ``sgd_factor`` (default ``SGD_FACTOR``) where the
    range test measured an optimizer that steps like SGD on a log-spaced ramp, else 1."""
    lrs = np.asarray(result.lrs, np.float64)
    factor = SGD_FACTOR if value is None else check_static("sgd_factor", value, low=0.0,
                                                             low_open=True)
    scaling = result.settings.get("update_scaling") if result.settings else None
    if scaling is None or not scaling > GRADIENT_PROPORTIONAL or _log_grid(lrs) is not None:
        return 1.0
    return factor


def noise_factor_of(result: Any, exponent: float | None = None) -> float:
    """The factor on ``fall``'s readings for an adaptive optimizer: ``r ** -exponent`` where
    the range test measured its noise response ``r = settings["noise_response"] < 1``
    (:func:`lrjax.finder.noise_response`; Adamax about 0.37: x1.65, AdaBelief about 0.22:
    x2.1 at the default ``NOISE_EXPONENT`` 0.5; Adam measures about 0.99, x1.004), else
    1: for an optimizer that steps like SGD (:func:`sgd_factor_of` applies), one whose step
    keeps at least as much of the signal (``r >= 1``: Lion, LAMB), a linear ramp, or a
    result without the setting. ``read_result`` applies it to readable training curves
    only."""
    lrs = np.asarray(result.lrs, np.float64)
    power = NOISE_EXPONENT if exponent is None else check_static("noise_exponent", exponent,
                                                                   low=0.0)
    settings = result.settings or {}
    scaling, response = settings.get("update_scaling"), settings.get("noise_response")
    if (scaling is None or scaling > GRADIENT_PROPORTIONAL or response is None
            or not 0 < response < 1 or _log_grid(lrs) is not None):
        return 1.0
    return float(response) ** -power


def _with_valley(reading: Reading, valley: Reading, weight: float, noisy: bool) -> Reading:
    """``reading`` blended with the curve's ``valley``: ``lr**(1 - w) * valley**w``.

    Where the training curves are too noisy to read, ``valley`` itself (there the caller
    passes the larger of the curve's valley and slide readings, on an EMA that averages the
    noise the fall's 5% smoother leaves; with ``weight`` 0 too). A curve the valley cannot
    read keeps ``reading``; one ``fall`` cannot read stays unread unless the curve is noisy
    and the valley reads it.
    """
    if valley.failed is not None:
        return reading
    if noisy:
        return Reading(valley.lr, None)
    if reading.failed is not None or weight == 0:
        return reading
    return Reading(float(np.exp((1 - weight) * np.log(reading.lr) + weight * np.log(valley.lr))),
                   None)


# The peak of a schedule read off a training curve's fall: twice the constant-rate reading.
# Chosen on the finder benchmark's development half (3 schedule problems), re-checked with
# its 4-seed grids and the 0.3 share (interpolated on the grid: x2 worst 0.982, geometric
# mean 0.993; x1 0.881 / 0.950; x1.5 0.957 / 0.983; x2.5 0.967 / 0.986; x3 0.859 / 0.946;
# x4 0.521 / 0.792), then reported on the held-out half (x2: 0.964 / 0.982).
PEAK_FACTOR = 2.0


def reads_readable_training(result: Any) -> bool:
    """Whether ``fall``'s training curves are readable (not the valley-or-slide fallback),
    where the noise factor (:func:`noise_factor_of`) applies."""
    train = log_spaced(result.lrs, result._before_divergence(result.losses))
    return too_noisy(train, result.num_steps) is None


def reads_validation(result: Any) -> bool:
    """Whether ``fall`` reads this result's validation curve (present and readable)."""
    if result.val_losses is None:
        return False
    val = log_spaced(result.lrs, result._before_divergence(result.val_losses))
    return too_noisy(val, result.num_steps) is None


def _check_training_noise(train: np.ndarray, steps: int) -> None:
    """Warns when the training curves the readings came from are too noisy to read
    (also when a rule could not read them at all: the warning says what would help)."""
    noisy = too_noisy(train, steps)
    if noisy is not None:
        _warn_noisy(noisy, "training", "the suggestion is the rule's reading of it anyway, "
                    "which may sit on a noise dip", stacklevel=5)


def _turn_reading(lrs: np.ndarray, val: np.ndarray, train: np.ndarray, steps: int,
                  kwargs: dict[str, Any], options: dict[str, Any]) -> Reading:
    """A validation curve's ``turn`` reading, capped by what ``fall`` reads at three
    quarters of the validation fall (the stability ceiling; ``read_result`` never passes
    ``train_steps=`` to a turn)."""
    reading = read_turn(lrs, val, num_steps=steps, **options)
    if reading.failed is not None:
        return reading
    ceiling = read_fall(lrs, val, CEILING_FRACTION, num_steps=steps, train_losses=train, **kwargs)
    return reading if ceiling.failed is not None else Reading(min(reading.lr, ceiling.lr), None)


def combine_readings(readings: list[Reading], lrs: ArrayLike, method: str) -> float:
    """The curves' vote: the lower median of the readable curves' rates.

    A curve a rule cannot read (diverged at once, flat, never falls) does not vote; a
    warning says how many did not. The lower median is a rate one curve suggested (the
    plain median of an even count averages two). No readable curve: the warned fallback
    ``lrs[0]``.
    """
    good = np.sort([r.lr for r in readings if r.failed is None])
    failed = [r.failed for r in readings if r.failed is not None]
    lrs = np.asarray(lrs, np.float64)
    if good.size == 0:
        _fallback(lrs, method, f"no curve is readable ({failed[0]})")
        return float(lrs[0])
    if failed:
        warnings.warn(f"{method}: {len(failed)} of {len(readings)} curves are unreadable "
                      f"({failed[0]}) and do not vote.", UserWarning, stacklevel=3)
    return float(good[(good.size - 1) // 2])
