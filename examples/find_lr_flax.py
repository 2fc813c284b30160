"""Find a learning rate for a Flax nnx model with lrjax, then train with a cyclical schedule.

1. Write the model with Flax nnx, as usual.
2. Turn it into what ``lrjax.range_test`` wants: a pure ``loss_fn(params, batch)`` and a
   params pytree (``nnx.split`` once, ``nnx.merge`` inside the loss).
3. Run the range test (one compiled program) and read Smith's cyclical bounds off the curve.
4. Train with ``lrjax.cyclic(base_lr, max_lr, step_size_up)`` and report test accuracy.

The optimizer (``--optimizer adam`` or ``sgd``, SGD with momentum 0.9) is the same in the
range test and in training: the bounds belong to the optimizer they were measured with.

Run ``python examples/find_lr_flax.py --help`` for the options; the defaults take a few
seconds on a laptop CPU. Needs ``pip install lrjax[examples]`` (Flax and scikit-learn).
"""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

import lrjax
from lrjax.data.digits import load_digits_split, stacked_batches


class MLP(nnx.Module):
    """Two hidden ReLU layers for 8x8 digit images (64 inputs, 10 classes)."""

    def __init__(self, hidden: int, *, rngs: nnx.Rngs) -> None:
        self.layer1 = nnx.Linear(64, hidden, rngs=rngs)
        self.layer2 = nnx.Linear(hidden, hidden, rngs=rngs)
        self.head = nnx.Linear(hidden, 10, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(nnx.relu(self.layer2(nnx.relu(self.layer1(x)))))


# Factories taking learning_rate: the range test hands them its ramp, training the schedule.
OPTIMIZERS = {
    "adam": optax.adam,
    "sgd": functools.partial(optax.sgd, momentum=0.9),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizer", choices=tuple(OPTIMIZERS), default="adam",
                        help="optimizer for the range test and training (sgd: momentum 0.9)")
    parser.add_argument("--range-steps", type=int, default=100, help="steps of the range test")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs after it")
    parser.add_argument("--cycles", type=int, default=3, help="cycles of the cyclic schedule")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def as_pure_functions(model: nnx.Module) -> tuple[Any, Any, Any]:
    """``(logits_fn, loss_fn, params)``: the model as pure functions of a params pytree.

    ``nnx.split`` separates the static graph from the arrays once; ``nnx.merge`` rebuilds
    the module inside the function at trace time, so both functions are pure and
    ``range_test`` can scan, vmap and differentiate them.
    """
    graphdef, state = nnx.split(model)

    def logits_fn(params: Any, x: jax.Array) -> jax.Array:
        return nnx.merge(graphdef, params)(x)

    def loss_fn(params: Any, batch: dict[str, jax.Array]) -> jax.Array:
        logits = logits_fn(params, batch["x"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()

    return logits_fn, loss_fn, nnx.to_pure_dict(state)


def train(
    loss_fn: Any,
    params: Any,
    transform: optax.GradientTransformation,
    x: Any,
    y: Any,
    args: argparse.Namespace,
) -> Any:
    """``args.epochs`` epochs of minibatch training, one scanned program per epoch."""

    @jax.jit
    def train_epoch(params: Any, opt_state: Any, batches: Any) -> tuple[Any, Any, jax.Array]:
        def step(carry: tuple[Any, Any], batch: Any) -> tuple[tuple[Any, Any], jax.Array]:
            params, opt_state = carry
            loss, grads = jax.value_and_grad(loss_fn)(params, batch)
            updates, opt_state = transform.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), batches)
        return params, opt_state, losses.mean()

    opt_state = transform.init(params)
    for epoch in range(args.epochs):
        batches = stacked_batches(
            x, y, args.batch_size, len(y) // args.batch_size, seed=args.seed + 1 + epoch
        )
        params, opt_state, mean_loss = train_epoch(params, opt_state, batches)
        print(f"epoch {epoch + 1:3d}: train loss {float(mean_loss):.4f}")
    return params


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    x_train, y_train, x_test, y_test = load_digits_split()
    logits_fn, loss_fn, params = as_pure_functions(MLP(args.hidden, rngs=nnx.Rngs(args.seed)))

    # The range test: one jit(lax.scan) program over `range_steps` stacked batches. The
    # optimizer is a factory: the range test hands it its ramp as learning_rate.
    optimizer = OPTIMIZERS[args.optimizer]
    data = stacked_batches(x_train, y_train, args.batch_size, args.range_steps, args.seed)
    result = lrjax.range_test(loss_fn, params, optimizer, data, num_steps=args.range_steps)
    base_lr, max_lr = result.cyclical_bounds()
    print(
        f"range test: suggested lr {result.suggest():.3g} "
        f"({lrjax.finder.suggest.rules.DEFAULT_METHOD}); "
        f"cyclical bounds {base_lr:.3g} .. {max_lr:.3g}"
    )

    # Smith's cyclical schedule between the bounds; in "triangular2" mode the amplitude
    # halves every cycle, so the last epochs train close to base_lr and settle.
    total_steps = (len(y_train) // args.batch_size) * args.epochs
    step_size_up = max(1, total_steps // (2 * args.cycles))
    schedule = lrjax.cyclic(base_lr, max_lr, step_size_up, mode="triangular2")
    # The range test left params untouched: training starts from the same initial weights.
    params = train(loss_fn, params, optimizer(learning_rate=schedule), x_train, y_train, args)

    predictions = jnp.argmax(logits_fn(params, jnp.asarray(x_test)), axis=-1)
    print(f"test accuracy: {float(jnp.mean(predictions == jnp.asarray(y_test))):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
