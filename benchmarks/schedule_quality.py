"""Benchmark: which schedule, measured: constant, cosine, one-cycle, WSD and schedule-free.

On the decision-quality benchmark's problems (``benchmarks/finder_problems.py``, read
only), each problem keeps its own optimizer, model, data and training length
(``train_steps``), and is trained five ways:

* ``constant``: the optimizer at a constant rate;
* ``cosine``: ``lrjax.cosine_annealing(peak, T)`` (to 0, no warmup);
* ``one-cycle``: ``lrjax.one_cycle(peak, T)`` (PyTorch's defaults: 30% up, 25x / 1e4x);
* ``WSD``: ``lrjax.wsd(peak, T)``: no warmup, stable, the last 20% a ``1-sqrt`` cooldown
  to 0 (Hägele et al. 2024's recommendation);
* ``schedule-free``: the optimizer's schedule-free form at a constant rate
  (``optax.contrib.schedule_free_adamw`` for Adam and AdamW, with the problem's weight
  decay; ``schedule_free_sgd`` with ``b1=0.9`` for SGD and SGD with momentum), evaluated
  at its evaluation params (lrjax does that itself: the trainings run through
  ``lrjax.make_train_fn``).

**Truth.** Each way is trained at every rate of a log grid (``--grid`` points from 1e-5 to
10) from ``--seeds`` initialisations, all of one way in ONE compiled program
(``jit(vmap(vmap(train_fn)))`` over rates and seeds, ``lrjax.make_train_fn`` with
``shuffle=False``: the same batches in the same order for every way). The score of a rate
is the test loss averaged over the seeds. A problem's **best** ``L_best`` is the lowest
score of any way at any grid rate.

**Suggested rates.** One default range test per optimizer (``lrjax.range_test(loss_fn,
params, optimizer, data)``, 100 steps, 1e-7 to 10): ``suggest()`` is the constant rate,
``peak_lr()`` the peak of cosine, one-cycle and WSD; the schedule-free optimizer gets its
own range test and its ``suggest()``. Each suggested rate is trained like the grid.

**Quality** ``(L0 - L) / (L0 - L_best)``: the share of the problem's best reduction of the
test loss over the trivial predictor, 1 = the best any way reached on the grid, 0 = no
better than the prior (floored). The tables give it at the suggested rate and at each
way's own best grid rate (what that schedule can do when its rate is tuned), plus the
WSD check: ``peak_lr()`` over WSD's best grid rate.

Usage:
    nice -n 10 python benchmarks/schedule_quality.py [--grid 13] [--seeds 2]
        [--only NAME ...] [--json out.json] [--markdown]

By default the CNN problems are left out (XLA:CPU runs a convolution's gradient many
times slower inside a compiled loop), and so are the longest trainings, to keep the run
near 15 minutes on 2 shared CPU cores; ``--only`` picks any problems.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import lrjax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from finder_problems import Problem, make_problems  # noqa: E402

WAYS = ("constant", "cosine", "one-cycle", "WSD", "schedule-free")
GRID_LOW, GRID_HIGH = 1e-5, 10.0
DEFAULT_PROBLEMS = (
    "digits-mlp-adam", "cancer-logreg-sgd", "wine-mlp-momentum", "diabetes-mlp-adam-overfit",
    "synthetic-linreg-sgd", "sort-transformer-adam", "digits-bnmlp-dropout-onecycle",
    "iris-mlp-adamw", "digits-logreg-momentum", "cancer-mlp-adam", "diabetes-linreg-sgd",
    "adding-gru-adam",
)


def schedule_free_form(problem: Problem) -> Callable[..., optax.GradientTransformation]:
    """The problem's optimizer as a schedule-free one (a factory of ``learning_rate``)."""
    name = problem.optimizer_name
    if name.startswith(("Adam", "AdamW")):
        decay = float(name.split("wd")[1]) if "wd" in name else 0.0
        return functools.partial(optax.contrib.schedule_free_adamw, weight_decay=decay)
    # SGD and SGD momentum: schedule-free's interpolation replaces the momentum.
    return functools.partial(optax.contrib.schedule_free_sgd, b1=0.9)


def optimizer_for(problem: Problem, way: str, rate: Any) -> optax.GradientTransformation:
    total = problem.train_steps
    if way == "schedule-free":
        return schedule_free_form(problem)(learning_rate=rate)
    schedule = {"constant": lambda: rate,
                "cosine": lambda: lrjax.cosine_annealing(rate, total),
                "one-cycle": lambda: lrjax.one_cycle(rate, total),
                "WSD": lambda: lrjax.wsd(rate, total, decay_fraction=0.2, decay="1-sqrt")}[way]()
    return problem.optimizer(learning_rate=schedule)


def make_trainer(problem: Problem, way: str) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """``scores(rates (G,), keys (S,)) -> (G, S)`` test losses: one compiled program."""
    test = {"x": jnp.asarray(problem.x_test), "y": jnp.asarray(problem.y_test)}
    data = problem.batches(problem.train_steps, seed=1)
    if problem.stateful:
        kwargs = dict(has_state=True, stochastic=True,
                      eval_fn=lambda p, s: problem.eval_state(p, s, test))
        loss_fn = problem.loss_state
        init_fn = lambda key: (problem.init_fn(key), problem.init_state())  # noqa: E731
    else:
        kwargs = dict(eval_fn=lambda p: problem.loss_fn(p, test))
        loss_fn, init_fn = problem.loss_fn, problem.init_fn
    train_fn = lrjax.make_train_fn(
        loss_fn, init_fn, lambda h: optimizer_for(problem, way, h["lr"]), data,
        num_steps=problem.train_steps, shuffle=False, execution="compiled", **kwargs)

    def score(rate: jax.Array, key: jax.Array) -> jax.Array:
        loss = train_fn({"lr": rate}, key)["eval_loss"]
        return jnp.where(jnp.isfinite(loss), loss, jnp.inf)

    return jax.jit(jax.vmap(jax.vmap(score, (None, 0)), (0, None)))


def suggested_rates(problem: Problem) -> dict[str, float]:
    """The default range test's readings: constant, peaks, and schedule-free's own test."""
    data = problem.batches(100, seed=0)
    params = problem.init_fn(jax.random.key(0))
    extra: dict[str, Any] = {}
    loss_fn = problem.loss_fn
    if problem.stateful:
        extra, loss_fn = {"state": problem.init_state(), "stochastic": True}, problem.loss_state
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = lrjax.range_test(loss_fn, params, problem.optimizer, data, **extra)
        free = lrjax.range_test(loss_fn, params, schedule_free_form(problem), data, **extra)
        peak = base.peak_lr()
        return {"constant": base.suggest(), "cosine": peak, "one-cycle": peak, "WSD": peak,
                "schedule-free": free.suggest()}


def run_problem(problem: Problem, grid: int, seeds: int) -> dict[str, Any]:
    start = time.perf_counter()
    keys = jax.random.split(jax.random.key(42), seeds)
    rates = np.logspace(math.log10(GRID_LOW), math.log10(GRID_HIGH), grid).astype(np.float32)
    suggested = suggested_rates(problem)
    grid_scores, at_suggestion = {}, {}
    for way in WAYS:
        train = make_trainer(problem, way)
        # The suggestion rides in the same compiled program (padded to the grid's length).
        padded = np.concatenate([rates, [suggested[way]]]).astype(np.float32)
        scores = np.asarray(train(jnp.asarray(padded), keys)).mean(axis=1)
        grid_scores[way], at_suggestion[way] = scores[:grid], float(scores[grid])
    best = min(problem.best_score(s) for s in grid_scores.values())
    quality = lambda s: problem.quality(np.asarray(s), best)  # noqa: E731
    best_rate = {way: float(rates[int(np.argmin(np.where(np.isfinite(s), s, np.inf)))])
                 for way, s in grid_scores.items()}
    return {
        "meta": problem.metadata(), "grid_lrs": rates.tolist(), "best": best,
        "suggested": suggested, "best_rate": best_rate,
        "grid_scores": {w: s.tolist() for w, s in grid_scores.items()},
        "quality_at_suggestion": {w: float(quality([at_suggestion[w]])[0]) for w in WAYS},
        "quality_at_best_rate": {w: float(quality(grid_scores[w]).max()) for w in WAYS},
        "wsd_peak_over_best": suggested["WSD"] / best_rate["WSD"],
        "seconds": time.perf_counter() - start,
    }


def _geomean(values: list[float]) -> float:
    return float(np.exp(np.mean(np.log(np.maximum(values, 0.01)))))


def table(outcomes: list[dict], key: str) -> str:
    lines = ["| problem | steps | " + " | ".join(WAYS) + " |", "|---" * (len(WAYS) + 2) + "|"]
    for o in outcomes:
        row = o[key]
        top = max(row.values())
        cells = [f"**{row[w]:.3f}**" if row[w] == top else f"{row[w]:.3f}" for w in WAYS]
        lines.append(f"| {o['meta']['name']} ({o['meta']['optimizer']}) | {o['meta']['train_steps']} | "
                     + " | ".join(cells) + " |")
    lines.append("| **worst** | | " + " | ".join(f"{min(o[key][w] for o in outcomes):.3f}" for w in WAYS) + " |")
    lines.append("| **geometric mean** | | "
                 + " | ".join(f"{_geomean([o[key][w] for o in outcomes]):.3f}" for w in WAYS) + " |")
    wins = {w: sum(o[key][w] == max(o[key].values()) for o in outcomes) for w in WAYS}
    lines.append("| **best on** | | " + " | ".join(str(wins[w]) for w in WAYS) + " |")
    return "\n".join(lines)


def wsd_table(outcomes: list[dict]) -> str:
    lines = ["| problem | peak_lr() | WSD best grid rate | ratio | quality at peak_lr() | at best rate |",
             "|---|---|---|---|---|---|"]
    for o in outcomes:
        lines.append(f"| {o['meta']['name']} | {o['suggested']['WSD']:.3g} | {o['best_rate']['WSD']:.3g} | "
                     f"{o['wsd_peak_over_best']:.2f} | {o['quality_at_suggestion']['WSD']:.3f} | "
                     f"{o['quality_at_best_rate']['WSD']:.3f} |")
    return "\n".join(lines)


def machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{model}, {os.cpu_count()} cores; jax {jax.__version__}, optax {optax.__version__}, "
            f"Python {platform.python_version()}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grid", type=int, default=13)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--json", default=None)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    names = set(args.only) if args.only else set(DEFAULT_PROBLEMS)
    problems = [p for p in make_problems() if p.name in names]
    outcomes = []
    start = time.perf_counter()
    for problem in problems:
        outcome = run_problem(problem, args.grid, args.seeds)
        outcomes.append(outcome)
        q = outcome["quality_at_suggestion"]
        print(f"{problem.name:36s} {outcome['seconds']:6.1f}s  "
              + "  ".join(f"{w} {q[w]:.3f}" for w in WAYS), flush=True)
    total = time.perf_counter() - start
    report = (f"Machine: {machine()}. {len(outcomes)} problems, grid {args.grid} rates, "
              f"{args.seeds} seeds, {total / 60:.1f} min.\n\n"
              "Quality at the suggested rate (suggest() for constant and schedule-free, "
              "peak_lr() for the schedules):\n\n" + table(outcomes, "quality_at_suggestion")
              + "\n\nQuality at each way's best grid rate (tuned):\n\n"
              + table(outcomes, "quality_at_best_rate")
              + "\n\nWSD: the range test's peak suggestion against WSD's best grid rate:\n\n"
              + wsd_table(outcomes))
    print("\n" + report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(), "grid": args.grid, "seeds": args.seeds,
                       "minutes": total / 60, "outcomes": outcomes}, f, indent=1)


if __name__ == "__main__":
    main()
