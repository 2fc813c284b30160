"""PowerSign, AddSign and the sign decays.

Checked against reference numbers from TensorFlow's contrib tests
(tensorflow/contrib/opt/python/training/powersign_test.py, addsign_test.py and
sign_decay_test.py: their cases, computed with their numpy references), against numpy
transcriptions of Bello et al.'s update rules written here (30 random steps, multi-leaf
pytree, float64), against closed forms, and, for the decays, against the float64 formulas
jitted at and around every boundary.
"""

import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

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
# Reference sequences of TensorFlow's contrib tests: the testDense cases of
# tensorflow/contrib/opt/python/training/powersign_test.py and addsign_test.py (their
# numpy references powersign_update_numpy / addsign_update_numpy, var0[0] after each of
# the 7 steps; the linear decay is their get_linear_decay_fn(10))
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
# The cases of TensorFlow's tensorflow/contrib/opt/python/training/sign_decay_test.py
# (1000 decay steps, every 100th step; cosine and restart with 5 periods, zero after 2),
# computed with its py_*_decay_fn references, plus the end count 1000.
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


# (decay_steps, num_periods, zero_after): non-integer periods, zero_after on and off a step.
BOUNDARY_CASES = [(7, 0.3, None), (10, 2.5, 1.7), (12, 1.5, 1.0), (999, 7.0, 3.7), (3, 0.5, 0.0),
                  (1000, 5.0, 2.0), (2**31 - 1, 0.75, 0.5)]  # fmt: skip


def _boundary_counts(decay_steps, num_periods, zero_after):
    """0, 1, the end of the decay, every restart and the zero_after step, each +-1, 2**31-1."""
    points = {0, decay_steps, 2 * decay_steps, 2**31 - 1}
    points |= {math.ceil(k * Fraction(decay_steps) / Fraction(num_periods)) for k in range(1, 8)}
    if zero_after is not None:
        points.add(math.ceil(Fraction(zero_after) * decay_steps / Fraction(num_periods)))
    counts = {c + d for c in points for d in (-1, 0, 1)}
    return np.asarray(sorted(c for c in counts if 0 <= c <= 2**31 - 1), np.int64)


@pytest.mark.parametrize("decay_steps, num_periods, zero_after", BOUNDARY_CASES)
def test_sign_decays_jitted_at_boundaries_match_float64_formulas(decay_steps, num_periods, zero_after):
    """Jitted, counts vectorised, at and around every boundary: the float64 formulas.

    The restart decay is compared away from restarts, where a fractional num_periods may
    land a count on either side of the restart."""
    counts = _boundary_counts(decay_steps, num_periods, zero_after)
    decays = (
        lrjax.linear_sign_decay(decay_steps),
        lrjax.cosine_sign_decay(decay_steps, num_periods, zero_after),
        lrjax.restart_sign_decay(decay_steps, num_periods, zero_after),
    )
    values = jax.jit(lambda c: [decay(c) for decay in decays])(jnp.asarray(counts, jnp.int32))
    for value in values:
        assert value.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(value)))
    expected = [
        [np_linear_decay(t, decay_steps) for t in counts.tolist()],
        [np_cosine_decay(t, decay_steps, num_periods, zero_after) for t in counts.tolist()],
        [np_restart_decay(t, decay_steps, num_periods, zero_after) for t in counts.tolist()],
    ]
    np.testing.assert_allclose(values[0], expected[0], atol=1e-6)
    np.testing.assert_allclose(values[1], expected[1], atol=2e-5)
    phases = [Fraction(num_periods) * t / decay_steps % 1 for t in counts.tolist()]
    away = np.asarray([min(p, 1 - p) > 1e-5 for p in phases])  # a restart rounds either way
    np.testing.assert_allclose(values[2][away], np.asarray(expected[2])[away], atol=2e-5)
    assert away.sum() > len(counts) // 2


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
# Validation (traced and injected hyperparameters: tests/test_traced_optimizers.py)
# ------------------------------------------------------------------------------------
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


INF = float("inf")
BAD_VALUES = [
    (lambda: lrjax.powersign(base=INF), ValueError, "base"),
    (lambda: lrjax.powersign(base=np.float32(-1.0)), ValueError, "base"),
    (lambda: lrjax.powersign(base=1e-39), ValueError, "base"),  # 1/base overflows float32
    (lambda: lrjax.addsign(alpha=INF), ValueError, "alpha"),
    (lambda: lrjax.addsign(beta=np.float64(1.0)), ValueError, "beta"),
    (lambda: lrjax.addsign(sign_decay=INF), ValueError, "sign_decay"),
    (lambda: lrjax.powersign(1e39), ValueError, "learning_rate"),
    (lambda: lrjax.cosine_sign_decay(10, num_periods=INF), ValueError, "num_periods"),
    (lambda: lrjax.restart_sign_decay(10, num_periods=1e39), ValueError, "num_periods"),
    (lambda: lrjax.cosine_sign_decay(10, zero_after=INF), ValueError, "zero_after"),
    (lambda: lrjax.restart_sign_decay(10, zero_after=float("nan")), ValueError, "zero_after"),
    (lambda: lrjax.cosine_sign_decay(2**31), ValueError, "decay_steps"),
    (lambda: lrjax.linear_sign_decay(True), ValueError, "decay_steps"),
    (lambda: lrjax.powersign(None), TypeError, "learning_rate"),
    (lambda: lrjax.addsign(None), TypeError, "learning_rate"),
    (lambda: lrjax.powersign(0.1, base=None), TypeError, "base"),
    (lambda: lrjax.cosine_sign_decay(10, num_periods="2"), TypeError, "num_periods"),
]


@pytest.mark.parametrize("make, error, name", BAD_VALUES, ids=[f"{i}-{c[2]}" for i, c in enumerate(BAD_VALUES)])
def test_bad_values_raise_at_construction(make, error, name):
    with pytest.raises(error, match=name):
        make()


def test_zero_after_as_a_jax_scalar():
    """zero_after=jnp.float32(.1) works: its float32 value (0.100000001) is used exactly."""
    decay = lrjax.cosine_sign_decay(10, num_periods=1.0, zero_after=jnp.float32(0.1))
    # num_periods * t / 10 >= 0.100000001 first holds at t = 2 (t = 1 gives exactly 0.1).
    np.testing.assert_allclose(decay(np.arange(4)), [1, np_cosine_decay(1, 10, 1.0), 0, 0], atol=1e-6)
    decay = lrjax.restart_sign_decay(10, num_periods=2.0, zero_after=np.float64(0.5))
    expected = [1, np_restart_decay(1, 10, 2.0), np_restart_decay(2, 10, 2.0), 0]  # 0 from t = 2.5
    np.testing.assert_allclose(decay(np.arange(4)), expected, atol=1e-6)


def test_powersign_traced_base_at_the_boundaries_of_its_range():
    """Under jit(vmap) over base: base 1 (ln 0) makes every factor 1 (plain SGD); a tiny
    base gives finite updates where gradient and average disagree (factor 1/base); zero
    gradients stay 0."""
    grads = [jnp.asarray([0.5, -0.25, 0.0]), jnp.asarray([-0.5, -0.25, 0.0]),
             jnp.asarray([0.1, 0.25, 0.0])]  # fmt: skip

    def updates(base):
        opt = lrjax.powersign(0.1, base=base, beta=0.5)
        state = opt.init(jnp.zeros(3))
        out = []
        for g in grads:
            u, state = opt.update(g, state)
            out.append(u)
        return jnp.stack(out)

    result = jax.jit(jax.vmap(updates))(jnp.asarray([1.0, 1e-30, 3.0], jnp.float32))
    assert bool(jnp.all(jnp.isfinite(result)))
    np.testing.assert_allclose(result[1, 2, 0], -0.1 * 1e30 * 0.1, rtol=1e-5)  # disagreement
    np.testing.assert_allclose(result[0], -0.1 * np.stack(grads), rtol=1e-6)
    np.testing.assert_array_equal(result[:, :, 2], 0.0)
    np.testing.assert_allclose(result[2], updates(3.0), rtol=1e-6)
