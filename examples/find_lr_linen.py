"""The LR range test on a Flax linen CNN with BatchNorm and Dropout, then cyclical training.

linen keeps BatchNorm's running statistics in ``batch_stats`` beside ``params`` and draws
dropout masks from an ``rngs={"dropout": key}``: the range test threads the statistics
with ``state=`` (never optimized), passes a fresh ``key=`` each step with
``stochastic=True``, and evaluates ``val_data`` with ``eval_fn`` (running averages, no
dropout). The same loss then trains the model through ``lrjax.make_model_step``.

Run ``python examples/find_lr_linen.py --help``; needs ``pip install lrjax[examples]``.
"""

from __future__ import annotations

import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from range_example_common import cross_entropy, digits, fit, parse_args, report, schedule

import lrjax


class CNN(nn.Module):
    """conv 3x3 (16) -> BatchNorm -> ReLU -> Dropout -> dense 10, on 8x8 digit images."""

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = nn.Conv(16, (3, 3))(x.reshape(-1, 8, 8, 1))
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        x = nn.Dropout(0.2, deterministic=not train)(nn.relu(x))
        return nn.Dense(10)(x.reshape(x.shape[0], -1))


MODEL = CNN()


def loss_fn(params, batch_stats, batch, *, key):
    """Train mode: batch statistics updated, dropout drawn from ``key``."""
    logits, updates = MODEL.apply({"params": params, "batch_stats": batch_stats}, batch["x"],
                                  train=True, rngs={"dropout": key}, mutable=["batch_stats"])
    return cross_entropy(logits, batch["y"]), updates["batch_stats"]


def eval_fn(params, batch_stats, batch):
    """Eval mode: running averages, no dropout (no key)."""
    logits = MODEL.apply({"params": params, "batch_stats": batch_stats}, batch["x"], train=False)
    return cross_entropy(logits, batch["y"])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    x_train, y_train, x_test, y_test, data = digits(args)
    variables = MODEL.init(jax.random.key(args.seed), x_train[:1], train=False)
    params, batch_stats = variables["params"], variables["batch_stats"]
    common = dict(state=batch_stats, stochastic=True, eval_fn=eval_fn)
    result = lrjax.range_test(loss_fn, params, optax.adam, data, num_steps=args.range_steps,
                              val_data={"x": x_test, "y": y_test}, **common)
    bounds = report(result)
    step = lrjax.make_model_step(loss_fn, params, optax.adam,
                                 schedule(bounds, len(y_train), args), **common)
    carry = fit(step, x_train, y_train, args)
    logits = MODEL.apply({"params": carry.params, "batch_stats": carry.state}, x_test,
                         train=False)
    print(f"test accuracy: {float(jnp.mean(jnp.argmax(logits, -1) == y_test)):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
