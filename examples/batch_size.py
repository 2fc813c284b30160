"""Don't decay the learning rate, increase the batch size: SGD with momentum on digits.

Three runs see the same data (the same micro-batches of ``--batch-size`` images, in the same
order, for the same number of epochs) from the same initial weights:

1. ``step decay``: SGD with momentum 0.9, the rate divided by ``--gamma`` at 50% and 75% of
   training (``lrjax.multistep_decay``);
2. ``batch growth``: the same schedule turned into batch growth by
   ``lrjax.batch_size_schedule(..., num_steps=...)``: the batch grows by ``1/gamma``
   instead, through ``optax.MultiSteps(every_k_schedule=...)``, at a constant rate;
3. ``growth, capped``: the same with ``max_batch_size`` at one growth step: the first
   decay becomes batch growth, the second a rate decay.

All three follow the same SGD noise scale ``g = lr (N/B - 1) / (1 - m)`` phase by phase
(Smith et al. 2018); the growth runs make far fewer parameter updates. A
``lrjax.gradient_noise_monitor`` first in each chain measures McCandlish et al.'s gradient
noise scale ``B_simple`` during training (each micro-batch split in 4), reported at the
end of each phase. Final test accuracy is the mean (and spread) over ``--seeds`` seeds.

Run ``python examples/batch_size.py`` (about a minute on a laptop CPU) or ``--small`` (the
CI mode: fewer epochs and seeds). Needs ``pip install lrjax[examples]``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import lrjax
from lrjax.data.digits import (
    accuracy,
    apply_and_params,
    cross_entropy_loss,
    load_digits_split,
    make_mlp,
    stacked_batches,
)

MOMENTUM = 0.9
SPLITS = 4  # each micro-batch is split in 4 for the noise-scale monitor


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16, help="the base (micro-)batch")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--gamma", type=float, default=0.2, help="rate factor at each decay")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--small", action="store_true", help="CI mode: 4 epochs, 2 seeds")
    args = parser.parse_args(argv)
    if args.small:
        args.epochs, args.seeds = 4, 2
    if args.batch_size % SPLITS:
        parser.error(f"--batch-size must be a multiple of {SPLITS}")
    return args


def make_runs(args: argparse.Namespace, num_steps: int) -> dict[str, dict[str, Any]]:
    """Each run: its optimizer over micro-steps and its plan (rate and batch per update)."""
    milestones = [num_steps // 2, (3 * num_steps) // 4]
    decay = lrjax.multistep_decay(args.lr, milestones, gamma=args.gamma)
    growth = round(1 / args.gamma)
    runs = {
        "step decay": {
            "plan": lrjax.batch_size_plan(decay, args.batch_size, args.batch_size, num_steps)
        }
    }
    runs["step decay"]["optimizer"] = optax.sgd(decay, momentum=MOMENTUM)
    for name, top in (("batch growth", growth**2), ("growth, capped", growth)):
        max_batch = top * args.batch_size
        lr, acc = lrjax.batch_size_schedule(decay, args.batch_size, max_batch, num_steps=num_steps)
        runs[name] = {
            "plan": lrjax.batch_size_plan(decay, args.batch_size, max_batch, num_steps),
            # MultiSteps counts updates: lr and acc are schedules of the update count.
            "optimizer": optax.MultiSteps(
                optax.sgd(lr, momentum=MOMENTUM), every_k_schedule=acc
            ).gradient_transformation(),
        }
    for run in runs.values():
        run["phase_starts"] = [0, *milestones]
        # B_simple is read after the first epoch and at each phase's end.
        run["read_at"] = (
            [num_steps // args.epochs - 1] + [m - 1 for m in milestones] + [num_steps - 1]
        )
    return runs


def train(
    loss_fn: Any, params: Any, optimizer: optax.GradientTransformation, batches: Any
) -> tuple[Any, Any, jax.Array]:
    """One compiled pass over the micro-batches; returns params, state, B_simple per micro-step."""
    chain = optax.chain(lrjax.gradient_noise_monitor(batches["y"].shape[1] // SPLITS), optimizer)

    def step(carry: Any, batch: Any) -> tuple[Any, jax.Array]:
        params, state = carry
        split = jax.tree.map(lambda a: a.reshape(SPLITS, -1, *a.shape[1:]), batch)
        grads = jax.vmap(jax.grad(loss_fn), in_axes=(None, 0))(params, split)  # (SPLITS, ...)
        updates, state = chain.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), lrjax.gradient_noise_estimate(
            state
        ).b_simple

    (params, state), b_simple = jax.lax.scan(step, (params, chain.init(params)), batches)
    return params, state, b_simple


def phase_rows(plan: lrjax.BatchSizePlan, starts: list[int]) -> list[int]:
    """The first update starting in each phase (its batch and rate are the phase's)."""
    return [int(np.searchsorted(plan.micro_step, start, side="left")) for start in starts]


def phase_noise_scales(
    plan: lrjax.BatchSizePlan, dataset_size: int, base_batch: int, rows: list[int]
) -> list[float]:
    """SGD's noise scale ``lr (N/B - 1)/(1 - m)`` of the given updates."""
    return [
        float(
            lrjax.noise_scale(
                float(plan.learning_rate[r]),
                dataset_size,
                int(plan.accumulation[r]) * base_batch,
                MOMENTUM,
            )
        )
        for r in rows
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    x_train, y_train, x_test, y_test = load_digits_split()
    per_epoch = len(y_train) // args.batch_size
    num_steps = per_epoch * args.epochs
    runs = make_runs(args, num_steps)
    compiled = {name: jax.jit(train, static_argnums=(0, 2)) for name in runs}

    results: dict[str, dict[str, list[Any]]] = {
        name: {"acc": [], "loss": [], "b": [], "updates": []} for name in runs
    }
    train_set = {"x": jnp.asarray(x_train), "y": jnp.asarray(y_train)}
    apply, _ = apply_and_params(make_mlp(args.hidden, key=0))
    loss_fn = cross_entropy_loss(apply)  # one loss_fn for all seeds: one compile per run
    for seed in range(args.seeds):
        _, params = apply_and_params(make_mlp(args.hidden, key=seed))
        batches = stacked_batches(x_train, y_train, args.batch_size, num_steps, seed=100 + seed)
        for name, run in runs.items():
            final, state, b_simple = compiled[name](loss_fn, params, run["optimizer"], batches)
            results[name]["acc"].append(accuracy(apply, final, x_test, y_test))
            results[name]["loss"].append(float(jax.jit(loss_fn)(final, train_set)))
            results[name]["b"].append(np.asarray(b_simple)[run["read_at"]])
            inner = state[1]
            updates = (
                int(inner.gradient_step) if isinstance(inner, optax.MultiStepsState) else num_steps
            )
            assert updates == run["plan"].num_updates, (name, updates, run["plan"].num_updates)
            results[name]["updates"].append(updates)

    print(
        f"digits, MLP {args.hidden}, SGD momentum {MOMENTUM}, {args.epochs} epochs of "
        f"{per_epoch} micro-batches of {args.batch_size}, rate {args.lr} "
        f"(x{args.gamma} at 50% and 75%), {args.seeds} seeds"
    )
    print()
    print(
        "| run | batch per phase | rate per phase | parameter updates "
        "| SGD noise scale g per phase | measured B_simple (epoch 1, phase ends) "
        "| final train loss | test accuracy |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, run in runs.items():
        plan = run["plan"]
        rows = phase_rows(plan, run["phase_starts"])
        batches_txt = " / ".join(str(int(plan.accumulation[r]) * args.batch_size) for r in rows)
        rates_txt = " / ".join(f"{plan.learning_rate[r]:.3g}" for r in rows)
        g_txt = " / ".join(
            f"{g:.3g}" for g in phase_noise_scales(plan, len(y_train), args.batch_size, rows)
        )
        b_txt = " / ".join(f"{b:.3g}" for b in np.median(results[name]["b"], axis=0))
        acc = np.asarray(results[name]["acc"])
        updates = results[name]["updates"][0]
        print(
            f"| {name} | {batches_txt} | {rates_txt} | {updates} | {g_txt} | {b_txt} "
            f"| {np.mean(results[name]['loss']):.5f} | {acc.mean():.4f} ± {acc.std():.4f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
