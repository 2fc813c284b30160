"""The tiny linear regression the search tests train: y = x @ [1, -2, 0.5], random init."""

import jax
import jax.numpy as jnp


def tiny_regression(key: int, num_batches: int):
    """``(loss_fn, init_fn, data)``: mean squared error, a normal init (so seeds differ), and
    ``num_batches`` stacked batches of 8 rows of 3 features."""
    x = jax.random.normal(jax.random.key(key), (num_batches, 8, 3))
    data = {"x": x, "y": x @ jnp.array([1.0, -2.0, 0.5])}

    def loss_fn(w, batch):
        return jnp.mean((batch["x"] @ w - batch["y"]) ** 2)

    def init_fn(key):
        return jax.random.normal(key, (3,))

    return loss_fn, init_fn, data
