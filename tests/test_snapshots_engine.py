"""train_snapshots on the engine: both execution strategies give the same numbers, "auto"
chooses by backend and convolution, the programs live in the engine's weak compile cache."""

import functools
import gc
import weakref

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lrjax
from lrjax._engine import PROGRAMS

RNG = np.random.default_rng(1)
STEPS = 12
X = RNG.normal(size=(STEPS, 8, 3)).astype(np.float32)
Y = (X @ np.array([1.0, -2.0, 0.5], np.float32)).astype(np.float32)
DATA = {"x": X, "y": Y}
PARAMS = {"w": jnp.zeros(3), "b": jnp.zeros(())}
SGD = functools.partial(optax.sgd, momentum=0.9)
KW = dict(num_steps=STEPS, num_cycles=3, init_value=0.05)
TRACES = []


def mse(params, batch):
    TRACES.append(1)  # once per trace
    return jnp.mean((batch["x"] @ params["w"] + params["b"] - batch["y"]) ** 2)


def assert_same(a, b):
    assert a.steps.tolist() == b.steps.tolist()
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6),
                 (a.params, a.state, a.aux), (b.params, b.state, b.aux))
    np.testing.assert_allclose(a.losses, b.losses, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(a.learning_rates, b.learning_rates)


def test_host_and_compiled_give_the_same_snapshots_for_params():
    one_device = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("data",))
    compiled = lrjax.train_snapshots(mse, PARAMS, SGD, DATA, execution="compiled",
                                     devices=lrjax.Devices(one_device), **KW)
    host = lrjax.train_snapshots(mse, PARAMS, SGD, DATA, execution="host", devices=lrjax.Devices(one_device), **KW)
    assert (compiled.execution, host.execution) == ("compiled", "host")
    assert_same(host, compiled)
    # sharded over the devices (batch 8) and as a data function: the same numbers
    sharded = lrjax.train_snapshots(mse, PARAMS, SGD, DATA, execution="host", **KW)
    function = lrjax.train_snapshots(mse, PARAMS, SGD, lambda k, i: jax.tree.map(
        lambda x: jnp.asarray(x)[i], DATA), execution="host", **KW)
    assert_same(sharded, compiled)
    assert_same(function, compiled)


def test_host_and_compiled_give_the_same_snapshots_with_state_dropout_and_aux():
    def loss_fn(params, state, batch, key):
        keep = jax.random.bernoulli(key, 0.8, batch["x"].shape)
        x = jnp.where(keep, batch["x"] / 0.8, 0.0)
        new_state = 0.9 * state + 0.1 * jnp.mean(x, axis=0)
        loss = jnp.mean((x @ params["w"] + params["b"] - batch["y"]) ** 2)
        return loss, (new_state, {"kept": jnp.mean(keep)})

    run = functools.partial(lrjax.train_snapshots, loss_fn, PARAMS, SGD, DATA, state=jnp.zeros(3),
                            stochastic=True, has_aux=True, key=jax.random.key(5),
                            accumulation_steps=1, **KW)
    compiled, host = run(execution="compiled"), run(execution="host")
    assert compiled.state.shape == (3, 3) and compiled.aux["kept"].shape == (STEPS,)
    assert_same(host, compiled)
    assert 0.5 < float(np.mean(host.aux["kept"])) < 1.0  # the mask was drawn: a real key


def conv_loss(params, batch):
    x = batch["x"][:, None]  # NCHW, one channel
    y = jax.lax.conv_general_dilated(x, params["k"], (1, 1), "SAME")
    return jnp.mean((jnp.mean(y, axis=(1, 2, 3)) - batch["y"]) ** 2)


def test_auto_runs_a_conv_model_on_the_host_and_an_mlp_compiled_on_cpu():
    assert jax.default_backend() == "cpu"
    data = {"x": RNG.normal(size=(4, 2, 4, 4)).astype(np.float32),
            "y": np.zeros((4, 2), np.float32)}
    conv_params = {"k": jnp.ones((2, 1, 3, 3)) * 0.1}
    kw = dict(num_steps=4, num_cycles=2, init_value=0.01)
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("data",))
    auto = lrjax.train_snapshots(conv_loss, conv_params, SGD, data, devices=lrjax.Devices(mesh), **kw)
    assert auto.execution == "host"
    assert_same(auto, lrjax.train_snapshots(conv_loss, conv_params, SGD, data, devices=lrjax.Devices(mesh),
                                            execution="compiled", **kw))
    assert lrjax.train_snapshots(mse, PARAMS, SGD, DATA, **KW).execution == "compiled"


@pytest.mark.parametrize("execution", ["compiled", "host"])
def test_a_repeated_call_never_recompiles_and_clear_caches_forces_it(execution):
    run = functools.partial(lrjax.train_snapshots, mse, PARAMS, SGD, execution=execution,
                            num_steps=STEPS, num_cycles=3)
    first = run(DATA, init_value=0.05)
    builds, traces = PROGRAMS.builds, len(TRACES)
    # new init_value and data values: runtime inputs, the same programs, no trace at all
    again = run({"x": X * 0.5, "y": Y}, init_value=0.02)
    assert (PROGRAMS.builds, len(TRACES)) == (builds, traces)
    assert not np.allclose(again.params["w"], first.params["w"])
    # an equal partial is the same key
    lrjax.train_snapshots(mse, PARAMS, functools.partial(optax.sgd, momentum=0.9), DATA,
                          execution=execution, **KW)
    assert (PROGRAMS.builds, len(TRACES)) == (builds, traces)
    lrjax.clear_caches()
    rebuilt = run(DATA, init_value=0.05)
    assert PROGRAMS.builds > builds and len(TRACES) > traces
    assert_same(rebuilt, first)


def test_auto_choice_is_cached_too():
    lrjax.train_snapshots(mse, PARAMS, SGD, DATA, **KW)
    builds, traces = PROGRAMS.builds, len(TRACES)
    assert lrjax.train_snapshots(mse, PARAMS, SGD, DATA, **KW).execution == "compiled"
    assert (PROGRAMS.builds, len(TRACES)) == (builds, traces)


@pytest.mark.parametrize("execution", ["compiled", "host"])
def test_the_cache_does_not_keep_the_loss_fn_alive(execution):
    def make_loss():
        def loss(params, batch):
            return jnp.mean((batch["x"] @ params["w"] + params["b"] - batch["y"]) ** 2)
        return loss

    loss = make_loss()
    schedule = lrjax.sgdr(0.05, period=4, period_mult=2.0)
    result = lrjax.train_snapshots(loss, PARAMS, SGD, DATA, num_steps=STEPS, num_cycles=2,
                                   schedule=schedule, execution=execution)
    assert result.execution == execution
    size = len(PROGRAMS)
    loss_ref, schedule_ref = weakref.ref(loss), weakref.ref(schedule)
    del loss, schedule, result
    gc.collect()
    assert loss_ref() is None and schedule_ref() is None
    assert len(PROGRAMS) == size - 1  # its entry went with it


@pytest.mark.parametrize("execution", ["compiled", "host"])
def test_user_params_and_state_are_never_mutated_or_donated(execution):
    params = {"w": jnp.ones(3), "b": jnp.zeros(())}
    state = jnp.zeros(3)
    before = jax.tree.map(np.array, (params, state))

    def loss_fn(p, s, batch):
        return mse(p, batch), s + 1.0

    result = lrjax.train_snapshots(loss_fn, params, SGD, DATA, state=state,
                                   execution=execution, **KW)
    assert not any(x.is_deleted() for x in jax.tree.leaves((params, state)))
    jax.tree.map(np.testing.assert_array_equal, (params, state), before)
    np.testing.assert_array_equal(result.state[:, 0], result.steps + 1.0)


def test_bad_execution_is_refused():
    with pytest.raises(ValueError, match="execution"):
        lrjax.train_snapshots(mse, PARAMS, SGD, DATA, execution="scan", **KW)
