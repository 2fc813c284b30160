"""PowerSign, AddSign and the sign decays.

Checked against DESIGN.md's reference numbers (TensorFlow's contrib tests), against numpy
transcriptions of Bello et al.'s update rules written here (30 random steps, multi-leaf
pytree, float64), against closed forms, and, for the decays, against the formulas over
random arguments (hypothesis).
"""

import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lrjax

NUM_STEPS = 30


# ------------------------------------------------------------------------------------
# numpy transcriptions
# ------------------------------------------------------------------------------------
def np_linear_decay(t, decay_steps):
    return max(0.0, 1.0 - t / decay_steps)


def _zeroed(t, decay_steps, num_periods, zero_after):
    # Exact rational test of num_periods * t / decay_steps >= zero_after.
    return zero_after is not None and Fraction(num_periods) * t / decay_steps >= Fraction(
        zero_after
    )


def np_cosine_decay(t, decay_steps, num_periods=0.5, zero_after=None):
    if t >= decay_steps or _zeroed(t, decay_steps, num_periods, zero_after):
        return 0.0
    return 0.5 * (1 + math.cos(2 * math.pi * num_periods * t / decay_steps))


def np_restart_decay(t, decay_steps, num_periods=1.0, zero_after=None):
    if _zeroed(t, decay_steps, num_periods, zero_after):
        return 0.0
    phase = float(Fraction(num_periods) * t / decay_steps % 1)
    return 0.5 * (1 + math.cos(math.pi * phase))


def np_sign_optimizer(params, grads, lr, beta, scale, decay):
    """Bello et al.: m = beta m + (1 - beta) g; theta -= lr scale(decay(t) sign(g) sign(m)) g."""
    leaves = [np.array(p, np.float64) for p in jax.tree.leaves(params)]
    m = [np.zeros_like(p) for p in leaves]
    for t in range(NUM_STEPS):
        for i, g in enumerate(x[t] for x in jax.tree.leaves(grads)):
            m[i] = beta * m[i] + (1 - beta) * g
            leaves[i] = leaves[i] - lr * scale(decay(t) * np.sign(g) * np.sign(m[i])) * g
    return jax.tree.unflatten(jax.tree.structure(params), leaves)


def run_optimizer(opt, params, grads):
    def step(carry, g):
        p, state = carry
        updates, state = opt.update(g, state, p)
        return (optax.apply_updates(p, updates), state), None

    return jax.jit(lambda p, gs: jax.lax.scan(step, (p, opt.init(p)), gs)[0][0])(params, grads)


# ------------------------------------------------------------------------------------
# DESIGN.md reference sequences (TensorFlow contrib tests)
# ------------------------------------------------------------------------------------
REFERENCE = [
    ("powersign defaults", lambda: lrjax.powersign(0.1),
     [.9728171817, .9456343634, .9184515451, .8912687269, .8949475213, .8986263157, .9258091340]),
    ("powersign base 10 beta .8", lambda: lrjax.powersign(0.1, base=10.0, beta=0.8),
     [.9, .8, .7, .6, .601, .602, .702]),
    ("powersign linear decay", lambda: lrjax.powersign(0.1, sign_decay=lrjax.linear_sign_decay(10)),
     [.9728171817, .9482211506, .9259657413, .9058282142, .9113163306, .9173816372, .9322998842]),
    ("addsign defaults", lambda: lrjax.addsign(0.1),
     [.98, .96, .94, .92, .92, .92, .94]),
    ("addsign lr .01 alpha .1 beta .8", lambda: lrjax.addsign(0.01, alpha=0.1, beta=0.8),
     [.9989, .9978, .9967, .9956, .9947, .9938, .9949]),
    ("addsign linear decay", lambda: lrjax.addsign(0.1, sign_decay=lrjax.linear_sign_decay(10)),
     [.98, .961, .943, .926, .93, .935, .949]),
]  # fmt: skip


@pytest.mark.parametrize(
    "make, expected", [r[1:] for r in REFERENCE], ids=[r[0] for r in REFERENCE]
)
def test_tensorflow_reference_sequences(x64, make, expected):
    """var0 = [1, 2] with gradient .1, var1 = [3, 4] with .01; steps 1-4 +g, 5-7 -g."""
    opt = make()
    params = {"var0": jnp.asarray([1.0, 2.0]), "var1": jnp.asarray([3.0, 4.0])}
    signs = np.asarray([1, 1, 1, 1, -1, -1, -1], np.float64)[:, None]
    grads = {
        "var0": np.broadcast_to(0.1 * signs, (7, 2)),
        "var1": np.broadcast_to(0.01 * signs, (7, 2)),
    }
    state, trajectory = opt.init(params), []
    for t in range(7):
        updates, state = opt.update(jax.tree.map(lambda g: g[t], grads), state, params)
        params = optax.apply_updates(params, updates)
        trajectory.append(float(params["var0"][0]))
    np.testing.assert_allclose(trajectory, expected, rtol=0, atol=1e-9)


# ------------------------------------------------------------------------------------
# Against the numpy transcription
# ------------------------------------------------------------------------------------
SIGN_CASES = [
    ("powersign no decay", "powersign", None, lambda t: 1.0),
    (
        "powersign linear",
        "powersign",
        lrjax.linear_sign_decay(20),
        lambda t: np_linear_decay(t, 20),
    ),
    (
        "powersign restart",
        "powersign",
        lrjax.restart_sign_decay(8, 2.0),
        lambda t: np_restart_decay(t, 8, 2.0),
    ),
    (
        "addsign cosine",
        "addsign",
        lrjax.cosine_sign_decay(25, 1.5, 1.0),
        lambda t: np_cosine_decay(t, 25, 1.5, 1.0),
    ),
    ("addsign constant 0.4", "addsign", 0.4, lambda t: 0.4),
]


@pytest.mark.parametrize(
    "name, kind, sign_decay, np_decay", SIGN_CASES, ids=[c[0] for c in SIGN_CASES]
)
def test_sign_optimizers_match_numpy(x64, name, kind, sign_decay, np_decay):
    rng = np.random.default_rng(len(name))
    params = {
        "w": rng.normal(size=(3, 4)),
        "b": rng.normal(size=4),
        "nested": {"s": np.asarray(0.5)},
    }
    grads = jax.tree.map(lambda p: rng.normal(size=(NUM_STEPS, *p.shape)), params)
    grads["w"][3, 0, 0] = 0.0  # an exact zero gradient
    if kind == "powersign":
        opt = lrjax.powersign(0.02, base=3.0, beta=0.7, sign_decay=sign_decay)
        scale = lambda x: 3.0**x  # noqa: E731
    else:
        opt = lrjax.addsign(0.02, alpha=0.6, beta=0.7, sign_decay=sign_decay)
        scale = lambda x: 0.6 + x  # noqa: E731
    expected = np_sign_optimizer(params, grads, 0.02, 0.7, scale, np_decay)
    actual = run_optimizer(opt, params, grads)
    jax.tree.map(
        lambda a, e: np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-14), actual, expected
    )


@pytest.mark.parametrize("kind", ["powersign", "addsign"])
def test_zero_moving_average_has_sign_zero(x64, kind):
    """beta .5, g = 1 then -.5: m = .5 then exactly 0, so the second factor is base**0 / alpha."""
    opt = (
        lrjax.powersign(0.1, beta=0.5)
        if kind == "powersign"
        else lrjax.addsign(0.1, alpha=0.3, beta=0.5)
    )
    params = jnp.asarray(0.0)
    state = opt.init(params)
    _, state = opt.update(jnp.asarray(1.0), state, params)
    updates, state = opt.update(jnp.asarray(-0.5), state, params)
    assert float(state[0].mu) == 0.0
    neutral = 1.0 if kind == "powersign" else 0.3
    np.testing.assert_allclose(updates, -0.1 * neutral * -0.5, rtol=1e-15)


# ------------------------------------------------------------------------------------
# Sign decays
# ------------------------------------------------------------------------------------
COUNTS = np.arange(0, 1100, 100)
DECAY_REFERENCE = [
    ("linear", lambda: lrjax.linear_sign_decay(1000), [1, .9, .8, .7, .6, .5, .4, .3, .2, .1, 0]),
    ("cosine", lambda: lrjax.cosine_sign_decay(1000),
     [1, .975528, .904508, .793893, .654508, .5, .345492, .206107, .095492, .024472, 0]),
    ("cosine 5 periods zero after 2", lambda: lrjax.cosine_sign_decay(1000, 5, 2),
     [1, 0, 1] + [0] * 8),
    ("restart 5 periods zero after 2", lambda: lrjax.restart_sign_decay(1000, 5, 2),
     [1, .5, 1, .5] + [0] * 7),
]  # fmt: skip


@pytest.mark.parametrize(
    "make, expected", [r[1:] for r in DECAY_REFERENCE], ids=[r[0] for r in DECAY_REFERENCE]
)
def test_sign_decay_reference_numbers(make, expected):
    values = make()(COUNTS)  # vectorised counts, default float32
    assert values.dtype == jnp.float32 and values.shape == COUNTS.shape
    np.testing.assert_allclose(values, expected, atol=2e-6)


def test_decays_past_decay_steps():
    """Linear and cosine stay 0 (even with whole periods); restart keeps restarting."""
    counts = np.asarray([1000, 1001, 1500, 5000, 2**31 - 1])
    assert np.all(np.asarray(lrjax.linear_sign_decay(1000)(counts)) == 0)
    assert np.all(np.asarray(lrjax.cosine_sign_decay(1000, num_periods=2.0)(counts)) == 0)
    restart = lrjax.restart_sign_decay(1000, num_periods=2.0)  # restarts every 500 steps
    np.testing.assert_allclose(
        restart(np.asarray([1000, 1250, 1500, 7000, 7250])), [1, 0.5, 1, 1, 0.5], atol=1e-6
    )
    # 2**31 - 1 = 4294967 * 500 + 147: the phase is exact for counts float32 cannot hold.
    np.testing.assert_allclose(
        restart(2**31 - 1), np_restart_decay(2**31 - 1, 1000, 2.0), atol=1e-6
    )


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    decay_steps=st.integers(1, 3000),
    num_periods=st.sampled_from([0.3, 0.5, 1.0, 2.0, 2.5, 5.0, 7.0]),
    zero_after=st.one_of(st.none(), st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.7])),
    fractions=st.lists(st.floats(0, 3), min_size=1, max_size=8),
)
def test_sign_decays_match_formulas(decay_steps, num_periods, zero_after, fractions):
    counts = np.asarray([int(f * decay_steps) for f in fractions])
    linear = lrjax.linear_sign_decay(decay_steps)(counts)
    cosine = lrjax.cosine_sign_decay(decay_steps, num_periods, zero_after)(counts)
    restart = lrjax.restart_sign_decay(decay_steps, num_periods, zero_after)(counts)
    for i, t in enumerate(counts.tolist()):
        np.testing.assert_allclose(linear[i], np_linear_decay(t, decay_steps), atol=1e-6)
        np.testing.assert_allclose(
            cosine[i], np_cosine_decay(t, decay_steps, num_periods, zero_after), atol=2e-5
        )
        phase = Fraction(num_periods) * t / decay_steps % 1
        if min(phase, 1 - phase) > 1e-5:  # away from a restart, where float32 may round either way
            expected = np_restart_decay(t, decay_steps, num_periods, zero_after)
            np.testing.assert_allclose(restart[i], expected, atol=2e-5)


def test_sign_decay_under_jit_compiles_once():
    traces = []
    decay = lrjax.restart_sign_decay(100, 3.0, zero_after=2.0)

    @jax.jit
    def evaluate(count):
        traces.append(1)
        return decay(count)

    values = [float(evaluate(jnp.asarray(t, jnp.int32))) for t in (0, 50, 70)]
    assert len(traces) == 1
    np.testing.assert_allclose(
        values, [np_restart_decay(t, 100, 3.0, 2.0) for t in (0, 50, 70)], atol=1e-6
    )


# ------------------------------------------------------------------------------------
# inject_hyperparams and validation
# ------------------------------------------------------------------------------------
INJECT_CASES = [
    (lrjax.powersign, dict(learning_rate=0.05, base=3.0, beta=0.7)),
    (lrjax.addsign, dict(learning_rate=0.05, alpha=0.6, beta=0.7)),
    (
        lrjax.powersign,
        dict(learning_rate=0.05, base=3.0, beta=0.7, sign_decay=lrjax.linear_sign_decay(5)),
    ),
]


@pytest.mark.parametrize(
    "factory, kwargs", INJECT_CASES, ids=["powersign", "addsign", "powersign-decay"]
)
def test_inject_hyperparams_equals_plain(x64, factory, kwargs):
    """Injected == plain, and each float hyperparameter changed in the state takes effect."""
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=(2, 3))), "b": jnp.asarray(rng.normal(size=3))}
    grads = [
        jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape)), params) for _ in range(4)
    ]

    def trajectory(opt, state=None):
        p, state = params, opt.init(params) if state is None else state
        for g in grads:
            updates, state = opt.update(g, state, p)
            p = optax.apply_updates(p, updates)
        return p

    def assert_close(a, b):
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-14), a, b)

    injected = optax.inject_hyperparams(factory)(**kwargs)
    assert_close(trajectory(injected), trajectory(factory(**kwargs)))
    for name in ("learning_rate", "beta", "base" if "base" in kwargs else "alpha"):
        state = injected.init(params)
        state.hyperparams[name] = jnp.asarray(kwargs[name] * 0.5)
        assert_close(
            trajectory(injected, state), trajectory(factory(**{**kwargs, name: kwargs[name] * 0.5}))
        )


INVALID = [
    (lrjax.powersign, dict(base=0.0), "base"),
    (lrjax.powersign, dict(base=-2.0), "base"),
    (lrjax.powersign, dict(beta=1.0), "beta"),
    (lrjax.addsign, dict(beta=-0.1), "beta"),
    (lrjax.addsign, dict(alpha=-1.0), "alpha"),
    (lrjax.scale_by_powersign, dict(base=float("nan")), "base"),
    (lrjax.scale_by_addsign, dict(beta=2.0), "beta"),
    (lrjax.linear_sign_decay, dict(decay_steps=0), "decay_steps"),
    (lrjax.linear_sign_decay, dict(decay_steps=2.5), "decay_steps"),
    (lrjax.cosine_sign_decay, dict(decay_steps=-10), "decay_steps"),
    (lrjax.cosine_sign_decay, dict(decay_steps=10, num_periods=0.0), "num_periods"),
    (lrjax.restart_sign_decay, dict(decay_steps=10, zero_after=-1.0), "zero_after"),
    (lrjax.restart_sign_decay, dict(decay_steps=10, num_periods=-1.0), "num_periods"),
]


@pytest.mark.parametrize(
    "factory, kwargs, name", INVALID, ids=[f"{f.__name__}-{n}" for f, _, n in INVALID]
)
def test_invalid_static_arguments_raise(factory, kwargs, name):
    with pytest.raises(ValueError, match=name):
        factory(**kwargs)
