"""Benchmark: how far could a LEARNED correction of the careful suggestion go?

``benchmarks/finder_quality.py`` asks for the careful call's suggestion to score at least
0.95 of the grid's best on every problem. This script measures how much of that the
information a range test gives can carry, by fitting the most flexible rule we can
justify on the saved runs and scoring it on problems it was NOT fitted on:

    lr = suggestion x 10 ** f(features)

``f`` is learned by regression from the other problems, its target the log10 distance
from the careful suggestion to the middle (in log rate) of the problem's 0.95 window: the
run of grid rates around the best whose interpolated quality is at least 0.95 of it.
Features (24), all read off the saved range tests and the problem's description: the
other landmarks relative to the suggestion (the default call's suggestion, fastai's
``valley``, the careful call's training and validation minima, its divergence point, and
the careful call's ``valley``, ``slide``, ``minimum`` and torch-lr-finder's ``steepest``),
both calls' noise over fall, the careful call's three warnings (too noisy, unstable, no
learning), the schedule, whether the optimizer steps like SGD, classification or
regression, log10 of the training's length over the range test's, and the model family.

Models: no correction (the rule as shipped), the median shift (one constant), k nearest
neighbours (k = 5, standardised features) and a random forest (300 trees, 3 problems a
leaf). Two protocols:

* **leave-one-out** over every problem of both halves: each problem's correction is fitted
  on all the others (so on more data than any rule of the project was chosen on);
* **development to held-out**: fitted on the development half, scored on the held-out
  half (how the project's rules are chosen).

Qualities are interpolated on each saved grid (as ``finder_quality.py --rescore``). What
it shows: when even these, fitted on the other problems with the answers known, leave
many problems under 0.95, the miss is not a constant or a feature away; the range test's
curves do not pin the best rate that closely there.

Usage:
    python benchmarks/finder_ceiling.py [SAVED_RUN.json ...]

Without arguments it reads every ``benchmarks/finder_quality_*.json``. It needs
scikit-learn (the ``examples`` extra, which the benchmarks use for their data sets). On
the 2-core VM it takes about 7 minutes (re-reading every problem's rules is most of it).
"""

from __future__ import annotations

import glob
import json
import math
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from finder_problems import make_problems  # noqa: E402
from finder_quality import (  # noqa: E402
    DEFAULT_RULE,
    HINT_RULE,
    Outcome,
    geometric_mean,
    interpolated_quality,
    landmarks,
    rescore,
)

#: A problem is a hit when its quality is at least this (the issue's target).
TARGET = 0.95
#: The landmarks whose distance to the careful suggestion is a feature.
LANDMARKS = ("lrjax default", "fastai valley", "training minimum", "divergence",
             "validation minimum")
#: The careful call's peer readings whose distance to its suggestion is a feature.
PEERS = ("fastai valley", "fastai slide", "fastai minimum", "torch-lr-finder steepest")
SCHEDULES = ("constant", "one_cycle", "cosine")
FAMILIES = ("mlp", "cnn", "rnn", "transformer")


#: Each warning kind the careful call can carry, by a phrase of its saved message.
WARNING_PHRASES = {"too noisy": "too noisy", "unstable": "unstable",
                   "no learning": "constant predictor"}


def _warned(o: Outcome, kind: str) -> float:
    """Whether the careful call's suggestion carried that kind of warning."""
    return float(any(WARNING_PHRASES[kind] in text for text in o.warned["careful"][HINT_RULE]))


def features(o: Outcome) -> np.ndarray:
    """The 24 features of one problem (see the module docstring)."""
    base = math.log10(o.suggestions["careful"][HINT_RULE])
    marks = landmarks(o)
    out = [math.log10(marks.get(name, 10 ** base)) - base for name in LANDMARKS]
    out += [math.log10(max(o.suggestions["careful"][rule], 1e-12)) - base for rule in PEERS]
    out += [math.log10(min(float(o.noise[call]["ratio"]), 100.0) + 1e-3)
            for call in ("default", "careful")]
    out += [_warned(o, kind) for kind in WARNING_PHRASES]
    out += [float(o.meta["schedule"] == s) for s in SCHEDULES]
    out += [float(o.meta["optimizer"].startswith("SGD")),
            float(o.meta["kind"] == "classification"),
            math.log10(o.meta["train_steps"] / 100)]
    out += [float(o.meta.get("family", "mlp") == f) for f in FAMILIES]
    return np.asarray(out, np.float64)


def window_middle(grid_lrs: np.ndarray, grid_quality: np.ndarray, share: float = TARGET
                  ) -> float:
    """log10 of the middle of the run of rates around the grid's best whose interpolated
    quality is at least ``share`` of the best (on a 2000-point log grid)."""
    logs = np.log10(grid_lrs)
    fine = np.linspace(logs[0], logs[-1], 2000)
    quality = np.interp(fine, logs, grid_quality)
    best = int(np.argmax(quality))
    good = quality >= share * quality[best]
    low = best
    while low > 0 and good[low - 1]:
        low -= 1
    high = best
    while high < fine.size - 1 and good[high + 1]:
        high += 1
    return float((fine[low] + fine[high]) / 2)


def qualities(outcomes: list[Outcome], shifts: np.ndarray) -> np.ndarray:
    """Each problem's interpolated quality at its careful suggestion x 10 ** shift."""
    return np.asarray([interpolated_quality(o.grid_lrs, o.grid_quality,
                                            o.suggestions["careful"][HINT_RULE] * 10 ** s)
                       for o, s in zip(outcomes, shifts)])


def summary(outcomes: list[Outcome], scores: np.ndarray, halves: tuple[str, ...]) -> str:
    """``hits/n worst gmean`` per half."""
    parts = []
    for half in halves:
        mine = np.asarray([o.meta["half"] == half for o in outcomes])
        part = scores[mine]
        parts.append(f"{half} {int((part >= TARGET).sum())}/{part.size} at {TARGET}, worst "
                     f"{part.min():.3f}, geometric mean {geometric_mean(list(part)):.3f}")
    return "; ".join(parts)


def models() -> dict:
    """The learned corrections, as factories of fresh scikit-learn estimators."""
    try:
        from sklearn.ensemble import RandomForestRegressor
        from sklearn.neighbors import KNeighborsRegressor
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
    except ImportError as error:  # the benchmarks' data sets need it too
        raise ImportError("benchmarks/finder_ceiling.py needs scikit-learn: pip install "
                          "'lrjax[examples]'") from error
    return {
        "k nearest neighbours (5)": lambda: make_pipeline(StandardScaler(),
                                                          KNeighborsRegressor(5)),
        "random forest": lambda: RandomForestRegressor(300, min_samples_leaf=3,
                                                       random_state=0),
    }


def main(argv: list[str] | None = None) -> int:
    paths = (argv if argv is not None else sys.argv[1:]) or sorted(glob.glob(os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "finder_quality_*.json")))
    factories = models()
    start = time.perf_counter()
    problems = {p.name: p for p in make_problems()}
    outcomes = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the rules' own warnings: read, not reported here
        for path in paths:
            with open(path) as f:
                for blob in json.load(f)["problems"]:
                    outcomes.append(rescore(blob, problems.get(blob["meta"]["name"])))
    x = np.stack([features(o) for o in outcomes])
    y = np.asarray([window_middle(o.grid_lrs, o.grid_quality)
                    - math.log10(o.suggestions["careful"][HINT_RULE]) for o in outcomes])
    halves = ("dev", "heldout")
    dev = np.asarray([o.meta["half"] == "dev" for o in outcomes])
    print(f"{len(outcomes)} problems from {len(paths)} saved runs ({dev.sum()} development, "
          f"{(~dev).sum()} held-out), {x.shape[1]} features; re-read in "
          f"{time.perf_counter() - start:.0f} s; quality interpolated on each grid\n")
    print("careful suggestion x 10 ** f(features), scored on problems f was not fitted on:")
    def row(label: str, shifts: np.ndarray, which: tuple[str, ...] = halves) -> None:
        print(f"  {label:<50} {summary(outcomes, qualities(outcomes, shifts), which)}")

    row("as shipped (no correction)", np.zeros(len(y)))
    row("the window middle (the answer)", y)
    loo = {"median shift": np.asarray([np.median(np.delete(y, i)) for i in range(len(y))])}
    for name, make in factories.items():
        loo[name] = np.asarray([make().fit(np.delete(x, i, 0), np.delete(y, i)).predict(
            x[i:i + 1])[0] for i in range(len(y))])
    for name, shifts in loo.items():
        row(f"leave-one-out, {name}", shifts)
    for name, make in [("median shift", None), *factories.items()]:
        shifts = np.zeros(len(y))
        if make is None:
            shifts[~dev] = np.median(y[dev])
        else:
            shifts[~dev] = make().fit(x[dev], y[dev]).predict(x[~dev])
        row(f"development -> held-out, {name}", shifts, ("heldout",))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
