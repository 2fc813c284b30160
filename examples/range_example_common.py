"""What the range-test examples share: options, the digits data, and a scanned training.

Each example (``find_lr_linen.py``, ``find_lr_nnx.py``, ``find_lr_equinox.py``) builds
its model, runs ``lrjax.range_test`` on it and trains with ``lrjax.make_model_step`` on
the cyclical schedule read off the curve; this module holds the parts that do not
depend on the model library.
"""

from __future__ import annotations

import argparse
from typing import Any

import jax
import jax.numpy as jnp
import optax

import lrjax
from lrjax.data.digits import load_digits_split, stacked_batches


def parse_args(description: str, argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--range-steps", type=int, default=100, help="steps of the range test")
    parser.add_argument("--epochs", type=int, default=8, help="training epochs after it")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def digits(args: argparse.Namespace) -> tuple[Any, Any, Any, Any, Any]:
    """``(x_train, y_train, x_test, y_test, range-test batches)`` of scikit-learn's digits."""
    x_train, y_train, x_test, y_test = load_digits_split()
    data = stacked_batches(x_train, y_train, args.batch_size, args.range_steps, args.seed)
    return x_train, y_train, x_test, y_test, data


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def report(result: lrjax.RangeTestResult) -> tuple[float, float]:
    base_lr, max_lr = result.cyclical_bounds()
    # The rule suggest() uses without a method: lrjax's default, whichever it is.
    print(f"range test: suggested lr {result.suggest():.3g} "
          f"({lrjax.finder.suggest.rules.DEFAULT_METHOD}); "
          f"cyclical bounds {base_lr:.3g} .. {max_lr:.3g}")
    return base_lr, max_lr


def schedule(bounds: tuple[float, float], num_examples: int,
             args: argparse.Namespace) -> optax.Schedule:
    """Smith's triangular2 cycle between the bounds, three cycles over the training."""
    total = (num_examples // args.batch_size) * args.epochs
    return lrjax.cyclic(bounds[0], bounds[1], max(1, total // 6), mode="triangular2")


def fit(step: lrjax.ModelStep, x: Any, y: Any, args: argparse.Namespace) -> Any:
    """``args.epochs`` epochs, each one jitted ``lax.scan`` of ``step.step``; the carry.

    Step ``t`` of the training gets the key ``fold_in(key(seed), t)`` (used only by a
    stochastic loss), the range test's own convention.
    """
    per_epoch = len(y) // args.batch_size
    key = jax.random.key(args.seed + 1)

    @jax.jit
    def epoch(carry: lrjax.engine.TrainCarry, batches: Any, first: jax.Array) -> tuple:
        def one(carry: lrjax.engine.TrainCarry, xs: tuple) -> tuple:
            t, batch = xs
            carry, loss, _ = step.step(carry, batch, jax.random.fold_in(key, t))
            return carry, loss

        steps = first + jnp.arange(per_epoch)
        return jax.lax.scan(one, carry, (steps, batches))

    carry = step.carry
    for index in range(args.epochs):
        batches = stacked_batches(x, y, args.batch_size, per_epoch, seed=args.seed + 1 + index)
        carry, losses = epoch(carry, batches, jnp.int32(index * per_epoch))
        print(f"epoch {index + 1:3d}: train loss {float(losses.mean()):.4f}")
    return carry
