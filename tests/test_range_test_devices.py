"""Multi-device: an 8-device mesh equals one device; the train step under jax.pmap."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh

import lrjax
from lrjax._engine.data import _resolve_mesh

STEPS = 20
RNG = np.random.default_rng(2)
X = RNG.normal(size=(STEPS, 16, 3)).astype(np.float32)  # batch 16: divides 8 devices
Y = (X @ np.array([1.0, -1.0, 2.0], np.float32)).astype(np.float32)
PARAMS = {"w": jnp.zeros(3, jnp.float32), "b": jnp.zeros((), jnp.float32)}
RANGE = dict(min_lr=1e-3, max_lr=20.0, num_steps=STEPS, smoothing=0.7)


def mse(params, batch):
    x, y = batch
    return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)


@pytest.fixture(scope="module")
def meshes():
    if jax.device_count() < 8:
        pytest.skip("needs 8 (simulated) devices")
    devices = np.asarray(jax.devices()[:8])
    return {"one": Mesh(devices[:1], ("data",)), "eight": Mesh(devices, ("data",)),
            "grid": Mesh(devices.reshape(4, 2), ("data", "model"))}


@pytest.fixture(scope="module")
def single(meshes):
    return lrjax.range_test(mse, PARAMS, optax.adam, (X, Y), devices=lrjax.Devices(meshes["one"]), **RANGE)


def assert_close(a, b):
    np.testing.assert_allclose(a.losses, b.losses, rtol=2e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(a.diverged_at), np.asarray(b.diverged_at))


def test_default_uses_all_devices_when_the_batch_divides(meshes, single):
    assert _resolve_mesh(None, "data", {16}).size == 8
    assert _resolve_mesh(None, "data", {12}) is None  # 12 % 8 != 0: one device
    result = lrjax.range_test(mse, PARAMS, optax.adam, (X, Y), **RANGE)  # mesh=None
    assert_close(result, single)


def test_two_axis_mesh_shards_the_batch_over_data(meshes, single):
    assert_close(lrjax.range_test(mse, PARAMS, optax.adam, (X, Y), devices=lrjax.Devices(meshes["grid"]), **RANGE), single)


def test_iterable_and_function_data_on_eight_devices(meshes, single):
    listed = lrjax.range_test(mse, PARAMS, optax.adam, list(zip(X, Y)), devices=lrjax.Devices(meshes["eight"]),
                              chunk_size=8, **RANGE)
    assert_close(listed, single)
    generated = lrjax.range_test(mse, PARAMS, optax.adam, lambda key, i: (jnp.asarray(X)[i], jnp.asarray(Y)[i]),
                                 devices=lrjax.Devices(meshes["eight"]), **RANGE)
    assert_close(generated, single)


def test_seeds_and_validation_on_eight_devices(meshes):
    def init(key):
        return {"w": jax.random.normal(key, (3,)), "b": jnp.zeros(())}

    options = dict(init_fn=init, num_seeds=2, val_data=(X[0], Y[0]), **RANGE)
    one = lrjax.range_test(mse, None, optax.adam, (X, Y), devices=lrjax.Devices(meshes["one"]), **options)
    eight = lrjax.range_test(mse, None, optax.adam, (X, Y), devices=lrjax.Devices(meshes["eight"]), **options)
    assert_close(eight, one)
    np.testing.assert_allclose(eight.val_losses, one.val_losses, rtol=2e-5, atol=1e-6)


def test_mesh_errors(meshes):
    with pytest.raises(ValueError, match="divisible"):
        lrjax.range_test(mse, PARAMS, optax.adam, (X[:, :12], Y[:, :12]), devices=lrjax.Devices(meshes["eight"]), **RANGE)
    with pytest.raises(ValueError, match="data_axis"):
        lrjax.range_test(mse, PARAMS, optax.adam, (X, Y), devices=lrjax.Devices(meshes["eight"], "batch"), **RANGE)


def test_train_step_under_pmap_equals_full_batch(meshes):
    ramp = lrjax.lr_ramp(1e-2, 1.0, 3)
    replicated = lrjax.engine.make_train_step(mse, optax.adam, ramp, axis_name="devices")
    plain = lrjax.engine.make_train_step(mse, optax.adam, ramp)
    state = plain.init(PARAMS)
    params, pstate = PARAMS, state
    stacked = jax.tree.map(lambda x: jnp.stack([x] * 8), (PARAMS, state))
    pmapped = jax.pmap(replicated.step, axis_name="devices")
    step = jax.jit(plain.step)
    for t in range(3):
        # Each device sees 2 of the 16 examples; pmean of per-device mean gradients = full mean.
        shards = (X[t].reshape(8, 2, 3), Y[t].reshape(8, 2))
        p_params, p_state, p_loss, _ = pmapped(*stacked, shards)
        stacked = (p_params, p_state)
        params, pstate, loss, _ = step(params, pstate, (X[t], Y[t]))
        np.testing.assert_allclose(p_loss, np.full(8, loss), rtol=1e-5)
        for leaf_p, leaf in zip(jax.tree.leaves(p_params), jax.tree.leaves(params)):
            np.testing.assert_allclose(leaf_p, np.broadcast_to(leaf, leaf_p.shape), rtol=1e-5, atol=1e-7)


def test_train_step_accumulation_equals_big_batch():
    acc = lrjax.engine.make_train_step(mse, optax.sgd, 0.1, accumulation_steps=4)
    big = lrjax.engine.make_train_step(mse, optax.sgd, 0.1)
    micro = (X[0].reshape(4, 4, 3), Y[0].reshape(4, 4))
    p_acc, _, loss_acc, _ = acc.step(PARAMS, acc.init(PARAMS), micro)
    p_big, _, loss_big, _ = big.step(PARAMS, big.init(PARAMS), (X[0], Y[0]))
    np.testing.assert_allclose(loss_acc, loss_big, rtol=1e-6)
    np.testing.assert_allclose(p_acc["w"], p_big["w"], rtol=1e-5)


def bn_dropout_loss(params, state, batch, *, key):
    """A running input mean as state (BatchNorm's shape) and a dropout mask per step."""
    x, y = batch
    mean = 0.5 * state["mean"] + 0.5 * jnp.mean(x, axis=0)
    mask = jax.random.bernoulli(key, 0.7, (3,)).astype(x.dtype)
    loss = jnp.mean((((x - mean) * mask) @ params["w"] + params["b"] - y) ** 2)
    return loss, {"mean": mean}


def test_state_and_dropout_keys_on_eight_devices(meshes):
    common = dict(state={"mean": jnp.zeros(3)}, stochastic=True, key=3, **RANGE)
    one = lrjax.range_test(bn_dropout_loss, PARAMS, optax.adam, (X, Y), devices=lrjax.Devices(meshes["one"]),
                           **common)
    eight = lrjax.range_test(bn_dropout_loss, PARAMS, optax.adam, (X, Y), devices=lrjax.Devices(meshes["eight"]),
                             **common)
    assert_close(eight, one)


def test_a_smaller_last_batch_is_refused_before_it_reaches_the_devices(meshes):
    batches = list(zip(X, Y))[: STEPS - 1] + [(X[-1, :12], Y[-1, :12])]
    with pytest.raises(ValueError, match="batch 19 has leaf shapes"):
        lrjax.range_test(mse, PARAMS, optax.adam, batches, chunk_size=5, **RANGE)


def test_nnx_dropout_model_on_eight_devices(meshes):
    nnx = pytest.importorskip("flax.nnx")
    model = nnx.Sequential(nnx.Linear(3, 4, rngs=nnx.Rngs(0)), nnx.Dropout(0.3, rngs=nnx.Rngs(1)),
                           nnx.Linear(4, 1, rngs=nnx.Rngs(2)))

    def loss_fn(m, batch):
        x, y = batch
        return jnp.mean((m(x)[:, 0] - y) ** 2)

    one = lrjax.range_test(loss_fn, model, optax.adam, (X, Y), devices=lrjax.Devices(meshes["one"]),
                           val_data=(X[0], Y[0]), **RANGE)
    eight = lrjax.range_test(loss_fn, model, optax.adam, (X, Y), val_data=(X[0], Y[0]), **RANGE)
    assert_close(eight, one)
    np.testing.assert_allclose(eight.val_losses, one.val_losses, rtol=2e-5, atol=1e-6)
