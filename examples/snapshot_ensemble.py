"""One step budget, three ways: a single model, a snapshot ensemble, and SWA, on digits.

Every run trains the same MLP (64 -> hidden -> 10, ReLU) on scikit-learn's digits with
SGD (momentum 0.9) for the same number of steps, batch 64, the same peak learning rate:

* **single**: one model on a cosine decay from the peak to 0 (``lrjax.cosine_annealing``);
* **snapshot**: ``lrjax.train_snapshots`` on the snapshot schedule (M cosine cycles
  restarting at the peak, Huang et al. 2017), predicting with the mean of the M
  snapshots' softmax probabilities (``lrjax.ensemble_predict``);
* **swa**: cosine from the peak down to ``peak * swa_ratio`` over the first 75% of the
  steps, then constant, with ``lrjax.swa`` averaging the weights once per epoch over the
  last 25% (Izmailov et al. 2018); predicting with the averaged weights (the MLP has no
  batch norm, so no ``update_batch_stats`` pass is needed).

Each training is one compiled program (``train_snapshots``), compiled once and reused for
every seed. The table reports test accuracy and test NLL (mean negative log-probability
of the true label), mean and standard deviation over the seeds; "snapshot (members)" is
the mean over the ensemble's individual snapshots.

Run ``python examples/snapshot_ensemble.py`` (about a minute on a laptop CPU), or
``--small`` (also ``LRJAX_EXAMPLE_SMALL=1``) for the quick CI run. Needs
``pip install lrjax[examples]`` (Flax and scikit-learn).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import lrjax
from lrjax.data import digits

BATCH_SIZE = 64


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true",
                        default=os.environ.get("LRJAX_EXAMPLE_SMALL", "") not in ("", "0"),
                        help="quick run for CI: 1 seed, 300 steps (or LRJAX_EXAMPLE_SMALL=1)")
    parser.add_argument("--steps", type=int, default=None, help="steps per training (2200)")
    parser.add_argument("--cycles", type=int, default=5, help="snapshot cycles M (5)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds (5)")
    parser.add_argument("--lr", type=float, default=0.1, help="peak learning rate (0.1)")
    parser.add_argument("--swa-ratio", type=float, default=0.1,
                        help="SWA's constant rate as a share of the peak (0.1)")
    parser.add_argument("--hidden", type=int, default=128, help="hidden width (128)")
    args = parser.parse_args(argv)
    if args.steps is None:
        args.steps = 300 if args.small else 2200
    if args.seeds is None:
        args.seeds = 1 if args.small else 5
    for name in ("steps", "cycles", "seeds", "hidden"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    if not (0 < args.lr and 0 < args.swa_ratio <= 1):
        parser.error("--lr must be > 0 and --swa-ratio in (0, 1]")
    return args


def nll_and_accuracy(probs: jax.Array, labels: np.ndarray) -> tuple[float, float]:
    probs = np.asarray(probs, np.float64)
    true = probs[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.maximum(true, 1e-12)))), float(np.mean(
        probs.argmax(axis=1) == labels))


@functools.lru_cache(maxsize=None)
def schedules(peak: float, steps: int, swa_start: int, swa_lr: float) -> tuple[Any, Any]:
    """The single model's and SWA's schedules, made once: the same schedule objects let
    ``train_snapshots`` reuse its compiled program for every seed."""
    return (lrjax.cosine_annealing(peak, steps),
            lrjax.cosine_annealing(peak, swa_start, min_value=swa_lr))


def run_seed(seed: int, args: argparse.Namespace, apply: Any, loss_fn: Any,
             split: digits.DigitsSplit) -> dict[str, tuple[float, float]]:
    """The three methods on one seed (same init, same batches): name -> (nll, accuracy)."""
    params = digits.apply_and_params(digits.make_mlp(args.hidden, jax.random.key(seed)))[1]
    data = digits.stacked_batches(split.x_train, split.y_train, BATCH_SIZE, args.steps, seed)
    x_test, y_test = jnp.asarray(split.x_test), np.asarray(split.y_test)
    steps = args.steps
    common = dict(num_steps=steps, data=data, loss_fn=loss_fn, params=params, key=seed)
    swa_start = int(0.75 * steps)
    swa_lr = args.lr * args.swa_ratio
    cosine, swa_schedule = schedules(args.lr, steps, swa_start, swa_lr)
    out = {}

    single = lrjax.train_snapshots(optimizer=SGD, num_cycles=1, schedule=cosine, **common)
    out["single (cosine)"] = nll_and_accuracy(lrjax.ensemble_predict(apply, single, x_test), y_test)

    snaps = lrjax.train_snapshots(optimizer=SGD, num_cycles=args.cycles, init_value=args.lr,
                                  **common)
    out[f"snapshot ensemble (M={args.cycles})"] = nll_and_accuracy(
        lrjax.ensemble_predict(apply, snaps, x_test), y_test)
    members = lrjax.ensemble_members(apply, snaps, x_test)
    each = np.array([nll_and_accuracy(p, y_test) for p in members])
    out["snapshot (members, mean)"] = tuple(each.mean(axis=0))

    swa_run = lrjax.train_snapshots(
        optimizer=functools.partial(swa_sgd, start_step=swa_start,
                                    every_steps=max(1, len(split.y_train) // BATCH_SIZE)),
        num_cycles=1, schedule=swa_schedule, **common)
    averaged = lrjax.swa_params(swa_run.opt_state)
    out["swa"] = nll_and_accuracy(jax.nn.softmax(apply(averaged, x_test)), y_test)
    return out


SGD = functools.partial(optax.sgd, momentum=0.9)


def swa_sgd(learning_rate: Any, start_step: int, every_steps: int) -> optax.GradientTransformation:
    return lrjax.swa(SGD(learning_rate), start_step, every_steps)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    split = digits.load_digits_split()
    apply, _ = digits.apply_and_params(digits.make_mlp(args.hidden, 0))
    loss_fn = digits.cross_entropy_loss(apply)
    print(f"digits MLP 64-{args.hidden}-10, SGD momentum 0.9, batch {BATCH_SIZE}, "
          f"{args.steps} steps, peak lr {args.lr}, {args.seeds} seed(s), "
          f"jax {jax.__version__} on {jax.devices()[0].platform}")
    start = time.perf_counter()
    results: dict[str, list[tuple[float, float]]] = {}
    for seed in range(args.seeds):
        for name, value in run_seed(seed, args, apply, loss_fn, split).items():
            results.setdefault(name, []).append(value)
    print(f"({time.perf_counter() - start:.1f} s)\n")
    print("| method | test accuracy | test NLL |")
    print("|---|---|---|")
    for name, values in results.items():
        nll, acc = np.asarray(values).T
        print(f"| {name} | {100 * acc.mean():.2f}% ± {100 * acc.std():.2f} | "
              f"{nll.mean():.4f} ± {nll.std():.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
