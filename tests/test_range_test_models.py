"""Real models in the range test: threaded state, dropout keys, eval_fn, nnx and Equinox."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lrjax
from lrjax._engine.model import pure_model
from lrjax._engine.step import make_model_step

STEPS = 10
RNG = np.random.default_rng(3)
X = RNG.normal(size=(STEPS, 6, 3)).astype(np.float32)  # batch 6: one device
Y = (X @ np.array([1.0, -1.0, 2.0], np.float32)).astype(np.float32)
PARAMS = {"w": jnp.zeros(3, jnp.float32), "b": jnp.zeros((), jnp.float32)}
RANGE = dict(min_lr=1e-3, max_lr=1.0, num_steps=STEPS, smoothing=0.5, diverge_threshold=1e9)


def ramp():
    return lrjax.lr_ramp(RANGE["min_lr"], RANGE["max_lr"], STEPS)


# --- state: a running mean of the inputs that normalizes them (BatchNorm's shape) --------
def bn_loss(params, state, batch):
    x, y = batch
    mean = 0.5 * state["mean"] + 0.5 * jnp.mean(x, axis=0)
    pred = (x - mean) @ params["w"] + params["b"]
    return jnp.mean((pred - y) ** 2), ({"mean": mean}, mean)  # aux: the new state


STATE = {"mean": jnp.zeros(3, jnp.float32)}


def hand_loop_with_state():
    """Reference: a plain Python loop threading the state, optax SGD on the ramp."""
    tx, params, state = optax.sgd(ramp()), PARAMS, STATE
    opt_state, losses, states = tx.init(params), [], []
    for t in range(STEPS):
        grad_fn = jax.value_and_grad(bn_loss, has_aux=True)
        (loss, (state, _)), grads = grad_fn(params, state, (X[t], Y[t]))
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        losses.append(float(loss))
        states.append(np.asarray(state["mean"]))
    return np.asarray(losses), np.stack(states)


def test_threaded_state_equals_a_hand_written_loop():
    before = jax.tree.map(np.array, STATE)
    result = lrjax.range_test(bn_loss, PARAMS, optax.sgd, (X, Y), state=STATE, has_aux=True,
                              **RANGE)
    losses, states = hand_loop_with_state()
    np.testing.assert_allclose(result.losses, losses, rtol=2e-5)
    np.testing.assert_allclose(result.aux, states, rtol=2e-5, atol=1e-7)
    # The state really changes (not the initial zeros every step) and the user's is intact.
    assert not np.allclose(result.aux[0], result.aux[-1])
    np.testing.assert_array_equal(STATE["mean"], before["mean"])
    # The same loop through the public step builder (under scan) gives the same losses.
    ms = make_model_step(bn_loss, PARAMS, optax.sgd, ramp(), state=STATE, has_aux=True)
    _, scanned = jax.lax.scan(lambda c, b: ms.step(c, b)[:2], ms.carry, (X, Y))
    np.testing.assert_allclose(scanned, losses, rtol=2e-5)


def test_state_with_seeds_sweeps_and_chunks():
    init = lambda key: {"w": 0.1 * jax.random.normal(key, (3,)), "b": jnp.zeros(())}  # noqa: E731
    common = dict(state=STATE, has_aux=True, init_fn=init, **RANGE)
    batched = lrjax.range_test(bn_loss, PARAMS, optax.sgd, (X, Y), num_seeds=2,
                               sweep={"momentum": [0.0, 0.5]}, **common)
    assert batched.losses.shape == (2, 2, STEPS) and batched.aux.shape == (2, 2, STEPS, 3)
    # Row (momentum 0.5, seed 1) is a single run from that seed's params.
    key1 = jax.random.split(jax.random.split(jax.random.key(0), 2)[1])[0]
    single = lrjax.range_test(bn_loss, init(key1), lambda learning_rate: optax.sgd(
        learning_rate, momentum=0.5), (X, Y), state=STATE, has_aux=True, **RANGE)
    np.testing.assert_allclose(batched.losses[1, 1], single.losses, rtol=2e-5)
    chunked = lrjax.range_test(bn_loss, PARAMS, optax.sgd, list(zip(X, Y)), state=STATE,
                               has_aux=True, chunk_size=4, **RANGE)
    np.testing.assert_allclose(chunked.losses, hand_loop_with_state()[0], rtol=2e-5)


# --- stochastic: a dropout mask from the step's key ---------------------------------------
def dropout_loss(params, batch, *, key):
    x, y = batch
    mask = jax.random.bernoulli(key, 0.5, x.shape[1:]).astype(x.dtype)
    loss = jnp.mean(((x * mask) @ params["w"] + params["b"] - y) ** 2)
    return loss, mask


def test_dropout_keys_are_fresh_per_step_and_seed_and_reproducible():
    common = dict(stochastic=True, has_aux=True, **RANGE)
    result = lrjax.range_test(dropout_loss, PARAMS, optax.sgd, (X, Y), key=7, **common)
    # The documented keys: step t of the curve uses fold_in(fold_in(key, 2), t).
    curve_key = jax.random.fold_in(jax.random.key(7), 2)
    want = [jax.random.bernoulli(jax.random.fold_in(curve_key, t), 0.5, (3,)) for t in range(STEPS)]
    np.testing.assert_array_equal(result.aux, np.stack(want).astype(np.float32))
    assert len({tuple(m) for m in result.aux}) > 3  # masks differ across steps
    again = lrjax.range_test(dropout_loss, PARAMS, optax.sgd, (X, Y), key=7, **common)
    np.testing.assert_array_equal(again.losses, result.losses)  # reproducible from key
    other = lrjax.range_test(dropout_loss, PARAMS, optax.sgd, (X, Y), key=8, **common)
    assert not np.array_equal(other.aux, result.aux)
    init = lambda key: PARAMS  # noqa: E731  same params, per-seed masks
    seeds = lrjax.range_test(dropout_loss, PARAMS, optax.sgd, (X, Y), key=7, init_fn=init,
                             num_seeds=2, **common)
    assert not np.array_equal(seeds.aux[0], seeds.aux[1])  # masks differ across seeds
    seed_key = jax.random.fold_in(jax.random.split(jax.random.key(7), 2)[1], 2)
    np.testing.assert_array_equal(
        seeds.aux[1, 4], jax.random.bernoulli(jax.random.fold_in(seed_key, 4), 0.5, (3,)))


# --- eval_fn ------------------------------------------------------------------------------
def mse(params, batch):
    x, y = batch
    return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)


def test_eval_fn_is_what_val_data_runs():
    same = (np.repeat(X[:1], STEPS, 0), np.repeat(Y[:1], STEPS, 0))  # one batch every step
    val = (X[0], Y[0])
    # val after step t is the loss at the params step t + 1 trains from.
    plain = lrjax.range_test(mse, PARAMS, optax.sgd, same, val_data=val, **RANGE)
    np.testing.assert_allclose(plain.val_losses[:-1], plain.losses[1:], rtol=1e-6)
    tripled = lrjax.range_test(mse, PARAMS, optax.sgd, same, val_data=val,
                               eval_fn=lambda p, b: 3 * mse(p, b), **RANGE)
    np.testing.assert_allclose(tripled.val_losses[:-1], 3 * plain.losses[1:], rtol=1e-6)
    # Dropout in training, none in evaluation: eval_fn gets no key.
    stochastic = lrjax.range_test(lambda p, b, key: dropout_loss(p, b, key=key)[0], PARAMS,
                                  optax.sgd, same, stochastic=True, val_data=val, eval_fn=mse,
                                  **RANGE)
    assert np.all(np.isfinite(stochastic.val_losses))
    with pytest.raises(ValueError, match="needs eval_fn"):
        lrjax.range_test(lambda p, b, key: mse(p, b), PARAMS, optax.sgd, same, stochastic=True,
                         val_data=val, **RANGE)
    # With state, eval_fn reads it and cannot change it: the training curve is unchanged.
    seen = []
    def bn_eval(p, s, b):
        seen.append(s)
        return bn_loss(p, s, b)[0]
    with_val = lrjax.range_test(bn_loss, PARAMS, optax.sgd, (X, Y), state=STATE, has_aux=True,
                                val_data=val, eval_fn=bn_eval, **RANGE)
    np.testing.assert_allclose(with_val.losses, hand_loop_with_state()[0], rtol=2e-5)
    assert set(seen[0]) == {"mean"}


# --- nnx and Equinox ----------------------------------------------------------------------
def pure_linear(params, batch):
    x, y = batch
    return jnp.mean(((x @ params["kernel"])[:, 0] + params["bias"][0] - y) ** 2)


def host_leaves(tree):
    def host(x):
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        return np.array(x)

    return [host(x) for x in jax.tree.leaves(tree)]


def test_nnx_model_equals_the_pure_function_and_is_not_mutated():
    nnx = pytest.importorskip("flax.nnx")

    class Net(nnx.Module):
        def __init__(self, rngs, rate=0.0):
            self.linear = nnx.Linear(3, 1, rngs=rngs)
            self.drop = nnx.Dropout(rate, rngs=rngs)

        def __call__(self, x):
            return self.linear(self.drop(x))

    def loss_fn(model, batch):
        x, y = batch
        return jnp.mean((model(x)[:, 0] - y) ** 2)

    model = Net(nnx.Rngs(0))
    params = {"kernel": model.linear.kernel[...], "bias": model.linear.bias[...]}
    got = lrjax.range_test(loss_fn, model, optax.adam, (X, Y), **RANGE)
    want = lrjax.range_test(pure_linear, params, optax.adam, (X, Y), **RANGE)
    np.testing.assert_allclose(got.losses, want.losses, rtol=1e-5)
    # Dropout: the RNG stream advances every step (fresh masks), reproducibly, and the
    # user's module (params, RNG count) is untouched.
    dropped = Net(nnx.Rngs(0, dropout=1), rate=0.5)
    snapshot = host_leaves(nnx.state(dropped))
    masks = lambda m, b: (loss_fn(m, b), m.drop(jnp.ones(3)))  # noqa: E731
    first = lrjax.range_test(masks, dropped, optax.adam, (X, Y), has_aux=True, **RANGE)
    second = lrjax.range_test(masks, dropped, optax.adam, (X, Y), has_aux=True, **RANGE)
    np.testing.assert_array_equal(first.losses, second.losses)
    assert len({tuple(m) for m in first.aux}) > 3
    for after, before in zip(host_leaves(nnx.state(dropped)), snapshot, strict=True):
        np.testing.assert_array_equal(after, before)  # params, RNG counts and keys
    # Seeds from an init_fn that builds a model per key; val_data runs in eval mode.
    rngs = lambda key: nnx.Rngs(key, dropout=jax.random.fold_in(key, 1))  # noqa: E731
    seeds = lrjax.range_test(loss_fn, dropped, optax.adam, (X, Y), num_seeds=2,
                             init_fn=lambda key: Net(rngs(key), rate=0.5),
                             val_data=(X[0], Y[0]), **RANGE)
    assert seeds.losses.shape == (2, STEPS) and not np.allclose(seeds.losses[0], seeds.losses[1])
    assert np.all(np.isfinite(seeds.val_losses))
    with pytest.raises(ValueError, match="nnx graph definitions differ"):
        lrjax.range_test(loss_fn, model, optax.adam, (X, Y), num_seeds=2,
                         init_fn=lambda key: Net(rngs(key), rate=0.5), **RANGE)


def test_equinox_model_equals_the_pure_function_with_dropout_keys():
    eqx = pytest.importorskip("equinox")
    linear = eqx.nn.Linear(3, 1, key=jax.random.key(0))
    drop = eqx.nn.Dropout(0.5)

    def loss_fn(model, batch, *, key):
        x, y = batch
        x = drop(x, key=key)
        return jnp.mean((jax.vmap(model)(x)[:, 0] - y) ** 2)

    def pure(params, batch, *, key):
        x, y = batch
        return pure_linear(params, (drop(x, key=key), y))

    params = {"kernel": linear.weight.T, "bias": linear.bias}
    got = lrjax.range_test(loss_fn, linear, optax.adam, (X, Y), stochastic=True, **RANGE)
    want = lrjax.range_test(pure, params, optax.adam, (X, Y), stochastic=True, **RANGE)
    np.testing.assert_allclose(got.losses, want.losses, rtol=1e-5)
    pm = pure_model(loss_fn, linear, stochastic=True)
    assert type(pm.merge(pm.params, None)) is type(linear)


def test_loss_fn_outputs_are_checked_with_clear_messages():
    for out, match in ((None, "got None"), ({"loss": 1.0}, "dict with keys"),
                       ((1.0, 2.0, 3.0), "has_aux=True")):
        with pytest.raises(ValueError, match=match):
            lrjax.range_test(lambda p, b, out=out: out, PARAMS, optax.sgd, (X, Y), **RANGE)
    with pytest.raises(ValueError, match=r"\(loss, new_state\)"):
        lrjax.range_test(lambda p, s, b: mse(p, b), PARAMS, optax.sgd, (X, Y), state=STATE,
                         **RANGE)
    with pytest.raises(ValueError, match="new state with the structure"):
        lrjax.range_test(lambda p, s, b: (mse(p, b), {"other": s["mean"]}), PARAMS, optax.sgd,
                         (X, Y), state=STATE, **RANGE)


def test_model_arguments_are_checked():
    nnx = pytest.importorskip("flax.nnx")
    model = nnx.Linear(3, 1, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="nnx model carries its own state"):
        lrjax.range_test(lambda m, b: mse, model, optax.sgd, (X, Y), state=STATE, **RANGE)
    with pytest.raises(TypeError, match="eval_fn must be callable"):
        lrjax.range_test(mse, PARAMS, optax.sgd, (X, Y), eval_fn=3, **RANGE)
    with pytest.raises(ValueError, match="state is empty"):
        lrjax.range_test(bn_loss, PARAMS, optax.sgd, (X, Y), state={}, **RANGE)
    ms = make_model_step(dropout_loss, PARAMS, optax.sgd, 0.1, has_aux=True, stochastic=True)
    with pytest.raises(ValueError, match=r"pass step\(carry, batch, key\)"):
        ms.step(ms.carry, (X[0], Y[0]))


def test_stochastic_accumulation_draws_one_key_per_micro_batch():
    micro = (X.reshape(2 * STEPS, 3, 3), Y.reshape(2 * STEPS, 3))
    result = lrjax.range_test(dropout_loss, PARAMS, optax.sgd, micro, stochastic=True,
                              has_aux=True, accumulation_steps=2, key=5, **RANGE)
    # aux is the mean over the 2 micro-batches of masks drawn from fold_in(step key, j).
    step_key = jax.random.fold_in(jax.random.fold_in(jax.random.key(5), 2), 3)
    want = np.mean([jax.random.bernoulli(jax.random.fold_in(step_key, j), 0.5, (3,))
                    for j in range(2)], axis=0)
    np.testing.assert_allclose(result.aux[3], want)
