"""Benchmark: lrjax.range_test against a bare scan, a Python-loop finder and torch-lr-finder.

All four train the same problem: a 64-64-10 ReLU MLP on scikit-learn's digits with
Adam, batch 64, the learning rate growing exponentially from 1e-7 to 10. So that each
finder does the same work, the divergence threshold is set so high that none stops
early (a NaN would still stop lrjax and the Python loop; the report says if one did).

(a) ``lrjax.range_test``: one compiled program (a ``lax.while_loop`` over the steps that
    exits at divergence) with smoothing and divergence checks; the whole call, Python
    arguments in, host numpy result out.
(b) a bare ``jit(lax.scan)`` train loop with the same ramp, its losses fetched to the
    host: the floor for (a).
(b2) the same bare loop again, compiled separately: an A/A control whose ratio to (b)
    shows the run's timing noise floor.
(c) a finder written as a Python loop over a jitted step, reading the loss back every
    step (a finder must, to smooth it and test for divergence on the host).
(d) torch-lr-finder with an equivalent PyTorch MLP, when torch and torch_lr_finder import.

Runs are interleaved (a, b, c, d, then b, c, d, a, ...: the order rotates) so that load
changes on the machine hit every method alike; the table shows the median steady-state
time, the compile time of the JAX ones (first call minus the steady median), the ratio of
medians to (a) and, against (b), the median of the per-repeat ratios (a paired statistic:
the two runs of a repeat are adjacent in time, so load drifting on a shared machine
cancels). The targets are checked on the paired ratio where there is one.

``--overhead`` also times a whole ``range_test`` call on a 2-step, 3-parameter problem:
almost all of it is host work (validation, planning, dispatch, the result), the most a
cache of validated plans could save; it is printed beside (a)'s median.

Usage:
    python benchmarks/range_test.py [--steps 200] [--repeats 100] [--only a b b2] [--json out.json]
                                    [--overhead]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import optax

import lrjax
from lrjax.data.digits import digits_problem, load_digits_split

MIN_LR, MAX_LR = 1e-7, 10.0
HIDDEN, BATCH_SIZE = 64, 64
NO_DIVERGENCE = 1e12  # threshold no loss reaches: every finder runs all steps
SMOOTHING = 0.98


def exponential_ramp(num_steps: int) -> optax.Schedule:
    """``MIN_LR * (MAX_LR / MIN_LR) ** (t / (num_steps - 1))``: the range test's ramp."""
    return lambda count: MIN_LR * (MAX_LR / MIN_LR) ** (count / max(num_steps - 1, 1))


def lrjax_finder(num_steps: int) -> Callable[[], Any]:
    """(a) the library's range test."""
    loss_fn, params, data, _ = digits_problem(HIDDEN, BATCH_SIZE, num_steps)

    def run() -> Any:
        return lrjax.range_test(
            loss_fn,
            params,
            optax.adam,
            data,
            min_lr=MIN_LR,
            max_lr=MAX_LR,
            num_steps=num_steps,
            smoothing=SMOOTHING,
            diverge_threshold=NO_DIVERGENCE,
        )

    return run


def bare_scan(num_steps: int) -> Callable[[], np.ndarray]:
    """(b) the floor: value_and_grad + Adam under one lax.scan, losses returned, nothing else."""
    loss_fn, params, data, _ = digits_problem(HIDDEN, BATCH_SIZE, num_steps)
    optimizer = optax.adam(exponential_ramp(num_steps))

    @jax.jit
    def train(params: Any, data: Any) -> jax.Array:
        def step(carry: tuple[Any, Any], batch: Any) -> tuple[tuple[Any, Any], jax.Array]:
            params, state = carry
            loss, grads = jax.value_and_grad(loss_fn)(params, batch)
            updates, state = optimizer.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), loss

        _, losses = jax.lax.scan(step, (params, optimizer.init(params)), data)
        return losses

    return lambda: np.asarray(train(params, data))


def python_loop_finder(num_steps: int) -> Callable[[], np.ndarray]:
    """(c) a jitted step called from Python; the loss is read back each step to check divergence."""
    loss_fn, params, data, _ = digits_problem(HIDDEN, BATCH_SIZE, num_steps)
    optimizer = optax.adam(exponential_ramp(num_steps))
    batches = [jax.tree.map(lambda leaf, i=i: leaf[i], data) for i in range(num_steps)]

    @jax.jit
    def step(params: Any, state: Any, batch: Any) -> tuple[Any, Any, jax.Array]:
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    def run() -> np.ndarray:
        current, state = params, optimizer.init(params)
        smoothed, average, best = [], 0.0, np.inf
        for t, batch in enumerate(batches):
            current, state, loss = step(current, state, batch)
            value = float(loss)  # the host round trip every per-step finder makes
            average = SMOOTHING * average + (1 - SMOOTHING) * value
            smoothed.append(average / (1 - SMOOTHING ** (t + 1)))
            best = min(best, smoothed[-1])
            if not np.isfinite(value) or smoothed[-1] > NO_DIVERGENCE * best:
                break
        return np.asarray(smoothed)

    return run


def torch_finder(num_steps: int, threads: int) -> Callable[[], Any] | str:
    """(d) torch-lr-finder on the same data and architecture; a message if it cannot run.

    ``threads`` sets torch's intra-op threads. The default, 1, is both faster for a model
    this small and fair to the others: with more threads, torch's OpenMP workers keep
    spinning after each op and steal the cores from whatever runs next.
    """
    try:
        import torch
        from torch_lr_finder import LRFinder
    except Exception as error:  # noqa: BLE001  (any failure to import means: skip, saying why)
        return f"skipped: {type(error).__name__}: {error}"
    torch.set_num_threads(threads)
    split = load_digits_split()
    dataset = torch.utils.data.TensorDataset(
        torch.from_numpy(np.array(split.x_train)), torch.from_numpy(split.y_train.astype(np.int64))
    )
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=BATCH_SIZE, shuffle=True, drop_last=True
    )
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, 10)
    )

    def run() -> list[float]:
        optimizer = torch.optim.Adam(model.parameters(), lr=MIN_LR)
        finder = LRFinder(model, optimizer, torch.nn.CrossEntropyLoss())
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            finder.range_test(
                loader,
                end_lr=MAX_LR,
                num_iter=num_steps,
                step_mode="exp",
                smooth_f=1 - SMOOTHING,
                diverge_th=NO_DIVERGENCE,
            )
        finder.reset()  # restore the model and optimizer, as a user would
        return finder.history["loss"]

    return run


def timed(run: Callable[[], Any]) -> tuple[float, Any]:
    """Wall time of one run, with the garbage collector paused as ``timeit`` does (the
    Python loop and torch leave garbage whose collection would land on the next run)."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        output = run()
        jax.block_until_ready(output)
        return time.perf_counter() - start, output
    finally:
        gc.enable()


def curve_length(output: Any) -> int:
    losses = getattr(output, "losses", output)
    return int(np.sum(np.isfinite(np.asarray(losses, dtype=np.float64))))


def measure(runs: dict[str, Callable[[], Any]], repeats: int) -> dict[str, dict[str, float]]:
    """First-call time, then ``repeats`` interleaved steady-state times, per method."""
    first, steady, steps_done = {}, {name: [] for name in runs}, {}
    for name, run in runs.items():
        first[name], output = timed(run)
        steps_done[name] = curve_length(output)
    names = list(runs)
    for repeat in range(repeats):
        # Rotate the order so that no method always runs right after the same other one
        # (torch's run leaves caches cold for whatever comes next).
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            steady[name].append(timed(runs[name])[0])
    return {
        name: {
            "median_s": statistics.median(steady[name]),
            "min_s": min(steady[name]),
            "first_call_s": first[name],
            "compile_s": max(first[name] - statistics.median(steady[name]), 0.0),
            "steps_recorded": steps_done[name],
            "paired_ratio_to_b": (
                statistics.median(x / y for x, y in zip(steady[name], steady["b"], strict=True))
                if "b" in steady
                else None
            ),
        }
        for name in runs
    }


def machine(torch_threads: int | None) -> dict[str, str]:
    info = {
        "cpu": _cpu_name(),
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "optax": optax.__version__,
        "backend": jax.default_backend(),
    }
    if torch_threads is not None:  # only when (d) ran
        with contextlib.suppress(Exception):
            import torch

            info["torch"] = torch.__version__
            info["torch_threads"] = str(torch.get_num_threads())
    return info


def _cpu_name() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as file:
        for line in file:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


LABELS = {
    "a": "(a) lrjax.range_test",
    "b": "(b) bare jit(lax.scan) loop",
    "b2": "(b2) the bare loop again (A/A control)",
    "c": "(c) Python-loop finder (JAX)",
    "d": "(d) torch-lr-finder",
}
TARGETS = (("a", "b", "<=", 1.10), ("c", "a", ">=", 3.0), ("d", "a", ">=", 5.0))


def format_table(results: dict[str, dict[str, float]], steps: int) -> str:
    lines = [
        f"| method ({steps} steps) | median | best | compile | median / (a) | paired / (b) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, row in results.items():
        compile_text = f"{row['compile_s']:.2f} s" if key != "d" else "n/a"
        ratio = row["median_s"] / results["a"]["median_s"] if "a" in results else math.nan
        paired = row["paired_ratio_to_b"]
        paired_text = "" if paired is None else f"{paired:.3f}"
        lines.append(
            f"| {LABELS[key]} | {row['median_s'] * 1e3:.2f} ms | "
            f"{row['min_s'] * 1e3:.2f} ms | {compile_text} | {ratio:.2f}x | {paired_text} |"
        )
    return "\n".join(lines)


def check_targets(results: dict[str, dict[str, float]]) -> list[str]:
    """One line per target: 'time(x) / time(y) = r (target op bound): met|MISSED'."""
    lines = []
    for slow, fast, op, bound in TARGETS:
        if slow not in results or fast not in results:
            continue
        paired = results[slow]["paired_ratio_to_b"] if fast == "b" else None
        ratio = paired if paired is not None else results[slow]["median_s"] / results[fast]["median_s"]
        met = ratio <= bound if op == "<=" else ratio >= bound
        lines.append(
            f"{LABELS[slow]} / {LABELS[fast]} = {ratio:.3f}{' (paired)' if paired else ''} "
            f"(target {op} {bound}): "
            f"{'met' if met else 'MISSED'}"
        )
    return lines


def host_overhead(repeats: int) -> float:
    """Median seconds of a whole ``range_test`` call that does almost no device work."""
    x, y = np.ones((2, 4, 3), np.float32), np.ones((2, 4), np.float32)
    params = {"w": np.zeros(3, np.float32), "b": np.float32(0.0)}

    def loss_fn(p: Any, batch: Any) -> Any:
        return ((batch[0] @ p["w"] + p["b"] - batch[1]) ** 2).mean()

    def run() -> Any:
        return lrjax.range_test(loss_fn, params, optax.adam, (x, y), min_lr=1e-3, max_lr=1.0,
                                num_steps=2)

    for _ in range(10):
        run()
    # One gc pause around the loop, not timed()'s collect per run: a collection before a
    # 0.1 ms call leaves the caches cold and would triple its time.
    times = []
    gc.disable()
    try:
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
    finally:
        gc.enable()
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--torch-threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--only", nargs="*", choices=tuple(LABELS), help="methods (default: all)")
    parser.add_argument("--json", help="also write the measurements here")
    parser.add_argument("--overhead", action="store_true",
                        help="also time the host work of one call (a 2-step test)")
    args = parser.parse_args(argv)
    builders: dict[str, Callable[[], Any]] = {
        "a": lambda: lrjax_finder(args.steps),
        "b": lambda: bare_scan(args.steps),
        "b2": lambda: bare_scan(args.steps),
        "c": lambda: python_loop_finder(args.steps),
        "d": lambda: torch_finder(args.steps, args.torch_threads),
    }
    runs: dict[str, Callable[[], Any]] = {}
    for name, build in builders.items():
        if args.only and name not in args.only:
            continue
        run = build()
        if isinstance(run, str):
            print(f"{LABELS[name]} {run}", file=sys.stderr)
        else:
            runs[name] = run
    results = measure(runs, args.repeats)
    info = machine(args.torch_threads if "d" in runs else None)
    print("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    print(format_table(results, args.steps))
    for key, row in results.items():
        if row["steps_recorded"] < args.steps:
            print(f"note: {LABELS[key]} recorded {row['steps_recorded']} of {args.steps} steps")
    for line in check_targets(results):
        print(line)
    if args.overhead:
        overhead = host_overhead(4 * args.repeats)
        share = f" = {overhead / results['a']['median_s']:.1%} of (a)" if "a" in results else ""
        print(f"host overhead of one range_test call (2-step test): {overhead * 1e6:.0f} us{share}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(
                {"machine": info, "steps": args.steps, "repeats": args.repeats, "results": results},
                file,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
