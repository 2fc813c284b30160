"""Benchmark: lrjax.search against per-trial loops, and the quality of its samplers.

The problem (the one of ``lrjax search``): a 64-64-10 ReLU MLP on scikit-learn's digits,
300 steps of lrjax.adamw (b1 0.9) on a cosine decay of the peak learning rate, batch 64;
trials tune the peak learning rate (log-uniform 1e-4..1e-1) and the weight decay
(log-uniform 1e-6..1e-1); the objective is the held-out loss. Every way below trains the
same trials (the same hyperparameters and per-trial keys), so their metrics must agree.

Speed, for K = 16 and 64 trials (every time includes compilation, as a user pays it):
(a) recompiling loop, as Optuna's JAX example does: each trial closes its (Python float)
    hyperparameters over a freshly jitted training, so every trial compiles again;
(b) one compile, called sequentially: ``jit(train_fn)`` with the hyperparameters as
    traced arguments, compiled once and called once per trial;
(c) ``lrjax.search``: the K trials in one compiled program (``--batch-size``, default K),
    with its default ``vectorize="auto"`` (on a CPU the single-trial program called per
    trial, ``"loop"``; ``vmap`` on accelerators),
    and again with ``vectorize="vmap"`` (a vmapped batch of K trainings) whatever the device.
Each way gets a fresh ``train_fn`` (nothing cached from an earlier way), and each row runs in
a fresh process (JAX would otherwise reuse the first row's executables). Reported: the
seconds of each, ratios (a)/(c) and (b)/(c), and the median difference of the held-out
loss to (b) (they compute the same trials).

Quality: 32 trials of ``tpe`` and ``gp`` (where torch is installed), each in batches of 8
(the default of a vmapped search) and one at a time (the CPU default), ``quasirandom`` and
``random`` (search keys 0..``--quality-keys``-1, default 0..9) against the best of a dense grid (``--grid`` points per axis) on the same objective: the held-out
loss of the hyperparameters averaged over ``--objective-seeds`` trainings (default 16,
``make_train_fn(num_seeds=S)``), an estimate of their expected loss. One training's held-out
loss varies by about 25% from seed to seed near the optimum and is rugged in the
hyperparameters there (chaotic trainings: about 3.7% of point-to-point roughness around a
smooth fit, shrinking as 1/sqrt(S) to about 1% at 16 seeds), so a one-training grid's best
is partly the luckiest of 256 draws. With common random numbers every trial trains from the
same S seeds (init and data order), so trials differ by their hyperparameters alone.
``--objective-seeds 1`` is the single training from one fixed key this benchmark used before.
The grid runs ``grid**2 * S`` trainings (16 x 16 x 16: about a minute on a 2-core CPU).

Usage:
    python benchmarks/search.py [--trials 16 64] [--batch-size K] [--grid 16] [--json out.json]
    python benchmarks/search.py --skip-speed --objective-seeds 64 --quality-keys 5 --grid 24
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import lrjax
from lrjax.cli.search_command import digits_train_fn
from lrjax.tuning.space import space_to_spec

STEPS = 300
SPACE = {"lr": lrjax.log_uniform(1e-4, 1e-1), "weight_decay": lrjax.log_uniform(1e-6, 1e-1)}
OBJECTIVE = "val_loss"


def trial_points(num: int, key: int) -> list[dict]:
    """The trials lrjax.search draws for ``method="random"`` with this key."""
    from lrjax.tuning.batches import host_seed, root_key
    from lrjax.tuning.space import random_params

    return random_params(SPACE, num, host_seed(root_key(key)))


def recompiling_loop(points: list[dict], key: int) -> list[dict]:
    """(a) Each trial jits a new training closed over its concrete hyperparameters."""
    train_fn = digits_train_fn(STEPS)
    out = []
    for number, params in enumerate(points):
        train = _closed_over({k: float(v) for k, v in params.items()}, train_fn)
        metrics = train(lrjax.tuning.trial_key(key, number), train_fn.data)
        out.append({k: float(v) for k, v in metrics.items()})
    return out


def _closed_over(concrete: dict, train_fn: Any) -> Any:
    @jax.jit  # a new function object per trial, the values baked in: compiled again
    def train(trial_key: jax.Array, data: Any) -> Any:
        return train_fn.call_with_data(concrete, trial_key, data)

    return train


def one_compile_loop(points: list[dict], key: int) -> list[dict]:
    """(b) One jitted training, the hyperparameters traced arguments, called per trial."""
    train_fn = digits_train_fn(STEPS)
    train = jax.jit(train_fn.call_with_data)
    out = []
    for number, params in enumerate(points):
        hparams = {k: jnp.float32(v) for k, v in params.items()}
        metrics = train(hparams, lrjax.tuning.trial_key(key, number), train_fn.data)
        out.append({k: float(v) for k, v in metrics.items()})
    return out


def lrjax_search(num: int, key: int, batch_size: int | None, vectorize: str) -> list[dict]:
    """(c) lrjax.search, random method: the same points and keys as (a) and (b)."""
    result = lrjax.search(digits_train_fn(STEPS), SPACE, num_trials=num, batch_size=batch_size,
                          objective=OBJECTIVE, key=key, vectorize=vectorize)
    return [t["metrics"] for t in result.trials]


def timed(fn: Any, *args: Any) -> tuple[tuple[float, float], Any]:
    """``((wall seconds, CPU seconds of this process), fn's result)``.

    On a shared machine the wall time depends on the other jobs; the CPU time (all threads
    of this process, XLA's compiler included) is the work itself.
    """
    gc.collect()
    gc.disable()
    try:
        start, cpu = time.perf_counter(), time.process_time()
        out = fn(*args)
        return (time.perf_counter() - start, time.process_time() - cpu), out
    finally:
        gc.enable()


def median_difference(reference: list[dict], other: list[dict], name: str) -> float:
    """The median over trials of ``|other - reference|`` of metric ``name``.

    Trainings at a high learning rate are chaotic: float rounding that differs between a
    vmapped and a single program grows over 300 steps in those few trials, so the median
    (not the maximum) says whether the ways compute the same trials.
    """
    return float(np.median([abs(r[name] - o[name]) for r, o in zip(reference, other)]))


WAYS = ("a", "b", "c", "c_vmap")


def speed(num: int, batch_size: int | None, key: int = 0) -> dict[str, Any]:
    points = trial_points(num, key)
    runs = {"a": lambda: recompiling_loop(points, key),
            "b": lambda: one_compile_loop(points, key),
            "c": lambda: lrjax_search(num, key, batch_size, "auto"),
            "c_vmap": lambda: lrjax_search(num, key, batch_size, "vmap")}
    seconds, cpu, metrics = {}, {}, {}
    for name in WAYS:
        (seconds[name], cpu[name]), metrics[name] = timed(runs[name])
    return {
        "trials": num,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "a_over_c": seconds["a"] / seconds["c"],
        "b_over_c": seconds["b"] / seconds["c"],
        "b_over_c_vmap": seconds["b"] / seconds["c_vmap"],
        "cpu_a_over_c": cpu["a"] / cpu["c"],
        "cpu_b_over_c": cpu["b"] / cpu["c"],
        "cpu_b_over_c_vmap": cpu["b"] / cpu["c_vmap"],
        "median_val_loss_difference_vs_b": {
            k: median_difference(metrics["b"], metrics[k], OBJECTIVE) for k in WAYS},
    }


def seed_averaged_train_fn(num_seeds: int) -> Any:
    """The benchmark problem with each trial's metrics averaged over ``num_seeds`` trainings."""
    one = digits_train_fn(STEPS)
    return lrjax.make_train_fn(one.loss_fn, one.init_fn, one.optimizer_fn, one.data,
                               num_steps=STEPS, eval_fn=one.eval_fn, loss_window=one.loss_window,
                               num_seeds=num_seeds)


def quality(grid: int, keys: int, objective_seeds: int, space: dict,
            num: int = 32) -> dict[str, Any]:
    train_fn = seed_averaged_train_fn(objective_seeds)
    fixed = jax.random.key(0)  # split into the objective's seeds: the same for every trial

    def common_seeds(h: dict, key: jax.Array) -> Any:  # the objective depends on h alone
        return train_fn.call_with_data(h, fixed, train_fn.data)

    start = time.perf_counter()
    dense = lrjax.search(common_seeds, space, num_trials=grid * grid, method="grid",
                         objective=OBJECTIVE, batch_size=64)
    grid_seconds = time.perf_counter() - start
    values = np.sort([t["value"] for t in dense.completed])
    out: dict[str, Any] = {
        "space": space_to_spec(space), "objective_seeds": objective_seeds,
        "grid_points": grid * grid,
        "grid_seconds": grid_seconds, "grid_best": dense.best_value,
        "grid_best_params": dense.best_params,
        # How flat the landscape is at the optimum: the grid's next best points, relative.
        "grid_runners_up_gap": [float(v / values[0] - 1.0) for v in values[1:6]],
        "grid_points_within_1pct": int(np.sum(values <= 1.01 * values[0])),
    }
    start = time.perf_counter()
    methods = quality_methods(num)
    out["methods"] = {label: {"method": m, "batch_size": b} for label, (m, b) in methods.items()}
    for label, (method, batch_size) in methods.items():
        runs, method_start = [], time.perf_counter()
        for key in range(keys):
            found = lrjax.search(common_seeds, space, num_trials=num, method=method, key=key,
                                 objective=OBJECTIVE, batch_size=batch_size)
            runs.append({"best": found.best_value, "params": found.best_params,
                         "gap_vs_grid": found.best_value / dense.best_value - 1.0})
        out[label] = runs
        out["methods"][label]["seconds"] = time.perf_counter() - method_start
    out["search_seconds"] = time.perf_counter() - start
    return out


def quality_methods(num: int) -> dict[str, tuple[str, int]]:
    """label -> (method, batch_size) of the quality runs.

    The Bayesian methods run at both of lrjax.search's default batch sizes: 8 (a vmapped
    batch, constant liar for ``tpe``; Optuna's GPSampler scores its running trials) and 1
    (``vectorize="loop"``, the CPU default: told after every trial, as Optuna users run
    TPE), so the rows show what batching costs. ``gp`` runs where torch imports.
    """
    methods = {"tpe (batch 8)": ("tpe", 8), "tpe (batch 1)": ("tpe", 1)}
    try:
        import torch  # noqa: F401  (Optuna's GPSampler needs it)
        methods.update({"gp (batch 8)": ("gp", 8), "gp (batch 1)": ("gp", 1)})
    except ImportError:
        print("(torch is not installed: the gp rows are skipped)", file=sys.stderr)
    return {**methods, "quasirandom": ("quasirandom", num), "random": ("random", num)}


def speed_row_in_fresh_process(num: int, batch_size: int | None) -> dict[str, Any]:
    """:func:`speed` in a new Python process: no compiled program or JAX cache carries over
    from an earlier row (in one process, the second row's (b) and (c) reuse executables)."""
    command = [sys.executable, __file__, "--speed-row", str(num)]
    if batch_size is not None:
        command += ["--batch-size", str(batch_size)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--grid", type=int, default=16, help="dense grid points per axis")
    parser.add_argument("--quality-keys", type=int, default=10, help="search keys per method")
    parser.add_argument("--objective-seeds", type=int, default=16,
                        help="trainings averaged per trial in the quality objective")
    parser.add_argument("--wd-range", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                        help="the quality part's weight-decay range (default that of the speed "
                             "part, 1e-6 0.1)")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--speed-row", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.speed_row is not None:  # the child process of speed_row_in_fresh_process
        print(json.dumps(speed(args.speed_row, args.batch_size)))
        return
    print(f"jax {jax.__version__}, optax {optax.__version__}, {jax.devices()[0].platform} "
          f"({jax.device_count()} device(s)), {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"{STEPS} AdamW steps of the digits MLP per trial; seconds include compilation; "
          "each row in a fresh process\n")
    report: dict[str, Any] = {"speed": [], "quality": None}
    print(f"{'trials':>6} {'time':>5} {'(a) recompile':>14} {'(b) one compile':>16} "
          f"{'(c) lrjax':>10} {'(c) vmap':>9} {'a/c':>6} {'b/c':>5} {'b/c vmap':>8}")
    for num in [] if args.skip_speed else args.trials:
        row = speed_row_in_fresh_process(num, args.batch_size)
        report["speed"].append(row)
        for kind, prefix in (("seconds", ""), ("cpu_seconds", "cpu_")):
            s = row[kind]
            print(f"{num:>6} {'wall' if kind == 'seconds' else 'CPU':>5} {s['a']:>13.1f}s "
                  f"{s['b']:>15.1f}s {s['c']:>9.1f}s {s['c_vmap']:>8.1f}s "
                  f"{row[prefix + 'a_over_c']:>5.1f}x {row[prefix + 'b_over_c']:>4.2f}x "
                  f"{row[prefix + 'b_over_c_vmap']:>7.2f}x", flush=True)
        d = row["median_val_loss_difference_vs_b"]
        print(f"{'':>6} median |val_loss - (b)| over trials: (a) {d['a']:.1e}, (c) {d['c']:.1e}, "
              f"(c) vmap {d['c_vmap']:.1e}", flush=True)
    if not args.skip_quality:
        space = dict(SPACE)
        if args.wd_range is not None:
            space["weight_decay"] = lrjax.log_uniform(*args.wd_range)
        q = quality(args.grid, args.quality_keys, args.objective_seeds, space)
        report["quality"] = q
        print(f"\nquality: {OBJECTIVE} averaged over {q['objective_seeds']} trainings, every "
              f"trial from the same {q['objective_seeds']} seeds; dense grid of "
              f"{q['grid_points']} ({q['grid_seconds']:.0f} s): best {q['grid_best']:.4f} at "
              f"{q['grid_best_params']}; next best "
              + ", ".join(f"{100 * g:+.2f}%" for g in q["grid_runners_up_gap"])
              + f"; {q['grid_points_within_1pct']} grid point(s) within 1%")
        for label in q["methods"]:
            gaps = [100 * run["gap_vs_grid"] for run in q[label]]
            print(f"  32 trials of {label:<13}: best vs the grid, keys 0..{len(gaps) - 1}: "
                  + ", ".join(f"{g:+.2f}%" for g in gaps)
                  + f"; median {float(np.median(gaps)):+.2f}%, worst {max(gaps):+.2f}%, "
                  f"within 1% on {sum(g <= 1.0 for g in gaps)} of {len(gaps)} "
                  f"({q['methods'][label]['seconds']:.0f} s)")
        print(f"  ({q['search_seconds']:.0f} s for the searches)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(report, file, indent=1)


if __name__ == "__main__":
    main()
