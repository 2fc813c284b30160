"""Time one jitted optimizer update: each lrjax optimizer against its optax counterpart.

About 10M float32 parameters in four leaves. Each step is jitted with the params and
state donated (here only: the library itself never donates). The pairs are timed
interleaved, repeat after repeat, so that load changes on the machine hit both sides
alike, and which side of a pair runs first alternates. The table reports median times
and the median of the per-repeat ratios lrjax / optax (a paired statistic, robust to load
drifting on a shared machine). The last row times optax.adamw against itself: its
distance from 1 is the noise floor of the run.

    python benchmarks/optimizer_step.py [--repeats 100] [--scale 1.0] [--only adamw sgdw]

Baselines: the exact optax equivalent where one exists (adamw, sgdw as
``trace + add_decayed_weights + scale_by_learning_rate``); otherwise the closest optax
optimizer doing the same kind of work (amsgrad: ``optax.amsgrad``; the warm-restart forms:
the same optax chain with a cosine schedule; powersign / addsign: ``optax.adam``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

import lrjax  # noqa: E402

LR, WD, STEPS_PER_EPOCH = 1e-3, 1e-4, 100


def _optax_sgdw(learning_rate: optax.ScalarOrSchedule) -> optax.GradientTransformation:
    """SGD with raw-gradient momentum and lr-scaled decoupled decay, built from optax blocks."""
    return optax.chain(
        optax.trace(decay=0.9),
        optax.add_decayed_weights(WD),
        optax.scale_by_learning_rate(learning_rate),
    )


def pairs() -> list[tuple[str, optax.GradientTransformation, str, optax.GradientTransformation]]:
    cosine = optax.cosine_decay_schedule(LR, 10 * STEPS_PER_EPOCH)
    restarts = dict(
        period_epochs=10, steps_per_epoch=STEPS_PER_EPOCH, period_mult=2.0, weight_decay_norm=0.05
    )
    return [
        (
            "adamw",
            lrjax.adamw(LR, weight_decay=WD),
            "optax.adamw",
            optax.adamw(LR, weight_decay=WD),
        ),
        (
            "adamw(multiplier=cosine)",
            lrjax.adamw(LR, weight_decay=WD, multiplier=optax.cosine_decay_schedule(1.0, 1000)),
            "optax.adamw(cosine)",
            optax.adamw(cosine, weight_decay=WD),
        ),
        (
            "adamwr",
            lrjax.adamwr(LR, **restarts),
            "optax.adamw(cosine)",
            optax.adamw(cosine, weight_decay=WD),
        ),
        (
            "sgdw",
            lrjax.sgdw(LR, momentum=0.9, weight_decay=WD),
            "optax trace+decay+lr",
            _optax_sgdw(LR),
        ),
        ("sgdwr", lrjax.sgdwr(LR, **restarts), "optax trace+decay+lr(cosine)", _optax_sgdw(cosine)),
        ("amsgrad", lrjax.amsgrad(LR), "optax.amsgrad", optax.amsgrad(LR)),
        ("powersign", lrjax.powersign(LR), "optax.adam", optax.adam(LR)),
        ("addsign", lrjax.addsign(LR), "optax.adam", optax.adam(LR)),
        # A/A control: identical programs, so its ratio shows the timing noise floor.
        (
            "control: optax.adamw",
            optax.adamw(LR, weight_decay=WD),
            "optax.adamw",
            optax.adamw(LR, weight_decay=WD),
        ),
    ]


def make_params(scale: float) -> dict[str, jax.Array]:
    """About ``scale * 10M`` float32 params in four leaves of different shapes."""
    n = max(8, int(2048 * scale**0.5))
    shapes = {"w1": (n, n), "w2": (n, n), "w3": (n // 2, 3 * n // 4), "b": (2 * n,)}
    keys = jax.random.split(jax.random.key(0), len(shapes))
    return {
        name: jax.random.normal(k, shape)
        for k, (name, shape) in zip(keys, shapes.items(), strict=True)
    }


def make_step(opt: optax.GradientTransformation) -> Callable:
    def step(params, state, grads):
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return jax.jit(step, donate_argnums=(0, 1))


class Runner:
    """One optimizer's jitted step and its own (donated) params and state."""

    def __init__(self, opt: optax.GradientTransformation, params: dict, grads: dict):
        self.step = make_step(opt)
        self.params = jax.tree.map(jnp.copy, params)
        self.state = opt.init(self.params)
        self.grads = grads
        self.times: list[float] = []
        self.run()  # compile and warm up

    def run(self) -> float:
        start = time.perf_counter()
        self.params, self.state = self.step(self.params, self.state, self.grads)
        jax.block_until_ready((self.params, self.state))
        return time.perf_counter() - start

    def timed(self) -> None:
        self.times.append(self.run())

    @property
    def median_ms(self) -> float:
        return 1e3 * statistics.median(self.times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=100, help="timed steps per optimizer")
    parser.add_argument("--scale", type=float, default=1.0, help="params in units of ~10M")
    parser.add_argument("--only", nargs="*", help="lrjax optimizer names to time (default: all)")
    args = parser.parse_args()

    params = make_params(args.scale)
    grads = jax.tree.map(lambda p: 1e-2 * jnp.cos(p), params)
    num_params = sum(p.size for p in jax.tree.leaves(params))
    wanted = lambda name: not args.only or name in args.only or name.startswith("control")  # noqa: E731
    selected = [pair for pair in pairs() if wanted(pair[0])]
    runners = [
        (a, Runner(o, params, grads), b, Runner(ob, params, grads)) for a, o, b, ob in selected
    ]
    for repeat in range(args.repeats):
        for _, ours, _, theirs in runners:
            for runner in (ours, theirs) if repeat % 2 else (theirs, ours):
                runner.timed()

    print(
        f"{num_params / 1e6:.1f}M float32 params, {args.repeats} interleaved repeats, medians; "
        f"{jax.devices()[0].device_kind} ({platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores), jax {jax.__version__}, optax {optax.__version__}\n"
    )
    print("| lrjax | ms | optax baseline | ms | ratio |")
    print("|---|---:|---|---:|---:|")
    for name, ours, baseline, theirs in runners:
        ratio = statistics.median(a / b for a, b in zip(ours.times, theirs.times, strict=True))
        print(
            f"| `{name}` | {ours.median_ms:.2f} | `{baseline}` | {theirs.median_ms:.2f} "
            f"| {ratio:.3f} |"
        )


if __name__ == "__main__":
    main()
