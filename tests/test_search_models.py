"""make_train_fn on every model kind: nnx (Dropout, BatchNorm), linen state + dropout keys,
Equinox state, halving with state, host == compiled execution, the compile cache, bad input."""

import gc
import weakref

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lrjax
from lrjax._engine import PROGRAMS

nnx = pytest.importorskip("flax.nnx")

STEPS = 6
X = jax.random.normal(jax.random.key(0), (3, 16, 4))
DATA = {"x": X, "y": X @ jnp.array([1.0, -2.0, 0.5, 0.0])}  # 3 batches of 16 rows
FIRST = jax.tree.map(lambda a: a[0], DATA)


def _h(**values):
    return {k: jnp.float32(v) for k, v in values.items()}


def _mse(pred, batch):
    return jnp.mean((pred - batch["y"]) ** 2)


class Net(nnx.Module):
    """Linear -> BatchNorm -> relu -> Dropout -> Linear; params from key 0, dropout from ``key``.

    The first Linear has no bias: under BatchNorm its gradient is rounding noise, which
    Adam would amplify into differences between two equal computations.
    """

    def __init__(self, key, rate=0.5):
        self.fc = nnx.Linear(4, 8, use_bias=False, rngs=nnx.Rngs(0))  # no bias before BN
        self.bn = nnx.BatchNorm(8, momentum=0.5, rngs=nnx.Rngs(0))
        self.drop = nnx.Dropout(rate, rngs=nnx.Rngs(dropout=key))
        self.out = nnx.Linear(8, 1, rngs=nnx.Rngs(1))

    def __call__(self, x):
        return self.out(self.drop(nnx.relu(self.bn(self.fc(x)))))[:, 0]


def _nnx_loss(model, batch):
    return _mse(model(batch["x"]), batch)


def test_nnx_dropout_and_batchnorm_trials_and_eval_mode():
    modes = []

    def eval_fn(model):  # runs while tracing: records the mode the model is in
        modes.append((model.drop.deterministic, model.bn.use_running_average))
        return {"eval_loss": _nnx_loss(model, FIRST), "bn_mean": jnp.mean(model.bn.mean[...])}

    def make(rate):
        return lrjax.make_train_fn(_nnx_loss, lambda k: Net(k, rate),
                                   lambda h: optax.adam(h["lr"]), DATA, num_steps=STEPS,
                                   eval_fn=eval_fn, shuffle=False, loss_window=STEPS)

    space = {"lr": lrjax.choice([0.01])}  # every trial the same hparams and params init
    dropped = lrjax.search(make(0.5), space, num_trials=3, method="random", key=0)
    plain = lrjax.search(make(0.0), space, num_trials=3, method="random", key=0)
    assert modes and all(mode == (True, True) for mode in modes)  # eval_fn sees eval mode
    values = [t["metrics"]["train_loss"] for t in dropped.trials]
    # Same params, same data order: only the dropout masks (drawn from each trial's key)
    # make the trials differ; without dropout they are equal.
    assert len(set(np.round(values, 6))) == 3
    np.testing.assert_allclose([t["metrics"]["train_loss"] for t in plain.trials],
                               plain.trials[0]["metrics"]["train_loss"], rtol=1e-6)
    # BatchNorm's running mean was threaded through the steps (it starts at zero).
    assert all(abs(t["metrics"]["bn_mean"]) > 1e-3 for t in dropped.trials)

    # The trial equals nnx's own stateful training (nnx.Optimizer) from the same key.
    trial = dropped.trials[1]
    init_key, _ = jax.random.split(lrjax.tuning.trial_key(0, trial["number"]))
    model = Net(init_key, 0.5)
    optimizer = nnx.Optimizer(model, optax.adam(0.01), wrt=nnx.Param)
    losses = []
    for t in range(STEPS):
        batch = jax.tree.map(lambda a: a[t % 3], DATA)
        loss, grads = nnx.value_and_grad(_nnx_loss)(model, batch)
        optimizer.update(model, grads)
        losses.append(float(loss))
    model.eval()
    np.testing.assert_allclose(trial["metrics"]["train_loss"], np.mean(losses), rtol=1e-5)
    np.testing.assert_allclose(trial["metrics"]["eval_loss"], float(_nnx_loss(model, FIRST)),
                               rtol=1e-5)


def test_linen_state_and_dropout_key_equal_a_hand_written_loop():
    linen = pytest.importorskip("flax.linen")

    class Mlp(linen.Module):
        @linen.compact
        def __call__(self, x, train):
            x = linen.Dense(8, use_bias=False)(x)
            x = linen.BatchNorm(use_running_average=not train, momentum=0.5)(x)
            x = linen.Dropout(0.3, deterministic=not train)(linen.relu(x))
            return linen.Dense(1)(x)[:, 0]

    net = Mlp()

    def init_fn(key):
        variables = net.init(key, X[0], train=False)
        return variables["params"], {"batch_stats": variables["batch_stats"]}

    def loss_fn(params, state, batch, key):
        pred, updates = net.apply({"params": params, **state}, batch["x"], train=True,
                                  rngs={"dropout": key}, mutable=["batch_stats"])
        return _mse(pred, batch), updates

    def eval_fn(params, state):
        return _mse(net.apply({"params": params, **state}, FIRST["x"], train=False), FIRST)

    train_fn = lrjax.make_train_fn(loss_fn, init_fn, lambda h: optax.adam(h["lr"]), DATA,
                                   num_steps=STEPS, eval_fn=eval_fn, has_state=True,
                                   stochastic=True, loss_window=STEPS)
    result = lrjax.search(train_fn, {"lr": lrjax.log_uniform(1e-3, 1e-1)}, num_trials=2, key=4)

    # The documented training, written out: split(key, 3) = init, data, loss keys.
    trial = result.trials[1]
    init_key, data_key, loss_key = jax.random.split(lrjax.tuning.trial_key(4, 1), 3)
    params, state = init_fn(init_key)
    tx = optax.adam(trial["params"]["lr"])
    opt_state = tx.init(params)
    order = np.asarray(jax.random.permutation(data_key, 3))
    losses = []
    for t in range(STEPS):
        batch = jax.tree.map(lambda a: a[order[t % 3]], DATA)
        (loss, state), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, state, batch, jax.random.fold_in(loss_key, t))
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        losses.append(float(loss))
    np.testing.assert_allclose(trial["metrics"]["train_loss"], np.mean(losses), rtol=1e-5)
    np.testing.assert_allclose(trial["value"], float(eval_fn(params, state)), rtol=1e-5)


def test_equinox_model_with_batchnorm_state():
    eqx = pytest.importorskip("equinox")

    class Model(eqx.Module):
        fc: eqx.nn.Linear
        bn: eqx.nn.BatchNorm
        out: eqx.nn.Linear

        def __init__(self, key):
            k1, k2 = jax.random.split(key)
            self.fc = eqx.nn.Linear(4, 8, use_bias=False, key=k1)
            self.bn = eqx.nn.BatchNorm(8, axis_name="batch", momentum=0.5, mode="batch")
            self.out = eqx.nn.Linear(8, 1, key=k2)

        def __call__(self, x, state):
            h, state = self.bn(self.fc(x), state)
            return self.out(jax.nn.relu(h))[0], state

    def loss_fn(model, state, batch):
        pred, state = jax.vmap(model, axis_name="batch", in_axes=(0, None),
                               out_axes=(0, None))(batch["x"], state)
        return _mse(pred, batch), state

    inference = []

    def eval_fn(model, state):
        inference.append(model.bn.inference)
        pred, _ = jax.vmap(model, axis_name="batch", in_axes=(0, None),
                           out_axes=(0, None))(FIRST["x"], state)
        return _mse(pred, FIRST)

    init_fn = eqx.nn.make_with_state(Model)
    train_fn = lrjax.make_train_fn(loss_fn, init_fn, lambda h: optax.adam(h["lr"]), DATA,
                                   num_steps=STEPS, eval_fn=eval_fn, has_state=True,
                                   loss_window=STEPS)
    assert train_fn.kind == "equinox"
    result = lrjax.search(train_fn, {"lr": lrjax.log_uniform(1e-3, 1e-1)}, num_trials=2, key=2)
    assert inference and all(inference)
    # A hand-written Equinox loop from the same key gives the same trial.
    trial = result.trials[0]
    init_key, data_key = jax.random.split(lrjax.tuning.trial_key(2, 0))
    model, state = init_fn(init_key)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    tx = optax.adam(trial["params"]["lr"])
    opt_state = tx.init(params)
    order = np.asarray(jax.random.permutation(data_key, 3))

    @jax.jit
    def step(params, opt_state, state, batch):
        (loss, state), grads = jax.value_and_grad(
            lambda p: loss_fn(eqx.combine(p, static), state, batch), has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, state, loss

    losses = []
    for t in range(STEPS):
        params, opt_state, state, loss = step(params, opt_state, state,
                                              jax.tree.map(lambda a: a[order[t % 3]], DATA))
        losses.append(float(loss))
    np.testing.assert_allclose(trial["metrics"]["train_loss"], np.mean(losses), rtol=1e-5)
    final = eqx.nn.inference_mode(eqx.combine(params, static))
    np.testing.assert_allclose(trial["value"], float(eval_fn(final, state)), rtol=1e-5)


def _stateful_regression(num_steps=8, **kwargs):
    """Params + a running mean of the inputs as state; the loss depends on the state."""

    def loss_fn(w, state, batch):
        mean = 0.5 * state["mean"] + 0.5 * jnp.mean(batch["x"], axis=0)
        return jnp.mean((batch["x"] @ w + mean @ w - batch["y"]) ** 2), {"mean": mean}

    def init_fn(key):
        return jax.random.normal(key, (4,)), {"mean": jnp.zeros(4)}

    return lrjax.make_train_fn(loss_fn, init_fn, lambda h: optax.sgd(h["lr"], momentum=0.5),
                               DATA, num_steps=num_steps, has_state=True, loss_window=2,
                               eval_fn=lambda w, s: jnp.sum(s["mean"] ** 2) + jnp.sum(w ** 2),
                               **kwargs)


def test_halving_carries_the_model_state_between_rungs():
    train_fn = _stateful_regression()
    result = lrjax.successive_halving(train_fn, {"lr": lrjax.log_uniform(1e-3, 1e-1)},
                                      num_trials=4, reduction_factor=2, min_steps=2, key=3)
    assert sorted(t["steps"] for t in result.trials) == [2, 2, 4, 8]
    # Each survivor equals the same trial trained without stops (the state carried on; a
    # reset state at a rung would change its running mean and so the eval metric).
    alone = jax.jit(train_fn)
    for trial in result.trials:
        if trial["steps"] == 8:
            whole = alone(_h(**trial["params"]), lrjax.tuning.trial_key(3, trial["number"]))
            np.testing.assert_allclose(trial["value"], float(whole["eval_loss"]), rtol=1e-5)
    state = train_fn.init(_h(lr=0.01), jax.random.key(0))
    assert set(state.state) == {"mean"}  # the TrialState holds the model state


def _tiny_cnn(execution="auto"):
    def init_fn(key):
        return {"k": 0.3 * jax.random.normal(key, (3, 3, 1, 2)), "d": jnp.full((32,), 0.1)}

    def loss_fn(p, batch):
        h = jax.lax.conv_general_dilated(batch["x"], p["k"], (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jnp.mean((jnp.tanh(h).reshape(h.shape[0], -1) @ p["d"] - batch["y"]) ** 2)

    x = jax.random.normal(jax.random.key(1), (3, 8, 4, 4, 1))
    data = {"x": x, "y": x.mean(axis=(2, 3, 4))}
    return lrjax.make_train_fn(loss_fn, init_fn, lambda h: optax.adam(h["lr"]), data,
                               num_steps=STEPS, execution=execution,
                               eval_fn=lambda p: jnp.sum(p["d"] ** 2))


def test_auto_execution_host_for_convolutions_on_cpu_compiled_for_mlps():
    expected = "host" if jax.default_backend() == "cpu" else "compiled"
    assert _tiny_cnn().execution == expected
    assert _stateful_regression().execution == "compiled"
    assert _tiny_cnn("compiled").execution == "compiled"
    with pytest.raises(ValueError, match="execution must be one of"):
        _tiny_cnn("python")


@pytest.mark.parametrize("vectorize", ["loop", "vmap"])
def test_host_and_compiled_execution_give_the_same_trials(vectorize):
    space = {"lr": lrjax.log_uniform(1e-3, 1e-1)}
    host, compiled = _tiny_cnn("host"), _tiny_cnn("compiled")
    a = lrjax.search(host, space, num_trials=3, key=5, vectorize=vectorize)
    b = lrjax.search(compiled, space, num_trials=3, key=5, vectorize=vectorize)
    for x, y in zip(a.trials, b.trials):
        assert x["params"] == y["params"]
        for name in x["metrics"]:
            np.testing.assert_allclose(x["metrics"][name], y["metrics"][name], rtol=1e-5)
    if vectorize == "vmap":  # successive halving on both paths: the same trials
        halve = dict(num_trials=4, reduction_factor=2, min_steps=3, key=1)
        a = lrjax.successive_halving(host, space, **halve)
        b = lrjax.successive_halving(compiled, space, **halve)
        for x, y in zip(a.trials, b.trials):
            assert x["steps"] == y["steps"] and x["state"] == y["state"]
            np.testing.assert_allclose(x["value"], y["value"], rtol=1e-5)


@pytest.mark.parametrize("execution", ["host", "compiled"])
def test_repeated_search_does_not_recompile_until_clear_caches(execution):
    traces = []
    base = _tiny_cnn(execution)
    loss_fn = base.loss_fn

    def counted(p, batch):
        traces.append(1)  # runs only while JAX traces the loss
        return loss_fn(p, batch)

    train_fn = lrjax.make_train_fn(counted, base.init_fn, base.optimizer_fn, base.data,
                                   num_steps=STEPS, execution=execution)
    space = {"lr": lrjax.log_uniform(1e-3, 1e-1)}
    lrjax.search(train_fn, space, num_trials=2, key=0)
    traced, built = len(traces), PROGRAMS.builds
    again = lrjax.search(train_fn, space, num_trials=2, key=1)
    assert len(traces) == traced and PROGRAMS.builds == built and len(again.trials) == 2
    assert not any("lrjax" in name for name in vars(train_fn.loss_fn))  # nothing stored on it
    lrjax.clear_caches()
    lrjax.search(train_fn, space, num_trials=2, key=0)
    assert len(traces) > traced  # compiled anew
    lrjax.successive_halving(train_fn, space, num_trials=2, reduction_factor=2, min_steps=3)
    # The cache holds the train_fn weakly: dropping it frees it and its programs.
    ref, entries = weakref.ref(train_fn), len(PROGRAMS)
    del train_fn
    gc.collect()
    assert ref() is None and len(PROGRAMS) < entries


def test_accumulation_equals_one_batch_of_all_micro_batches():
    loss_fn = lambda w, b: jnp.mean((b["x"] @ w - b["y"]) ** 2)  # noqa: E731
    init_fn = lambda k: jax.random.normal(k, (4,))  # noqa: E731
    micro = jax.tree.map(lambda a: a.reshape(3, 2, 8, *a.shape[2:]), DATA)
    h, key = _h(lr=0.05), jax.random.key(3)
    whole = lrjax.make_train_fn(loss_fn, init_fn, lambda h: optax.adam(h["lr"]), DATA,
                                num_steps=STEPS)(h, key)
    split = lrjax.make_train_fn(loss_fn, init_fn, lambda h: optax.adam(h["lr"]), micro,
                                num_steps=STEPS, accumulation_steps=2)(h, key)
    np.testing.assert_allclose(split["train_loss"], whole["train_loss"], rtol=1e-5)
    with_aux = lrjax.make_train_fn(lambda w, b: (loss_fn(w, b), {"w0": w[0]}), init_fn,
                                   lambda h: optax.adam(h["lr"]), micro, num_steps=STEPS,
                                   accumulation_steps=2, has_aux=True)(h, key)
    np.testing.assert_allclose(with_aux["train_loss"], whole["train_loss"], rtol=1e-5)
    with pytest.raises(ValueError, match=r"accumulation_steps=2.*\(batches, 2, micro_batch"):
        lrjax.make_train_fn(loss_fn, init_fn, lambda h: optax.adam(h["lr"]), DATA,
                            num_steps=STEPS, accumulation_steps=2)


def test_bad_init_fn():
    loss_fn = lambda w, s, b: (jnp.mean((b["x"] @ w - b["y"]) ** 2), s)  # noqa: E731
    opt = lambda h: optax.sgd(h["lr"])  # noqa: E731
    with pytest.raises(ValueError, match=r"init_fn: has_state=True needs .* pair"):
        lrjax.make_train_fn(loss_fn, lambda k: jnp.ones(4), opt, DATA, num_steps=2,
                            has_state=True)
    calls = []

    def counting(key):  # Python state: the second call returns a bigger state
        calls.append(1)
        return jnp.ones(4), {"n": jnp.zeros(len(calls))}

    train_fn = lrjax.make_train_fn(loss_fn, counting, opt, DATA, num_steps=2, has_state=True)
    with pytest.raises(ValueError, match="init_fn must return the same structure, shapes"):
        lrjax.search(train_fn, {"lr": lrjax.uniform(0.1, 0.2)}, num_trials=1)
    with pytest.raises(ValueError, match="has_state=True: an nnx model"):
        lrjax.make_train_fn(_nnx_loss, lambda k: (Net(k), None), opt, DATA, num_steps=2,
                            has_state=True)
