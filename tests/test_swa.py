"""SWA: the running mean against numpy means of the iterates (plain, chain, MultiSteps,
inject_hyperparams), no recompiles, sharding on 8 devices, update_batch_stats against a
hand computation, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import lrjax

RNG = np.random.default_rng(1)
GRADS = RNG.normal(size=(12, 4, 3)).astype(np.float32)
P0 = {"w": jnp.asarray(RNG.normal(size=(4, 3)), jnp.float32), "b": jnp.zeros(3)}


def wrapped(where, start_step, every_steps):
    """An optimizer with swa at ``where``, and how many micro-steps make one update."""
    inner = optax.sgd(0.1, momentum=0.9)
    if where == "plain":
        return lrjax.swa(inner, start_step, every_steps), 1
    if where == "chain":
        return optax.chain(optax.clip_by_global_norm(2.0),
                           lrjax.swa(inner, start_step, every_steps)), 1
    if where == "multisteps":
        return optax.MultiSteps(lrjax.swa(inner, start_step, every_steps), every_k_schedule=2), 2
    factory = lambda learning_rate: lrjax.swa(optax.sgd(learning_rate, momentum=0.9),  # noqa
                                              start_step, every_steps)
    return optax.inject_hyperparams(factory)(learning_rate=0.1), 1


@pytest.mark.parametrize("where, start_step, every_steps", [
    ("plain", 0, 1), ("plain", 4, 3), ("chain", 3, 2), ("multisteps", 1, 2), ("inject", 2, 1),
])
def test_swa_params_is_the_numpy_mean_of_the_chosen_iterates(where, start_step, every_steps):
    tx, micro = wrapped(where, start_step, every_steps)
    traces = []

    @jax.jit
    def step(params, state, grads):
        traces.append(1)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    params, state = P0, jax.jit(tx.init)(P0)
    iterates = []  # the params after each real update t = 0, 1, ...
    for i, g in enumerate(GRADS):
        params, state = step(params, state, {"w": g, "b": g[0]})
        if (i + 1) % micro == 0:
            iterates.append(jax.tree.map(np.asarray, params))
    assert len(traces) == 1  # one compile for all 12 calls
    chosen = [p for t, p in enumerate(iterates) if t >= start_step and (t - start_step) %
              every_steps == 0]
    want = jax.tree.map(lambda *xs: np.mean(np.stack(xs).astype(np.float64), axis=0), *chosen)
    got = lrjax.swa_params(state)
    np.testing.assert_allclose(got["w"], want["w"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["b"], want["b"], rtol=1e-5, atol=1e-6)
    assert int(lrjax.swa_state(state).num_averaged) == len(chosen)
    # updates pass through: the trajectory is the inner optimizer's own
    plain = {"plain": optax.sgd(0.1, momentum=0.9)}.get(where)
    if plain is not None:
        p, s = P0, plain.init(P0)
        for g in GRADS:
            u, s = plain.update({"w": g, "b": g[0]}, s, p)
            p = optax.apply_updates(p, u)
        np.testing.assert_allclose(params["w"], p["w"], rtol=1e-6)


def test_before_start_the_average_is_the_initial_params_and_a_copy():
    tx = lrjax.swa(optax.sgd(0.1), start_step=100)
    state = tx.init(P0)
    _, state = tx.update(jax.tree.map(jnp.ones_like, P0), state, P0)
    np.testing.assert_array_equal(lrjax.swa_params(state)["w"], P0["w"])
    assert int(state.num_averaged) == 0 and int(state.count) == 1


def test_state_is_sharded_like_the_params(num_devices):
    mesh = Mesh(np.asarray(jax.devices()).reshape(num_devices), ("d",))
    sharding = NamedSharding(mesh, PartitionSpec("d", None))
    params = {"w": jax.device_put(jnp.arange(num_devices * 3.0).reshape(num_devices, 3), sharding)}
    tx = lrjax.swa(optax.adam(0.1), start_step=0)
    state = jax.jit(tx.init)(params)
    assert lrjax.swa_params(state)["w"].sharding.is_equivalent_to(sharding, 2)

    @jax.jit
    def step(p, s):
        updates, s = tx.update(jax.tree.map(jnp.ones_like, p), s, p)
        return optax.apply_updates(p, updates), s

    params2, state = step(params, state)
    mean = lrjax.swa_params(state)["w"]
    assert mean.sharding.is_equivalent_to(sharding, 2)
    np.testing.assert_allclose(mean, params2["w"], rtol=1e-6)  # one iterate: its own mean
    eager = tx.init(params)  # eager init keeps the sharding too
    assert lrjax.swa_params(eager)["w"].sharding.is_equivalent_to(sharding, 2)


def test_update_batch_stats_matches_a_hand_computation_for_flax_linen():
    nn = pytest.importorskip("flax.linen")

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x, train):
            x = nn.Dense(4)(x)
            x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
            return nn.Dense(2)(nn.relu(x))

    net = Net()
    x = RNG.normal(size=(5, 16, 3)).astype(np.float32) * 3 + 1  # 5 batches of 16
    variables = net.init(jax.random.key(0), x[0], train=False)
    params, stats = variables["params"], variables["batch_stats"]

    def bn_update(p, s, batch):
        _, new = net.apply({"params": p, "batch_stats": s}, batch, train=True,
                           mutable=["batch_stats"])
        return new["batch_stats"]

    dense = params["Dense_0"]
    hidden = x.astype(np.float64) @ np.asarray(dense["kernel"]) + np.asarray(dense["bias"])
    want_mean = hidden.mean(axis=1).mean(axis=0)  # equal-weight mean of per-batch means
    want_var = hidden.var(axis=1).mean(axis=0)  # Flax's (biased) per-batch variances
    for momentum in (None, 0.9):
        got = lrjax.update_batch_stats(bn_update, params, stats, x, momentum=momentum)
        np.testing.assert_allclose(got["BatchNorm_0"]["mean"], want_mean, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got["BatchNorm_0"]["var"], want_var, rtol=1e-4, atol=1e-5)
    as_list = lrjax.update_batch_stats(bn_update, params, stats, list(x))
    np.testing.assert_allclose(as_list["BatchNorm_0"]["var"], want_var, rtol=1e-4)
    np.testing.assert_array_equal(stats["BatchNorm_0"]["mean"], 0.0)  # input not modified


@pytest.mark.parametrize("call, name", [
    (lambda: lrjax.swa(optax.sgd(0.1), start_step=-1), "start_step"),
    (lambda: lrjax.swa(optax.sgd(0.1), start_step=1.5), "start_step"),
    (lambda: lrjax.swa(optax.sgd(0.1), start_step=0, every_steps=0), "every_steps"),
    (lambda: lrjax.swa(optax.sgd(0.1), start_step=0, every_steps=True), "every_steps"),
    (lambda: lrjax.swa(optax.sgd, start_step=0), "inner"),
    (lambda: lrjax.swa_params(optax.sgd(0.1).init(P0)), "SWA state"),
    (lambda: lrjax.swa_params((lrjax.swa(optax.sgd(0.1), 0).init(P0),) * 2), "exactly one"),
    (lambda: lrjax.swa(optax.sgd(0.1), 0).update(P0, lrjax.swa(optax.sgd(0.1), 0).init(P0)),
     "params"),
    (lambda: lrjax.update_batch_stats(lambda p, s, b: s, {}, {"m": jnp.zeros(2)}, jnp.ones((2, 3)),
                                      momentum=1.0), "momentum"),
    (lambda: lrjax.update_batch_stats(lambda p, s, b: s, {}, {"m": jnp.zeros(2)}, jnp.ones((2, 3))),
     "momentum"),  # apply_fn that never moves the statistic: m = 1 measured
])
def test_bad_input_names_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()
