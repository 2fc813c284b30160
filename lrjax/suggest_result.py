"""Rules applied to a whole ``RangeTestResult``: one reading per curve, then the vote.

Separate from ``suggest.py`` (rules on one curve) because it knows the result's layout:
which curve a rule reads (the peers: each curve's smoothed losses as the peer records
them; ``fall``: the raw validation curve when there is one, read by its turn
(``lrjax.suggest_turn``), else the raw training curve by its fall (``lrjax.suggest_fall``),
cut before divergence), and how several curves (seeds, sweep values) vote: curves a
rule cannot read do not vote, the rest give their lower median.

References:
    fastai ``lr_find``; torch-lr-finder ``LRFinder.plot``; see ``lrjax.suggest``.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from lrjax.suggest import (
    _READERS,
    SUGGESTERS,
    Reading,
    _fallback,
    _minimum,
    _read,
    _slide_reader,
    recorded_curve,
)
from lrjax.suggest_fall import CEILING_FRACTION, read_fall
from lrjax.suggest_turn import read_turn


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
    the result has one (``divisor=``, ``tolerance=``; with ``train_steps=`` capped by the
    time-matched rate of the training curve; with ``fraction=`` by that share of its fall
    instead), falling back to the training curve where a validation curve is
    unreadable, and the raw training curve by its fall otherwise, cut before divergence.
    """
    if method not in SUGGESTERS:
        raise ValueError(f"method must be one of {tuple(SUGGESTERS)}, got {method!r}.")
    lrs = np.asarray(result.lrs, np.float64)
    steps = result.num_steps
    diverged = result._diverged_array().reshape(-1)
    if method != "fall":
        rows = np.asarray(result.smoothed_losses, np.float64).reshape(-1, steps)
        return [_peer_reading(method, lrs, row, int(d), steps, kwargs)
                for row, d in zip(rows, diverged)]
    train = result._before_divergence(result.losses)
    val = None if result.val_losses is None else result._before_divergence(result.val_losses)
    share = kwargs.pop("fraction", None)
    turn_options = {name: kwargs.pop(name) for name in ("divisor", "tolerance") if name in kwargs}
    if turn_options and (val is None or share is not None):
        raise TypeError(f"fall got {sorted(turn_options)}, which apply only to a validation "
                        "curve read by its turn (a result with val_losses, no fraction=).")
    readings = []
    for index, row in enumerate(train):
        reading = None
        if val is not None and share is None:
            reading = _turn_reading(lrs, val[index], row, steps, kwargs, turn_options)
        elif val is not None:  # fraction= asks for a share of the validation fall
            reading = read_fall(lrs, val[index], share, num_steps=steps, train_losses=row,
                                **kwargs)
        if reading is None or reading.failed is not None:
            reading = read_fall(lrs, row, share, num_steps=steps, **kwargs)
        readings.append(reading)
    return readings


def _turn_reading(lrs: np.ndarray, val: np.ndarray, train: np.ndarray, steps: int,
                  kwargs: dict[str, Any], options: dict[str, Any]) -> Reading:
    """A validation curve's ``turn`` reading, capped by what ``fall`` reads at three
    quarters of the validation fall (the stability ceiling; with ``train_steps=`` also the
    time-matched rate of the training curve: the hint exactly as ``fall`` applies it)."""
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
