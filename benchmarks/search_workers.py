"""Benchmark: a search shared by 1, 2 and 4 worker processes on PostgreSQL and on a journal file.

Every worker runs ``lrjax.search(..., storage=..., batch_size=B)`` on one shared study of
``--trials`` trials (method ``random``). A trial is a tiny JAX program plus a host pause of
``--trial-ms`` milliseconds (a ``jax.pure_callback`` that sleeps): the pause stands for the
device time of a real training, and leaves the CPU free, so that on a 2-core machine the
workers' scaling measures the storage, not the contention for cores. Each worker compiles
first (a warm-up search without storage, the same executable), then all start together;
the time of a configuration is from the common start to the last worker's end.

Reported, each as a ratio against a baseline measured in the same run:
- trials per second with W workers, against W times the baseline rate (one process, the
  same trials, no storage): 1.0 is perfect scaling with no storage cost;
- the storage's overhead per trial: (time per trial with the storage, one worker, no
  pause) minus (the same without storage), in milliseconds and as a ratio to the baseline's
  time per trial.

PostgreSQL: a server's URL in ``LRJAX_TEST_POSTGRES_URL`` or ``--postgres``; without one
only the journal file is measured. ``.ci/postgres.sh`` starts a throwaway server:

    bash .ci/postgres.sh -- .venv/bin/python benchmarks/search_workers.py [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid

WORKER_COUNTS = (1, 2, 4)


def _problem(trial_ms: float):
    import jax
    import jax.numpy as jnp
    import numpy as np

    import lrjax

    def pause(x):
        if trial_ms > 0:
            time.sleep(trial_ms / 1000)
        return np.float32(0.0)

    def train_fn(h, key):
        w = jnp.zeros(()) + 0.1 * jax.random.normal(key, ())
        for _ in range(5):  # a few steps of gradient descent on (w - 3)^2
            w = w - h["lr"] * 2 * (w - 3.0)
        wait = jax.pure_callback(pause, jax.ShapeDtypeStruct((), jnp.float32), w)
        return (w - 3.0) ** 2 + wait

    return train_fn, {"lr": lrjax.uniform(0.0, 1.0)}


def worker(cfg: dict) -> None:
    """One worker: compile, wait for the common start, run the shared search, print times."""
    import lrjax

    train_fn, space = _problem(cfg["trial_ms"])
    common = dict(method="random", batch_size=cfg["batch"])
    lrjax.search(train_fn, space, num_trials=cfg["batch"], **common)  # compiles; cached
    open(cfg["ready"] + str(os.getpid()), "w").close()
    while not os.path.exists(cfg["go"]):
        time.sleep(0.002)
    start = time.time()
    storage = cfg["storage"]
    result = lrjax.search(train_fn, space, num_trials=cfg["trials"], storage=storage,
                          study_name=cfg["study"], **common)
    end = time.time()
    assert len(result.trials) == cfg["trials"], len(result.trials)
    print(json.dumps({"start": start, "end": end}))


def run_workers(count: int, storage: str | None, study: str, args: argparse.Namespace,
                trial_ms: float, tmp: str) -> float:
    """Seconds for ``count`` workers to finish the study, from their common start."""
    tag = uuid.uuid4().hex[:8]
    cfg = {"storage": storage, "study": study, "trials": args.trials, "batch": args.batch,
           "trial_ms": trial_ms, "ready": os.path.join(tmp, f"ready-{tag}-"),
           "go": os.path.join(tmp, f"go-{tag}")}
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(cfg)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(count)]
    try:
        deadline = time.monotonic() + 300
        while sum(name.startswith(f"ready-{tag}-") for name in os.listdir(tmp)) < count:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError("a worker did not start: "
                                   + "".join(p.stderr.read()[-2000:] for p in procs
                                             if p.poll() is not None))
            time.sleep(0.01)
        go = time.time()
        open(cfg["go"], "w").close()
        ends = []
        for proc in procs:
            out, err = proc.communicate(timeout=600)
            if proc.returncode != 0:
                raise RuntimeError(err[-3000:])
            ends.append(json.loads(out.strip().splitlines()[-1])["end"])
        return max(ends) - go
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)


def baseline(args: argparse.Namespace, trial_ms: float, tmp: str) -> float:
    """Seconds for the trials in one process without storage (the same trials, compiled)."""
    return run_workers(1, None, "baseline", args, trial_ms, tmp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=48)
    parser.add_argument("--batch", type=int, default=1, help="trials per ask/tell (batch_size)")
    parser.add_argument("--trial-ms", type=float, default=50.0)
    parser.add_argument("--postgres", default=os.environ.get("LRJAX_TEST_POSTGRES_URL"))
    parser.add_argument("--json", default=None)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(json.loads(args.worker))
        return
    import jax
    import optuna

    with tempfile.TemporaryDirectory() as tmp:
        storages = [("journal file", lambda: os.path.join(tmp, f"{uuid.uuid4().hex}.journal"))]
        if args.postgres:
            storages.append(("PostgreSQL", lambda: args.postgres))
        else:
            print("no PostgreSQL URL (LRJAX_TEST_POSTGRES_URL or --postgres): journal only")
        base = baseline(args, args.trial_ms, tmp)
        base_rate = args.trials / base
        base0 = baseline(args, 0.0, tmp)
        rows, results = [], {"baseline_trials_per_s": base_rate,
                             "baseline_ms_per_trial_no_pause": 1000 * base0 / args.trials}
        for name, make in storages:
            for count in WORKER_COUNTS:
                seconds = run_workers(count, make(), f"bench-{uuid.uuid4().hex[:8]}", args,
                                      args.trial_ms, tmp)
                rate = args.trials / seconds
                rows.append((name, count, rate, rate / (count * base_rate)))
                results[f"{name} x{count}"] = {"trials_per_s": rate,
                                               "vs_ideal": rate / (count * base_rate)}
            seconds0 = run_workers(1, make(), f"bench-{uuid.uuid4().hex[:8]}", args, 0.0, tmp)
            overhead = 1000 * (seconds0 - base0) / args.trials
            results[f"{name} overhead_ms_per_trial"] = overhead
            rows.append((name, "overhead", overhead, overhead / (1000 * base0 / args.trials)))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, jax {jax.__version__}, optuna "
          f"{optuna.__version__}")
    print(f"{args.trials} trials, {args.trial_ms:g} ms pause each, batch_size {args.batch}; "
          f"baseline (1 process, no storage): {base_rate:.1f} trials/s, "
          f"{1000 * base0 / args.trials:.2f} ms per trial without the pause")
    print(f"{'storage':<14}{'workers':>9}{'trials/s':>10}{'vs W x baseline':>17}")
    for name, count, value, ratio in rows:
        if count == "overhead":
            print(f"{name:<14}{'overhead':>9}{value:>8.2f}ms{ratio:>16.2f}x  (per trial, vs "
                  "the baseline's time per trial without the pause)")
        else:
            print(f"{name:<14}{count:>9}{value:>10.1f}{ratio:>17.2f}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=1)


if __name__ == "__main__":
    main()
