"""The training engine (lrjax/_engine): strategies, their choice, the compile cache, models.

The range test is the engine's main user here; snapshots and search have their own engine
tests (test_snapshots_engine.py, test_search_models.py). References are hand-written optax
loops over one jitted step, the way a user would write them.
"""

import functools
import gc
import weakref

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lrjax
from lrjax._engine.cache import PROGRAMS, fn_key, weak
from lrjax._engine.execution import choose_execution, contains_primitive

STEPS = 24


def _conv_init(key):
    k1, k2 = jax.random.split(key)
    return {"c": 0.3 * jax.random.normal(k1, (3, 3, 1, 4)),
            "d": 0.1 * jax.random.normal(k2, (4 * 4 * 4, 3))}


def _conv_apply(p, x):
    h = jax.lax.conv_general_dilated(x, p["c"], (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jax.nn.relu(h).reshape(x.shape[0], -1) @ p["d"]


def _conv_loss(p, batch):
    x, y = batch
    return optax.softmax_cross_entropy_with_integer_labels(_conv_apply(p, x), y).mean()


def _mlp_init(key):
    return {"w": 0.3 * jax.random.normal(key, (16, 3))}


def _mlp_loss(p, batch):
    x, y = batch
    logits = jnp.tanh(x.reshape(x.shape[0], -1)) @ p["w"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    x = rng.randn(STEPS, 8, 4, 4, 1).astype(np.float32)
    y = rng.randint(0, 3, (STEPS, 8))
    return x, y


def _range(loss_fn, params, data, execution, **kw):
    kw = {"min_lr": 1e-3, "max_lr": 1e2, "num_steps": STEPS, "smoothing": 0.5, **kw}
    return lrjax.range_test(loss_fn, params, optax.sgd, data, execution=execution, **kw)


def _assert_same_curves(a, b):
    """Same divergence, same NaN pattern, same losses (to float32 rounding) before it."""
    np.testing.assert_array_equal(np.isnan(a.losses), np.isnan(b.losses))
    np.testing.assert_array_equal(np.asarray(a._diverged_array()), np.asarray(b._diverged_array()))
    np.testing.assert_allclose(a.losses, b.losses, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(a.lrs, b.lrs)


def test_auto_picks_host_for_a_convolution_on_cpu_and_compiled_for_an_mlp(data):
    assert jax.default_backend() == "cpu"
    conv = _range(_conv_loss, _conv_init(jax.random.key(0)), data, "auto")
    mlp = _range(_mlp_loss, _mlp_init(jax.random.key(0)), data, "auto")
    assert conv.settings["execution"] == "host"
    assert mlp.settings["execution"] == "compiled"


def test_choose_execution_reads_the_jaxpr_and_the_backend():
    p, x = _conv_init(jax.random.key(0)), jnp.zeros((2, 4, 4, 1))
    grad = lambda p, x: jax.grad(lambda p: jnp.sum(_conv_apply(p, x)))(p)  # noqa: E731
    assert choose_execution("auto", grad, p, x) == "host"
    assert choose_execution("auto", grad, p, x, backend="gpu") == "compiled"
    assert choose_execution("compiled", grad, p, x) == "compiled"
    # A convolution nested in a scan is still found.
    nested = lambda p, x: jax.lax.scan(lambda c, _: (c, grad(p, x)), 0, None, length=2)[1]  # noqa: E731
    assert contains_primitive(jax.make_jaxpr(nested)(p, x), frozenset({"conv_general_dilated"}))
    with pytest.raises(ValueError, match="execution"):
        choose_execution("fast", grad, p, x)
    with pytest.raises(ValueError, match="execution"):
        lrjax.range_test(_mlp_loss, _mlp_init(jax.random.key(0)), optax.sgd,
                         (np.zeros((4, 2, 16)), np.zeros((4, 2), int)), num_steps=4,
                         execution="threads")


@pytest.mark.parametrize("options", [
    {},
    {"sweep": {"momentum": [0.0, 0.9]}},
    {"num_seeds": 2, "init_fn": _conv_init},
    {"chunk_size": 10},
], ids=["one", "sweep", "seeds", "chunks"])
def test_strategies_give_the_same_curves(data, options):
    params = _conv_init(jax.random.key(1))
    host = _range(_conv_loss, params, data, "host", **options)
    compiled = _range(_conv_loss, params, data, "compiled", **options)
    assert (host.settings["execution"], compiled.settings["execution"]) == ("host", "compiled")
    assert np.any(np.asarray(host._diverged_array()) >= 0)  # the stop is exercised
    _assert_same_curves(host, compiled)


def test_host_loop_on_an_iterable_with_progress(data):
    params = _conv_init(jax.random.key(2))
    batches = [(data[0][i], data[1][i]) for i in range(STEPS)]
    seen = {"host": [], "compiled": []}
    runs = {ex: _range(_conv_loss, params, iter(batches), ex, chunk_size=8,
                       progress=lambda d, t, ex=ex: seen[ex].append((d, t)))
            for ex in ("host", "compiled")}
    _assert_same_curves(runs["host"], runs["compiled"])
    assert seen["host"] == seen["compiled"] and seen["host"][-1] == (STEPS, STEPS)


def test_host_loop_matches_a_hand_written_loop(data):
    """The host strategy's losses equal a Python loop over one jitted optax step."""
    params = _conv_init(jax.random.key(3))
    result = _range(_conv_loss, params, data, "host", max_lr=1e-1, diverge_threshold=np.inf)
    tx = optax.sgd(lambda t: jnp.asarray(result.lrs)[t])

    @jax.jit
    def step(p, s, batch):
        loss, g = jax.value_and_grad(_conv_loss)(p, batch)
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s, loss

    p, s, losses = params, tx.init(params), []
    for t in range(STEPS):
        p, s, loss = step(p, s, (data[0][t], data[1][t]))
        losses.append(float(loss))
    np.testing.assert_allclose(result.losses, losses, rtol=1e-5)


def test_stateful_stochastic_model_same_under_both_strategies(data):
    """Params + state (a running mean) and a dropout key per step, through both loops."""
    params = _conv_init(jax.random.key(4))

    def loss_fn(p, state, batch, key):
        x, y = batch
        keep = jax.random.bernoulli(key, 0.8, x.shape)
        logits = _conv_apply(p, jnp.where(keep, x / 0.8, 0.0))
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, {"mean": 0.9 * state["mean"] + 0.1 * jnp.mean(x)}

    state = {"mean": jnp.zeros(())}
    runs = [_range(loss_fn, params, data, ex, state=state, stochastic=True, key=7, max_lr=1.0)
            for ex in ("host", "compiled")]
    _assert_same_curves(*runs)


def test_equinox_make_with_state_batchnorm_runs(data):
    eqx = pytest.importorskip("equinox")

    class Net(eqx.Module):
        conv: eqx.nn.Conv2d
        norm: eqx.nn.BatchNorm
        head: eqx.nn.Linear

        def __init__(self, key):
            k1, k2 = jax.random.split(key)
            self.conv = eqx.nn.Conv2d(1, 4, 3, padding=1, key=k1)
            self.norm = eqx.nn.BatchNorm(4, axis_name="batch")
            self.head = eqx.nn.Linear(64, 3, key=k2)

        def __call__(self, x, state):
            h = self.conv(x)
            h, state = self.norm(h, state)
            return self.head(jax.nn.relu(h).reshape(-1)), state

    model, state = eqx.nn.make_with_state(Net)(jax.random.key(0))

    def loss_fn(model, state, batch):
        x, y = batch
        logits, states = jax.vmap(model, axis_name="batch", in_axes=(0, None),
                                  out_axes=(0, None))(jnp.moveaxis(x, -1, 1), state)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), states

    before = jax.tree.map(np.array, jax.tree.leaves(eqx.filter(model, eqx.is_array)))
    runs = [_range(loss_fn, model, data, ex, state=state, max_lr=1.0) for ex in ("host", "compiled")]
    assert runs[0].settings["execution"] == "host"
    assert np.isfinite(runs[0].losses[0])
    _assert_same_curves(*runs)
    after = jax.tree.leaves(eqx.filter(model, eqx.is_array))
    for b, a in zip(before, after):  # the user's model is untouched
        np.testing.assert_array_equal(b, np.asarray(a))


def test_equinox_state_structure_change_is_a_clear_error(data):
    eqx = pytest.importorskip("equinox")
    model, state = eqx.nn.make_with_state(eqx.nn.BatchNorm)(3, axis_name="batch")
    other = eqx.nn.make_with_state(eqx.nn.BatchNorm)(5, axis_name="batch")[1]

    def loss_fn(params, state, batch):
        return jnp.mean(params["w"] ** 2), other  # a state of other shapes

    with pytest.raises(ValueError, match="new state with the structure"):
        _range(loss_fn, {"w": jnp.ones(2)}, data, "compiled", state=state)


def test_optimizer_with_extra_args_gets_the_loss(data):
    """optax.contrib.reduce_on_plateau reads value=loss; equal to a hand-written loop."""
    def factory(learning_rate):
        return optax.chain(optax.sgd(learning_rate),
                           optax.contrib.reduce_on_plateau(patience=1, factor=0.5,
                                                           accumulation_size=1))

    params = _mlp_init(jax.random.key(5))
    result = lrjax.range_test(_mlp_loss, params, factory, data, min_lr=0.5, max_lr=2.0,
                              num_steps=STEPS, execution="compiled", diverge_threshold=np.inf)
    tx = factory(lambda t: jnp.asarray(result.lrs)[t])
    p, s, losses = params, tx.init(params), []
    for t in range(STEPS):
        loss, g = jax.value_and_grad(_mlp_loss)(p, (data[0][t], data[1][t]))
        u, s = tx.update(g, s, p, value=loss)
        p = optax.apply_updates(p, u)
        losses.append(float(loss))
    assert float(s[1].scale) < 1.0  # the plateau fired in the reference
    np.testing.assert_allclose(result.losses, losses, rtol=1e-5)


def test_repeated_call_does_not_recompile_and_clear_caches_does(data):
    params = _conv_init(jax.random.key(6))
    traces = []

    def loss_fn(p, batch):
        traces.append(1)
        return _conv_loss(p, batch)

    first = _range(loss_fn, params, data, "host")
    count, builds = len(traces), PROGRAMS.builds
    again = _range(loss_fn, params, data, "host")
    assert len(traces) == count and PROGRAMS.builds == builds
    np.testing.assert_array_equal(first.losses, again.losses)
    lrjax.clear_caches()
    _range(loss_fn, params, data, "host")
    assert len(traces) > count and PROGRAMS.builds > builds


def test_cache_holds_user_functions_weakly(data):
    params = _mlp_init(jax.random.key(7))

    def loss_fn(p, batch):
        return _mlp_loss(p, batch)

    _range(loss_fn, params, data, "compiled")
    ref = weakref.ref(loss_fn)
    size = len(PROGRAMS)
    del loss_fn
    gc.collect()
    assert ref() is None  # no program, key or memo kept it alive
    assert len(PROGRAMS) < size  # and its programs went with it


def test_user_params_are_not_mutated_or_donated(data):
    params = _conv_init(jax.random.key(8))
    copy = jax.tree.map(np.array, params)
    for ex in ("host", "compiled"):
        _range(_conv_loss, params, data, ex)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(copy)):
        np.testing.assert_array_equal(np.asarray(a), b)  # still readable: not donated


def test_cache_keys_partials_by_contents_and_weak_proxies_call_through():
    f = functools.partial(optax.sgd, momentum=0.9)
    g = functools.partial(optax.sgd, momentum=0.9)
    assert fn_key(f) == fn_key(g) and hash(fn_key(f)) == hash(fn_key(g))
    assert fn_key(f) != fn_key(functools.partial(optax.sgd, momentum=0.5))

    def h(x):
        return x + 1

    proxy = weak(h)
    assert proxy(1) == 2 and proxy == weak(h)
    import inspect
    assert list(inspect.signature(proxy).parameters) == ["x"]


def test_a_bound_method_of_an_unhashable_object_is_cached_by_identity(data):
    """A loss_fn bound to a frozen dataclass holding arrays (hash and == fail on it)."""
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class Problem:
        x: np.ndarray

        def loss_fn(self, p, batch):
            return _mlp_loss(p, batch)

    problem = Problem(np.zeros(3))
    with pytest.raises(TypeError):
        hash(problem)
    params = _mlp_init(jax.random.key(9))
    first = _range(problem.loss_fn, params, data, "compiled")
    builds = PROGRAMS.builds
    again = _range(problem.loss_fn, params, data, "compiled")  # a new bound-method object
    assert PROGRAMS.builds == builds
    np.testing.assert_array_equal(first.losses, again.losses)
    other = _range(Problem(np.ones(3)).loss_fn, params, data, "compiled")  # another object
    assert PROGRAMS.builds > builds
    np.testing.assert_array_equal(first.losses, other.losses)


def test_search_over_a_conv_model_on_a_trial_mesh_both_strategies():
    """A batch of trials vmapped over a mesh of devices: on jax < 0.8 a sharded
    convolution's gradient cannot be batched, and the trials then run as lax.map in the
    same program; every strategy gives the same trials either way."""
    from jax.sharding import Mesh

    rng = np.random.RandomState(0)
    data = {"x": rng.randn(6, 8, 4, 4, 1).astype(np.float32), "y": rng.randint(0, 3, (6, 8))}
    loss = lambda p, b: _conv_loss(p, (b["x"], b["y"]))  # noqa: E731
    mesh = Mesh(np.array(jax.devices()[:8]), ("trials",))
    values = {}
    for ex in ("compiled", "host"):
        train_fn = lrjax.make_train_fn(loss, _conv_init, lambda h: optax.sgd(h["lr"]), data,
                                       num_steps=6, execution=ex)
        result = lrjax.search(train_fn, {"lr": lrjax.log_uniform(1e-3, 1e-1)}, num_trials=8,
                              batch_size=8, mesh=mesh, vectorize="vmap")
        values[ex] = [t["value"] for t in result.trials]
    np.testing.assert_allclose(values["host"], values["compiled"], rtol=1e-5)
