"""The LR range test on a Flax nnx MLP with Dropout, passed as a module, then training.

An ``nnx.Module`` goes to ``lrjax.range_test`` as ``params`` with ``loss_fn(model,
batch)``: lrjax splits out the ``nnx.Param`` arrays to train and threads the rest (the
dropout RNG stream, advanced every step) as state. Your module is not changed; training
through ``lrjax.make_model_step`` returns a new one (``step.merge``).

Run ``python examples/find_lr_nnx.py --help``; needs ``pip install lrjax[examples]``.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from range_example_common import cross_entropy, digits, fit, parse_args, report, schedule

import lrjax


class MLP(nnx.Module):
    """64 -> 64 ReLU -> Dropout(0.2) -> 10."""

    def __init__(self, *, rngs: nnx.Rngs) -> None:
        self.hidden = nnx.Linear(64, 64, rngs=rngs)
        self.drop = nnx.Dropout(0.2, rngs=rngs)
        self.head = nnx.Linear(64, 10, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(self.drop(nnx.relu(self.hidden(x))))


def loss_fn(model: MLP, batch: dict) -> jax.Array:
    return cross_entropy(model(batch["x"]), batch["y"])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    x_train, y_train, x_test, y_test, data = digits(args)
    model = MLP(rngs=nnx.Rngs(params=args.seed, dropout=args.seed + 1))
    # val_data runs the model in eval mode (dropout off), with a copy of its state.
    result = lrjax.range_test(loss_fn, model, optax.adam, data, num_steps=args.range_steps,
                              val_data={"x": x_test, "y": y_test})
    bounds = report(result)
    step = lrjax.make_model_step(loss_fn, model, optax.adam, schedule(bounds, len(y_train), args))
    trained = step.merge(fit(step, x_train, y_train, args))  # a new module
    trained.eval()
    accuracy = jnp.mean(jnp.argmax(trained(jnp.asarray(x_test)), -1) == y_test)
    print(f"test accuracy: {float(accuracy):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
