"""The LR range test on an Equinox MLP with Dropout, passed as a module, then training.

An ``eqx.Module`` goes to ``lrjax.range_test`` as ``params`` with ``loss_fn(model,
batch)``: lrjax trains its float arrays (``eqx.partition(model, eqx.is_inexact_array)``).
Equinox dropout takes its key explicitly, so ``stochastic=True`` passes ``key=`` (fresh
each step); evaluation runs ``eqx.nn.inference_mode``.

Run ``python examples/find_lr_equinox.py --help``; needs ``pip install "lrjax[examples,models]"``.
"""

from __future__ import annotations

import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from range_example_common import cross_entropy, digits, fit, parse_args, report, schedule

import lrjax


class MLP(eqx.Module):
    """64 -> 64 ReLU -> Dropout(0.2) -> 10, for one image (vmap over a batch)."""

    hidden: eqx.nn.Linear
    drop: eqx.nn.Dropout
    head: eqx.nn.Linear

    def __init__(self, key: jax.Array) -> None:
        k1, k2 = jax.random.split(key)
        self.hidden = eqx.nn.Linear(64, 64, key=k1)
        self.drop = eqx.nn.Dropout(0.2)
        self.head = eqx.nn.Linear(64, 10, key=k2)

    def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        return self.head(self.drop(jax.nn.relu(self.hidden(x)), key=key))


def loss_fn(model: MLP, batch: dict, *, key: jax.Array) -> jax.Array:
    keys = jax.random.split(key, batch["x"].shape[0])
    return cross_entropy(jax.vmap(model)(batch["x"], keys), batch["y"])


def eval_fn(model: MLP, batch: dict) -> jax.Array:
    return cross_entropy(jax.vmap(model)(batch["x"]), batch["y"])  # inference mode: no key


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    x_train, y_train, x_test, y_test, data = digits(args)
    model = MLP(jax.random.key(args.seed))
    common = dict(stochastic=True, eval_fn=eval_fn)
    result = lrjax.range_test(loss_fn, model, optax.adam, data, num_steps=args.range_steps,
                              val_data={"x": x_test, "y": y_test}, **common)
    bounds = report(result)
    step = lrjax.make_model_step(loss_fn, model, optax.adam,
                                 schedule(bounds, len(y_train), args), **common)
    trained = eqx.nn.inference_mode(step.merge(fit(step, x_train, y_train, args)))
    accuracy = jnp.mean(jnp.argmax(jax.vmap(trained)(jnp.asarray(x_test)), -1) == y_test)
    print(f"test accuracy: {float(accuracy):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
