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

A second table asks the same of the issue's "no silent failure" line (every lrjax
suggestion below 0.8 warned), over both calls of every problem: how many calls would a
warning have to fire on to leave no miss unwarned? Candidates: the suggestion disagreeing
with fastai's ``valley`` or ``slide`` on the same curve by more than a number of decades,
and a random-forest classifier of "below 0.8" on the same 24 features (read relative to
that call's suggestion), fitted leaving the problem out, its threshold set after the fact
(an upper bound). Each row gives the silent misses left, the calls warned, and how many of
those scored at least 0.95 anyway (warnings that cry wolf).

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
from typing import Any, Callable

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
#: The landmarks whose distance to the call's suggestion is a feature ("other call": the
#: other call's lrjax suggestion).
LANDMARKS = ("other call", "fastai valley", "training minimum", "divergence",
             "validation minimum")
#: The call's peer readings whose distance to its suggestion is a feature.
PEERS = ("fastai valley", "fastai slide", "fastai minimum", "torch-lr-finder steepest")
SCHEDULES = ("constant", "one_cycle", "cosine")
FAMILIES = ("mlp", "cnn", "rnn", "transformer")


#: Each warning kind the careful call can carry, by a phrase of its saved message.
WARNING_PHRASES = {"too noisy": "too noisy", "unstable": "unstable",
                   "no learning": "constant predictor"}


#: The lrjax rule each call is scored on.
RULES = {"default": DEFAULT_RULE, "careful": HINT_RULE}


def _warned(o: Outcome, kind: str, call: str = "careful") -> float:
    """Whether the call's lrjax suggestion carried that kind of warning."""
    return float(any(WARNING_PHRASES[kind] in text for text in o.warned[call][RULES[call]]))


def features(o: Outcome, call: str = "careful") -> np.ndarray:
    """The 24 features of one problem's call (see the module docstring), relative to that
    call's lrjax suggestion. The landmarks are read off the careful call's curves for both
    calls, which gives the default call more than it has: fine for a ceiling."""
    base = math.log10(o.suggestions[call][RULES[call]])
    marks = landmarks(o)
    marks["other call"] = marks["lrjax careful" if call == "default" else "lrjax default"]
    out = [math.log10(marks.get(name, 10 ** base)) - base for name in LANDMARKS]
    out += [math.log10(max(o.suggestions[call][rule], 1e-12)) - base for rule in PEERS]
    out += [math.log10(min(float(o.noise[c]["ratio"]), 100.0) + 1e-3)
            for c in ("default", "careful")]
    out += [_warned(o, kind, call) for kind in WARNING_PHRASES]
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


#: The issue's no-silent-failure line: an lrjax suggestion below this must carry a warning.
SILENT = 0.8


def warning_row(quality: np.ndarray, warned: np.ndarray, extra: np.ndarray,
                half: np.ndarray) -> str:
    """What a warning that also fires on ``extra`` gives on the calls of ``half``:
    silent misses left, calls warned, and calls warned that scored >= TARGET anyway."""
    q, shipped, fire = quality[half], warned[half], (warned | extra)[half]
    return (f"{int(((q < SILENT) & ~fire).sum())} silent < {SILENT} left, "
            f"{int(fire.sum())}/{q.size} warned (+{int((fire & ~shipped).sum())}), "
            f"{int((fire & (q >= TARGET)).sum())} of them >= {TARGET}")


def warning_ceiling(outcomes: list[Outcome], make_classifier: Callable[[], Any]
                    ) -> list[str]:
    """How often a warning must fire to leave no lrjax suggestion below SILENT unwarned.

    Every problem gives two calls (default, careful). Two kinds of extra warning:
    the call's suggestion disagrees with fastai's ``valley`` or ``slide`` on the same
    curve by more than some decades; and a random forest that predicts "below SILENT"
    from the call's 24 features, fitted leaving the problem out (both its calls), its
    threshold set after the fact at the lowest probability of the silent misses (or the
    second or third lowest), so an upper bound for any warning read off these features.
    """
    calls = [(o, call) for o in outcomes for call in RULES]
    quality = np.asarray([o.qualities[c][RULES[c]] for o, c in calls])
    warned = np.asarray([bool(o.warned[c][RULES[c]]) for o, c in calls])
    dev = np.asarray([o.meta["half"] == "dev" for o, _ in calls])
    owner = np.asarray([i for i, _ in enumerate(outcomes) for _ in RULES])
    x = np.stack([features(o, c) for o, c in calls])
    miss = quality < SILENT
    lines = []

    def line(label: str, extra: np.ndarray,
             which: tuple[str, ...] = ("dev", "heldout")) -> None:
        parts = [f"{h} {warning_row(quality, warned, extra, dev if h == 'dev' else ~dev)}"
                 for h in which]
        lines.append(f"  {label:<46} " + "; ".join(parts))

    line("as shipped", np.zeros_like(warned))
    spread = np.asarray([max(abs(math.log10(o.suggestions[c][RULES[c]]
                                            / o.suggestions[c][peer]))
                             for peer in ("fastai valley", "fastai slide")) for o, c in calls])
    for decades in (0.5, 0.75, 1.0, 1.25):
        line(f"disagrees with valley/slide by > {decades} dec", spread > decades)
    chance = np.zeros(len(calls))
    for i in range(len(outcomes)):
        mine = owner == i
        chance[mine] = make_classifier().fit(x[~mine], miss[~mine]).predict_proba(x[mine])[:, 1]
    silent = miss & ~warned
    for left in (0, 1, 2):  # the threshold that leaves `left` silent misses over both halves
        threshold = np.sort(chance[silent])[left] if left < silent.sum() else np.inf
        line(f"forest (left out), leaving {left} over both halves", chance >= threshold)
    return lines


def models() -> dict:
    """The learned corrections, as factories of fresh scikit-learn estimators."""
    try:
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
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
        "classifier": lambda: RandomForestClassifier(300, min_samples_leaf=3,
                                                     class_weight="balanced", random_state=0),
    }


def main(argv: list[str] | None = None) -> int:
    paths = (argv if argv is not None else sys.argv[1:]) or sorted(glob.glob(os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "finder_quality_*.json")))
    factories = models()
    classifier = factories.pop("classifier")
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
    print("\nno silent failure: every lrjax suggestion below "
          f"{SILENT} warned (each problem's default and careful call):")
    print("\n".join(warning_ceiling(outcomes, classifier)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
