"""Snapshot ensembles: eq. 2 against numpy, snapshots against a hand-written loop, the
ensemble's prediction against numpy softmaxes, real-model forms, devices, bad input."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lrjax


def eq2_numpy(init_value, total_steps, num_cycles, counts):
    """Huang et al. 2017, eq. 2, transcribed with the paper's 1-based iteration t = count + 1."""
    cycle = math.ceil(total_steps / num_cycles)
    t = np.asarray(counts, np.float64) + 1
    return init_value / 2 * (np.cos(np.pi * np.mod(t - 1, cycle) / cycle) + 1)


@pytest.mark.parametrize("total_steps, num_cycles", [(10, 3), (100, 7), (12, 4), (9, 9), (1, 1),
                                                     (50, 1)])
def test_schedule_is_eq2_at_boundaries_and_remainders_under_jit_and_vmap(total_steps, num_cycles):
    counts = np.arange(total_steps + 3)
    schedule = lrjax.snapshot_schedule(0.1, total_steps, num_cycles)
    values = schedule(counts)
    assert values.dtype == jnp.float32 and values.shape == counts.shape
    np.testing.assert_allclose(values, eq2_numpy(0.1, total_steps, num_cycles, counts),
                               rtol=1e-6, atol=1e-8)
    cycle = math.ceil(total_steps / num_cycles)
    restarts = np.arange(0, total_steps, cycle)
    np.testing.assert_array_equal(schedule(restarts), np.float32(0.1))  # exact at every restart
    # the last step of every full cycle is the cycle's smallest value
    assert np.all(np.diff(np.asarray(values)[:cycle]) < 0) or cycle == 1
    # init_value traced (vmapped and jitted): the same numbers as the concrete factories
    run = jax.jit(jax.vmap(lambda a: lrjax.snapshot_schedule(a, total_steps, num_cycles)(counts)))
    scales = np.array([0.1, 0.5], np.float32)
    np.testing.assert_allclose(run(scales), [lrjax.snapshot_schedule(float(a), total_steps,
                                                                     num_cycles)(counts)
                                             for a in scales], rtol=1e-6, atol=1e-7)
    # counts clamped as in every lrjax schedule: negative -> 0, huge and float counts finite
    np.testing.assert_allclose(schedule(jnp.array([-5, 2**31 - 1])),
                               eq2_numpy(0.1, total_steps, num_cycles, [0, 2**31 - 1]), rtol=1e-5)
    assert float(schedule(2.7)) == pytest.approx(float(schedule(2)))


def test_cycle_ends_from_eq2_and_from_sgdr_and_clr_schedules():
    assert lrjax.snapshot_cycle_ends(10, 3).tolist() == [3, 7, 9]  # remainder: last cycle 2 steps
    assert lrjax.snapshot_cycle_ends(12, 4).tolist() == [2, 5, 8, 11]
    sgdr = lrjax.sgdr(0.1, period=5, period_mult=2.0)  # restarts at 5, 15
    assert lrjax.ensembles.schedule_cycle_ends(sgdr, 15).tolist() == [4, 14]
    assert lrjax.ensembles.schedule_cycle_ends(sgdr, 20).tolist() == [4, 14, 19]
    clr = lrjax.cyclic(0.01, 0.1, step_size_up=3, step_size_down=2)  # base at 0, 5, 10
    assert lrjax.ensembles.schedule_cycle_ends(clr, 11).tolist() == [5, 10]
    # the ends of eq. 2 read off its values agree with the formula's
    assert lrjax.ensembles.schedule_cycle_ends(lrjax.snapshot_schedule(1.0, 100, 7), 100).tolist() == \
        lrjax.snapshot_cycle_ends(100, 7).tolist()


# --- a small regression problem, trained by train_snapshots and by hand ------------------
RNG = np.random.default_rng(0)
STEPS = 20
X = RNG.normal(size=(STEPS, 8, 3)).astype(np.float32)  # batch 8: sharded over 8 devices
Y = (X @ np.array([1.0, -2.0, 0.5], np.float32) + 0.1 * RNG.normal(size=(STEPS, 8))).astype(
    np.float32)
DATA = {"x": X, "y": Y}
PARAMS = {"w": jnp.zeros(3), "b": jnp.zeros(())}
SGD = functools.partial(optax.sgd, momentum=0.9)
TRACES = []


def mse(params, batch):
    TRACES.append(1)  # runs once per trace: counts compilations
    return jnp.mean((batch["x"] @ params["w"] + params["b"] - batch["y"]) ** 2)


def hand_loop(lrs, ends, loss=mse):
    """An eager Python loop: SGD momentum at the given per-step rates, params kept at ``ends``."""
    tx = optax.sgd(learning_rate=lambda count: jnp.asarray(lrs, jnp.float32)[count], momentum=0.9)

    @jax.jit  # one step compiled (eager ops are slow on a busy CPU); the loop stays in Python
    def step(params, state, batch):
        value, grads = jax.value_and_grad(loss)(params, batch)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value

    params, state, kept, losses = PARAMS, tx.init(PARAMS), [], []
    for t in range(STEPS):
        params, state, value = step(params, state, {"x": X[t], "y": Y[t]})
        losses.append(float(value))
        if t in ends:
            kept.append(params)
    return jax.tree.map(lambda *xs: np.stack(xs), *kept), np.asarray(losses)


@pytest.mark.parametrize("kind", ["eq2", "sgdr", "sgdr_explicit_ends"])
def test_snapshots_equal_a_hand_written_loop_at_the_cycle_ends(kind):
    if kind == "eq2":
        kwargs = dict(num_cycles=3, init_value=0.05)
        lrs, ends = eq2_numpy(0.05, STEPS, 3, np.arange(STEPS)), [6, 13, 19]
    else:
        schedule = lrjax.sgdr(0.05, period=4, period_mult=2.0)  # restarts at 4, 12
        kwargs = dict(num_cycles=3, schedule=schedule)
        if kind == "sgdr_explicit_ends":
            kwargs = dict(num_cycles=2, schedule=schedule, cycle_ends=[11, 19])
        lrs = np.asarray(schedule(np.arange(STEPS)))
        ends = [3, 11, 19] if kind == "sgdr" else [11, 19]
    result = lrjax.train_snapshots(mse, PARAMS, SGD, DATA, num_steps=STEPS, **kwargs)
    want, want_losses = hand_loop(lrs, ends)
    assert result.steps.tolist() == ends and result.cycle_ends.tolist() == ends
    assert result.params["w"].shape == (len(ends), 3) and isinstance(result.params["w"], jax.Array)
    np.testing.assert_allclose(result.params["w"], want["w"], rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(result.params["b"], want["b"], rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(result.losses, want_losses, rtol=2e-5)
    np.testing.assert_allclose(result.learning_rates, lrs, rtol=1e-6, atol=1e-9)
    snaps, losses = result  # unpacks as the pair the contract names
    assert snaps is result.params and losses is result.losses
    assert result[0] is result.params and result[1] is result.losses


def test_keep_last_no_recompile_and_params_untouched():
    before = jax.tree.map(np.array, PARAMS)
    full = lrjax.train_snapshots(mse, PARAMS, SGD, DATA, num_steps=STEPS, num_cycles=4,
                                 init_value=0.05)
    last = lrjax.train_snapshots(mse, PARAMS, SGD, DATA, num_steps=STEPS, num_cycles=4,
                                 init_value=0.05, keep_last=2)
    assert last.steps.tolist() == full.steps[2:].tolist() == [14, 19]
    np.testing.assert_array_equal(last.params["w"], full.params["w"][2:])
    traces = len(TRACES)
    # new init_value and new data values: runtime inputs, the same program
    again = lrjax.train_snapshots(mse, PARAMS, SGD, {"x": X * 0.5, "y": Y}, num_steps=STEPS,
                                  num_cycles=4, init_value=0.02, keep_last=2)
    assert len(TRACES) == traces
    assert not np.allclose(again.params["w"], last.params["w"])
    jax.tree.map(np.testing.assert_array_equal, PARAMS, before)


def test_data_forms_and_devices_give_the_same_snapshots(num_devices):
    run = functools.partial(lrjax.train_snapshots, mse, PARAMS, SGD, num_steps=STEPS,
                            num_cycles=2, init_value=0.05)
    one_device = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("data",))
    base = run(DATA, devices=lrjax.Devices(one_device))
    batches = [{"x": X[t], "y": Y[t]} for t in range(STEPS)]
    as_list = run(batches)  # iterable: stacked on the host; batch 8 sharded over the devices
    as_function = run(lambda key, i: {"x": jnp.asarray(X)[i], "y": jnp.asarray(Y)[i]})
    for other in (as_list, as_function):
        np.testing.assert_allclose(other.params["w"], base.params["w"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(other.losses, base.losses, rtol=1e-5)
    assert num_devices == 8


def test_accumulated_micro_batches_equal_the_whole_batch():
    # mean-reduced loss, equal micro-batches: the mean gradient is the whole batch's gradient
    micro = {"x": X.reshape(2 * STEPS, 4, 3), "y": Y.reshape(2 * STEPS, 4)}
    kw = dict(num_steps=STEPS, num_cycles=2, init_value=0.05)
    accumulated = lrjax.train_snapshots(mse, PARAMS, SGD, micro, accumulation_steps=2, **kw)
    whole = lrjax.train_snapshots(mse, PARAMS, SGD, DATA, **kw)
    np.testing.assert_allclose(accumulated.params["w"], whole.params["w"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(accumulated.losses, whole.losses, rtol=1e-5)


def test_state_and_dropout_key_forms_match_a_hand_loop():
    """A running statistic as the state and a dropout mask from the per-step key."""
    key = jax.random.key(3)

    def loss_fn(params, state, batch, key):
        keep = jax.random.bernoulli(key, 0.8, batch["x"].shape)
        x = jnp.where(keep, batch["x"] / 0.8, 0.0)
        new_state = 0.9 * state + 0.1 * jnp.mean(x, axis=0)
        return jnp.mean((x @ params["w"] + params["b"] - batch["y"]) ** 2), new_state

    state0 = jnp.zeros(3)
    result = lrjax.train_snapshots(loss_fn, PARAMS, SGD, DATA, num_steps=STEPS, num_cycles=2,
                                   init_value=0.05, state=state0, stochastic=True, key=key)
    # The documented keys: step t gets fold_in(split(key)[1], t).
    step_key = jax.random.split(key)[1]
    lrs = eq2_numpy(0.05, STEPS, 2, np.arange(STEPS))
    tx = optax.sgd(learning_rate=lambda c: jnp.asarray(lrs, jnp.float32)[c], momentum=0.9)

    @jax.jit
    def step(params, opt_state, state, batch, k):
        (_, new_state), grads = jax.value_and_grad(
            lambda p: loss_fn(p, state, batch, k), has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, new_state

    params, opt_state, state, kept = PARAMS, tx.init(PARAMS), state0, []
    for t in range(STEPS):
        params, opt_state, state = step(params, opt_state, state, {"x": X[t], "y": Y[t]},
                                        jax.random.fold_in(step_key, t))
        if t in (9, 19):
            kept.append((params["w"], state))
    np.testing.assert_allclose(result.params["w"], [w for w, _ in kept], rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(result.state, [s for _, s in kept], rtol=2e-5, atol=1e-6)
    params_k, state_k = result.model(-1)
    np.testing.assert_array_equal(state_k, result.state[1])
    # the members' state reaches apply_fn with state=
    two_class = lambda p, s, xs: jnp.stack([xs @ p["w"] + p["b"], xs @ s], -1)  # noqa: E731
    want = np.mean([numpy_softmax(np.stack([X[0] @ w + b, X[0] @ s], -1).astype(np.float64))
                    for w, b, s in zip(np.asarray(result.params["w"]), np.asarray(
                        result.params["b"]), np.asarray(result.state))], axis=0)
    np.testing.assert_allclose(lrjax.ensemble_predict(two_class, result, X[0], state=result.state),
                               want, rtol=1e-5, atol=1e-7)


def test_nnx_model_snapshots_equal_its_pytree_form():
    nnx = pytest.importorskip("flax.nnx")
    model = nnx.Linear(3, 1, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    params = nnx.to_pure_dict(state)

    def model_loss(m, batch):
        return jnp.mean((m(batch["x"])[:, 0] - batch["y"]) ** 2)

    def pytree_loss(p, batch):
        return model_loss(nnx.merge(graphdef, p), batch)

    kw = dict(num_steps=STEPS, num_cycles=2, init_value=0.05)
    from_model = lrjax.train_snapshots(model_loss, model, SGD, DATA, **kw)
    from_pytree = lrjax.train_snapshots(pytree_loss, params, SGD, DATA, **kw)
    stacked = nnx.to_pure_dict(from_model.params)
    np.testing.assert_allclose(stacked["kernel"], from_pytree.params["kernel"], rtol=1e-5,
                               atol=1e-6)
    last = from_model.model(-1)
    assert isinstance(last, nnx.Linear)
    np.testing.assert_allclose(nnx.to_pure_dict(nnx.state(last))["kernel"],
                               from_pytree.params["kernel"][-1], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(nnx.to_pure_dict(nnx.state(model))["kernel"],
                                  params["kernel"])  # the user's model is untouched


def test_equinox_model_snapshots_equal_its_pytree_form():
    eqx = pytest.importorskip("equinox")
    model = eqx.nn.Linear(3, 1, key=jax.random.key(0))

    def model_loss(m, batch):
        return jnp.mean((jax.vmap(m)(batch["x"])[:, 0] - batch["y"]) ** 2)

    def pytree_loss(p, batch):
        return jnp.mean((batch["x"] @ p["weight"][0] + p["bias"][0] - batch["y"]) ** 2)

    kw = dict(num_steps=STEPS, num_cycles=2, init_value=0.05)
    from_model = lrjax.train_snapshots(model_loss, model, SGD, DATA, **kw)
    from_pytree = lrjax.train_snapshots(
        pytree_loss, {"weight": model.weight, "bias": model.bias}, SGD, DATA, **kw)
    np.testing.assert_allclose(from_model.params.weight, from_pytree.params["weight"],
                               rtol=1e-5, atol=1e-6)
    last = from_model.model(-1)
    assert isinstance(last, eqx.nn.Linear) and last.weight.shape == (1, 3)
    np.testing.assert_allclose(last.bias, from_pytree.params["bias"][-1], rtol=1e-5, atol=1e-6)


# --- the ensemble's prediction ------------------------------------------------------------
def numpy_softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def test_ensemble_predict_is_the_mean_of_softmaxes_and_last_m():
    members = RNG.normal(size=(4, 5, 3)).astype(np.float32) * 2  # 4 members of a (5 -> 3) layer
    x = RNG.normal(size=(6, 5)).astype(np.float32)

    def apply_fn(w, inputs):
        return inputs @ w

    probs = [numpy_softmax(x.astype(np.float64) @ w) for w in members]
    got = jax.jit(lambda w, xs: lrjax.ensemble_predict(apply_fn, w, xs))(members, x)
    np.testing.assert_allclose(got, np.mean(probs, axis=0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(lrjax.ensemble_predict(apply_fn, members, x, last=2),
                               np.mean(probs[2:], axis=0), rtol=1e-5, atol=1e-7)
    each = lrjax.ensemble_members(apply_fn, members, x, last=3)
    assert each.shape == (3, 6, 3) and each.dtype == jnp.float32
    np.testing.assert_allclose(each, probs[1:], rtol=1e-5, atol=1e-7)
    # not the mean of logits: a different (here: sharper) distribution
    assert not np.allclose(got, numpy_softmax(np.mean([x @ w for w in members], axis=0)),
                           atol=1e-3)
    # a SnapshotResult is accepted directly
    result = lrjax.train_snapshots(mse, PARAMS, SGD, DATA, num_steps=STEPS, num_cycles=2,
                                   init_value=0.05)
    two_class = lambda p, xs: jnp.stack([xs @ p["w"] + p["b"], jnp.zeros(xs.shape[0])], -1)  # noqa
    np.testing.assert_allclose(lrjax.ensemble_predict(two_class, result, X[0]),
                               lrjax.ensemble_predict(two_class, result.params, X[0]))


# --- bad input ----------------------------------------------------------------------------
@pytest.mark.parametrize("call, name", [
    (lambda: lrjax.snapshot_schedule(0.1, 10, 0), "num_cycles"),
    (lambda: lrjax.snapshot_schedule(0.1, 10, 2.5), "num_cycles"),
    (lambda: lrjax.snapshot_schedule(0.1, 10, 11), "num_cycles"),
    (lambda: lrjax.snapshot_schedule(0.1, 10, True), "num_cycles"),
    (lambda: lrjax.snapshot_schedule(0.1, 0, 1), "total_steps"),
    (lambda: lrjax.snapshot_schedule(-0.1, 10, 2), "init_value"),
    (lambda: lrjax.snapshot_schedule(float("nan"), 10, 2), "init_value"),
    (lambda: lrjax.snapshot_cycle_ends(10, 6), "num_cycles"),  # C = 2: only 5 cycles start
    (lambda: lrjax.train_snapshots(mse, PARAMS, SGD, DATA, num_steps=STEPS, num_cycles=0,
                                   init_value=0.1), "num_cycles"),
    (lambda: lrjax.train_snapshots(mse, PARAMS, SGD, DATA, num_steps=STEPS, num_cycles=21,
                                   init_value=0.1), "num_cycles"),
    (lambda: lrjax.train_snapshots(mse, PARAMS, SGD, DATA, num_steps=STEPS, num_cycles=2,
                                   init_value=0.1, keep_last=3), "keep_last"),
    (lambda: lrjax.train_snapshots(mse, PARAMS, SGD, DATA, num_steps=STEPS, num_cycles=2),
     "init_value"),
    (lambda: lrjax.train_snapshots(mse, PARAMS, SGD, DATA, num_steps=STEPS, num_cycles=2,
                                   schedule=lrjax.sgdr(0.1, 4, 2.0)), "num_cycles"),
    (lambda: lrjax.train_snapshots(mse, PARAMS, SGD, DATA, num_steps=STEPS, num_cycles=2,
                                   init_value=0.1, cycle_ends=[5, 5]), "cycle_ends"),
    (lambda: lrjax.train_snapshots(mse, PARAMS, SGD, {"x": X[:5], "y": Y[:5]}, num_steps=STEPS,
                                   num_cycles=2, init_value=0.1), "data"),
    (lambda: lrjax.ensemble_predict(lambda p, x: x @ p, jnp.ones((2, 3, 3)), jnp.ones((1, 3)),
                                    last=3), "last"),
])
def test_bad_input_names_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_a_diverging_training_warns_with_the_step():
    with pytest.warns(RuntimeWarning, match="not finite from step"):
        result = lrjax.train_snapshots(mse, PARAMS, optax.sgd, {"x": X * 1e3, "y": Y},
                                       num_steps=STEPS, num_cycles=2, init_value=10.0)
    assert not np.all(np.isfinite(result.losses))


def test_optimizer_must_be_a_factory():
    with pytest.raises(TypeError, match="factory"):
        lrjax.train_snapshots(mse, PARAMS, optax.sgd(0.1), DATA, num_steps=STEPS, num_cycles=2,
                              init_value=0.1)
