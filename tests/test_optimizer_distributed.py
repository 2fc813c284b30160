"""Data parallelism: pmap with averaged gradients, and jit over NamedSharding-sharded arrays.

Both must give what one device gives with the full batch, and the optimizer state must be
sharded like the params. Uses the 8 simulated CPU devices set up in conftest.py; shapes are
tiny and each optimizer compiles once per mode.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from test_optimizer_common import make_optimizer

NAMES = ["adamw", "sgdw", "adamwr", "sgdwr", "amsgrad", "powersign", "addsign"]
NUM_DEVICES, NUM_STEPS, BATCH, WIDTH = 8, 3, 16, 8


def _loss(params, x, y):
    prediction = x @ params["w"] + params["b"]
    return jnp.mean((prediction - y) ** 2)


def _train(opt, params, state, xs, ys, average_gradients=lambda g: g):
    """NUM_STEPS optimizer steps, one batch per step; returns (params, state)."""

    def step(carry, batch):
        p, s = carry
        grads = average_gradients(jax.grad(_loss)(p, *batch))
        updates, s = opt.update(grads, s, p)
        return (optax.apply_updates(p, updates), s), None

    return jax.lax.scan(step, (params, state), (xs, ys))[0]


def _data():
    rng = np.random.default_rng(0)
    params = {"w": rng.normal(size=(WIDTH, WIDTH)), "b": rng.normal(size=(WIDTH,))}
    xs = rng.normal(size=(NUM_STEPS, BATCH, WIDTH))
    ys = rng.normal(size=(NUM_STEPS, BATCH, WIDTH))
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), (params, xs, ys))


def _assert_trees_close(actual, expected):
    jax.tree.map(
        lambda a, e: np.testing.assert_allclose(a, e, rtol=2e-5, atol=2e-6), actual, expected
    )


def _assert_state_follows_params(state, params):
    """Every state leaf shaped like a param is sharded like it; scalars are replicated."""
    checked = 0
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        if leaf.ndim == 0:
            assert leaf.sharding.is_fully_replicated
            continue
        param = params[path[-1].key]
        assert leaf.sharding.is_equivalent_to(param.sharding, leaf.ndim), (path, leaf.sharding)
        checked += 1
    assert checked >= len(params)


@pytest.mark.parametrize("name", NAMES)
def test_pmap_and_named_sharding_match_single_device(name):
    assert jax.device_count() == NUM_DEVICES
    opt = make_optimizer(name, 0.05)
    params, xs, ys = _data()

    # One device, full batch.
    expected = jax.jit(lambda p, x, y: _train(opt, p, opt.init(p), x, y)[0])(params, xs, ys)

    # pmap: replicated params, 2 examples per device, gradients averaged over the axis.
    def per_device(p, x, y):
        return _train(opt, p, opt.init(p), x, y, lambda g: jax.lax.pmean(g, "devices"))[0]

    replicated = jax.tree.map(lambda a: jnp.broadcast_to(a, (NUM_DEVICES, *a.shape)), params)
    split = [a.reshape(NUM_STEPS, NUM_DEVICES, -1, WIDTH).swapaxes(0, 1) for a in (xs, ys)]
    pmapped = jax.pmap(per_device, axis_name="devices")(replicated, *split)
    for i in (0, NUM_DEVICES - 1):
        _assert_trees_close(jax.tree.map(lambda a: a[i], pmapped), expected)

    # jit over a mesh: params and batch sharded along one 8-device axis.
    mesh = Mesh(np.asarray(jax.devices()), ("d",))
    param_shardings = {"w": NamedSharding(mesh, P("d", None)), "b": NamedSharding(mesh, P("d"))}
    sharded_params = jax.device_put(params, param_shardings)
    batch_sharding = NamedSharding(mesh, P(None, "d", None))
    sharded_xs, sharded_ys = jax.device_put((xs, ys), batch_sharding)
    state = opt.init(sharded_params)
    _assert_state_follows_params(state, sharded_params)
    new_params, new_state = jax.jit(lambda p, s, x, y: _train(opt, p, s, x, y))(
        sharded_params, state, sharded_xs, sharded_ys
    )
    _assert_trees_close(new_params, expected)
    _assert_state_follows_params(new_state, sharded_params)
    assert new_params["w"].sharding.is_equivalent_to(param_shardings["w"], 2)
