"""AdamW, SGDW, AdamWR, SGDWR, AMSGrad and the decoupled-weight-decay block.

Every update rule is checked against a numpy transcription written here from the papers'
formulas (plain loops over steps and leaves), in float64, over 30 random steps on a
multi-leaf pytree; AMSGrad also against reference numbers worked out by hand from
PyTorch's Adam(amsgrad=True) update (torch.optim.Adam's documented algorithm) and from
Reddi et al. 2018, Algorithm 2; AdamW against optax.adamw. Each optimizer is run in one
jitted ``lax.scan`` (one compile per case).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lrjax

NUM_STEPS = 30
MASK = {"w": True, "b": False, "nested": {"s": True}}


# ------------------------------------------------------------------------------------
# Problem data and runner
# ------------------------------------------------------------------------------------
def _random_problem(seed: int = 0) -> tuple[dict, dict]:
    """Initial params (numpy, 3 leaves of different shapes) and a stack of gradients."""
    rng = np.random.default_rng(seed)
    params = {
        "w": rng.normal(size=(3, 4)),
        "b": rng.normal(size=(4,)),
        "nested": {"s": np.asarray(1.5)},
    }
    grads = jax.tree.map(lambda p: rng.normal(size=(NUM_STEPS, *p.shape)), params)
    return params, grads


def run_optimizer(opt: optax.GradientTransformation, params: dict, grads: dict) -> dict:
    """Params after applying ``opt`` to the stacked gradients, in one jitted scan."""

    def step(carry, g):
        p, state = carry
        updates, state = opt.update(g, state, p)
        return (optax.apply_updates(p, updates), state), None

    @jax.jit
    def run(p, gs):
        return jax.lax.scan(step, (p, opt.init(p)), gs)[0][0]

    return jax.tree.map(np.asarray, run(params, grads))


def _leaves(tree: dict) -> list:
    return jax.tree.leaves(tree)


def _mask_leaves(mask: dict | None, params: dict) -> list[bool]:
    return [True] * len(_leaves(params)) if mask is None else _leaves(mask)


def _num_steps(grads: dict) -> int:
    return _leaves(grads)[0].shape[0]


def _step_grads(grads: dict, t: int) -> list[np.ndarray]:
    return [g[t] for g in _leaves(grads)]


def _restore(params: dict, leaves: list) -> dict:
    return jax.tree.unflatten(jax.tree.structure(params), leaves)


# ------------------------------------------------------------------------------------
# numpy transcriptions (from the papers / PyTorch docs' pseudo-code)
# ------------------------------------------------------------------------------------
def _constant(value):
    return lambda t: value


def np_decoupled_step(theta, direction, t, lr, wd, mult, decays):
    """Loshchilov & Hutter: -lr (d + wd theta) if mult is None, else -mult (lr d + wd theta)."""
    decay = wd(t) if decays else 0.0
    if mult is None:
        return theta - lr(t) * (direction + decay * theta)
    return theta - mult(t) * (lr(t) * direction + decay * theta)


def np_adamw(params, grads, lr, b1, b2, eps, wd, mult=None, mask=None):
    theta = [np.array(p, np.float64) for p in _leaves(params)]
    m = [np.zeros_like(p) for p in theta]
    v = [np.zeros_like(p) for p in theta]
    decays = _mask_leaves(mask, params)
    for t in range(_num_steps(grads)):
        for i, g in enumerate(_step_grads(grads, t)):
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            m_hat = m[i] / (1 - b1 ** (t + 1))
            v_hat = v[i] / (1 - b2 ** (t + 1))
            d = m_hat / (np.sqrt(v_hat) + eps)
            theta[i] = np_decoupled_step(theta[i], d, t, lr, wd, mult, decays[i])
    return _restore(params, theta)


def np_sgdw(params, grads, lr, momentum, nesterov, wd, mult=None, mask=None):
    theta = [np.array(p, np.float64) for p in _leaves(params)]
    buf = [np.zeros_like(p) for p in theta]
    decays = _mask_leaves(mask, params)
    for t in range(_num_steps(grads)):
        for i, g in enumerate(_step_grads(grads, t)):
            buf[i] = momentum * buf[i] + g
            d = g + momentum * buf[i] if nesterov else buf[i]
            theta[i] = np_decoupled_step(theta[i], d, t, lr, wd, mult, decays[i])
    return _restore(params, theta)


def np_amsgrad(params, grads, lr, b1, b2, eps, bias_correction):
    """PyTorch Adam(amsgrad=True) if bias_correction, else Reddi et al.'s Algorithm 2."""
    theta = [np.array(p, np.float64) for p in _leaves(params)]
    m = [np.zeros_like(p) for p in theta]
    v = [np.zeros_like(p) for p in theta]
    v_max = [np.zeros_like(p) for p in theta]
    for t in range(_num_steps(grads)):
        for i, g in enumerate(_step_grads(grads, t)):
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            v_max[i] = np.maximum(v_max[i], v[i])
            if bias_correction:
                denom = np.sqrt(v_max[i]) / math.sqrt(1 - b2 ** (t + 1)) + eps
                theta[i] = theta[i] - lr / (1 - b1 ** (t + 1)) * m[i] / denom
            else:
                theta[i] = theta[i] - lr * m[i] / (np.sqrt(v_max[i]) + eps)
    return _restore(params, theta)


def np_sgdr_cycle(t: int, period: int, period_mult: int) -> tuple[int, int]:
    """(steps into the cycle, cycle length) by walking the cycles one by one."""
    start, length = 0, period
    while t >= start + length:
        start, length = start + length, length * period_mult
    return t - start, length


def np_warm_restarts(period, period_mult, wd_norm, min_mult):
    """The paper's eta_t (cosine from 1 to min_mult per cycle) and lambda_norm / sqrt(S_i)."""

    def mult(t):
        position, length = np_sgdr_cycle(t, period, period_mult)
        return min_mult + (1 - min_mult) * 0.5 * (1 + math.cos(math.pi * position / length))

    def wd(t):
        return wd_norm / math.sqrt(np_sgdr_cycle(t, period, period_mult)[1])

    return mult, wd


def _assert_trees_close(actual, expected, rtol=1e-10, atol=1e-12):
    jax.tree.map(
        lambda a, e: np.testing.assert_allclose(a, e, rtol=rtol, atol=atol), actual, expected
    )


# ------------------------------------------------------------------------------------
# AdamW / SGDW against the numpy transcription
# ------------------------------------------------------------------------------------
def _lr_schedule(t):
    return 0.05 * (1 + t) ** -0.5


def _mult_schedule(t):
    return 0.5 + 0.5 * math.cos(t / 7)


# (description, lrjax kwargs, numpy kwargs). Schedules are given to lrjax as jnp
# functions and to numpy as math functions of the same formula.
ADAMW_CASES = [
    ("optax convention", dict(weight_decay=0.1), dict(wd=_constant(0.1))),
    ("mask pytree", dict(weight_decay=0.2, mask=MASK), dict(wd=_constant(0.2), mask=MASK)),
    (
        "mask callable",
        dict(weight_decay=0.2, mask=lambda p: jax.tree.map(lambda x: x.ndim > 0, p)),
        dict(wd=_constant(0.2), mask={"w": True, "b": True, "nested": {"s": False}}),
    ),
    (
        "paper convention with schedules",
        dict(
            weight_decay=0.3,
            multiplier=lambda t: 0.5 + 0.5 * jnp.cos(t / 7.0),
            learning_rate=lambda t: 0.05 * (1 + t) ** -0.5,
        ),
        dict(wd=_constant(0.3), mult=_mult_schedule, lr=_lr_schedule),
    ),
]


@pytest.mark.parametrize("case", ADAMW_CASES, ids=[c[0] for c in ADAMW_CASES])
def test_adamw_matches_numpy(x64, case):
    _, kwargs, np_kwargs = case
    params, grads = _random_problem()
    kwargs = {"learning_rate": 0.03, **kwargs}
    np_kwargs = {"lr": _constant(0.03), **np_kwargs}
    actual = run_optimizer(lrjax.adamw(b1=0.8, b2=0.95, eps=1e-6, **kwargs), params, grads)
    _assert_trees_close(actual, np_adamw(params, grads, b1=0.8, b2=0.95, eps=1e-6, **np_kwargs))


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("paper", [False, True], ids=["optax-convention", "paper-convention"])
def test_sgdw_matches_numpy(x64, nesterov, paper):
    params, grads = _random_problem(1)
    mult = (lambda t: 0.5 + 0.5 * jnp.cos(t / 7.0)) if paper else None
    opt = lrjax.sgdw(
        0.02, momentum=0.85, nesterov=nesterov, weight_decay=0.3, mask=MASK, multiplier=mult
    )
    expected = np_sgdw(
        params, grads, _constant(0.02), 0.85, nesterov, _constant(0.3),
        mult=_mult_schedule if paper else None, mask=MASK,
    )  # fmt: skip
    _assert_trees_close(run_optimizer(opt, params, grads), expected)


def test_adamw_equals_optax_adamw():
    """Same float32 results as optax.adamw, with a schedule and a mask."""
    params, grads = _random_problem(2)
    params, grads = jax.tree.map(lambda x: np.asarray(x, np.float32), (params, grads))
    schedule = optax.cosine_decay_schedule(0.01, NUM_STEPS)
    kwargs = dict(b1=0.85, b2=0.99, eps=1e-7, weight_decay=0.05, mask=MASK)
    actual = run_optimizer(lrjax.adamw(schedule, **kwargs), params, grads)
    expected = run_optimizer(optax.adamw(schedule, **kwargs), params, grads)
    _assert_trees_close(actual, expected, rtol=1e-6, atol=1e-7)


def test_paper_convention_decay_ignores_learning_rate(x64):
    """With a multiplier, zero gradients shrink params by (1 - eta * wd) whatever the lr."""
    params = {"w": np.ones(3)}
    grads = {"w": np.zeros((NUM_STEPS, 3))}
    for lr in (1e-4, 10.0):
        opt = lrjax.sgdw(lr, momentum=0.0, weight_decay=0.01, multiplier=0.5)
        result = run_optimizer(opt, params, grads)["w"]
        np.testing.assert_allclose(result, (1 - 0.5 * 0.01) ** NUM_STEPS, rtol=1e-12)


# ------------------------------------------------------------------------------------
# Warm restarts
# ------------------------------------------------------------------------------------
def test_numpy_sgdr_reference_reproduces_design_sequence():
    """Check of the test's own SGDR transcription against the golden sequence (max .5):
    PyTorch's CosineAnnealingWarmRestarts(T_0=1, T_mult=2, eta_min=0), i.e. Loshchilov &
    Hutter 2017 (SGDR), eq. 5, with T_0 = 1 and T_mult = 2."""
    mult, _ = np_warm_restarts(period=1, period_mult=2, wd_norm=0.0, min_mult=0.0)
    expected = [0.5, 0.5, 0.25, 0.5, 0.4268, 0.25, 0.0732, 0.5]
    np.testing.assert_allclose([0.5 * mult(t) for t in range(8)], expected, atol=1e-4)


def test_normalized_weight_decay_closed_form():
    np.testing.assert_allclose(lrjax.normalized_weight_decay(0.05, 400), 0.05 / 20, rtol=1e-7)
    # Paper, Appendix B.1: lambda = lambda_norm sqrt(b / (B T)); b=128, B=50000, T=200 epochs.
    steps = 50_000 * 200 / 128
    expected = 0.025 * math.sqrt(128 / (50_000 * 200))
    np.testing.assert_allclose(lrjax.normalized_weight_decay(0.025, steps), expected, rtol=1e-6)
    assert lrjax.normalized_weight_decay(0.05, 400).dtype == jnp.float32


@pytest.mark.parametrize("name", ["adamwr", "sgdwr"])
def test_warm_restart_optimizers_match_numpy(x64, name):
    """Period of 2 epochs x 2 steps, doubling: cycles of 4, 8, 16 steps inside 30 steps."""
    params, grads = _random_problem(3)
    restart_kwargs = dict(
        period_epochs=2, steps_per_epoch=2, period_mult=2.0, weight_decay_norm=0.4
    )
    mult, wd = np_warm_restarts(period=4, period_mult=2, wd_norm=0.4, min_mult=0.1)
    if name == "adamwr":
        opt = lrjax.adamwr(0.03, b1=0.8, b2=0.95, min_multiplier=0.1, mask=MASK, **restart_kwargs)
        expected = np_adamw(
            params, grads, _constant(0.03), 0.8, 0.95, 1e-8, wd, mult=mult, mask=MASK
        )
    else:
        opt = lrjax.sgdwr(
            0.03, momentum=0.7, nesterov=True, min_multiplier=0.1, mask=MASK, **restart_kwargs
        )
        expected = np_sgdw(params, grads, _constant(0.03), 0.7, True, wd, mult=mult, mask=MASK)
    _assert_trees_close(run_optimizer(opt, params, grads), expected)


def test_warm_restart_weight_decay_uses_current_period():
    """Zero gradients, lr 0: params shrink by (1 - eta_t lambda_norm / sqrt(S_i)) per step."""
    opt = lrjax.sgdwr(0.0, momentum=0.0, period_epochs=1, steps_per_epoch=3, period_mult=3.0,
                      weight_decay_norm=0.5)  # fmt: skip
    params = {"w": jnp.ones(())}
    state = opt.init(params)
    mult, wd = np_warm_restarts(period=3, period_mult=3, wd_norm=0.5, min_mult=0.0)
    for t in range(13):  # cycles [0, 3), [3, 12), [12, 39)
        updates, state = opt.update({"w": jnp.zeros(())}, state, params)
        np.testing.assert_allclose(updates["w"], -mult(t) * wd(t), rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------------------------
# AMSGrad
# ------------------------------------------------------------------------------------
AMSGRAD_REFERENCE = {
    True: [0.9, 0.82591894, 0.76260458, 0.70525998],
    False: [0.68377233, 0.36895816, 0.0555373, -0.25650994],
}


@pytest.mark.parametrize("bias_correction", [True, False], ids=["pytorch", "paper"])
def test_amsgrad_reference_numbers(x64, bias_correction):
    """x0 = 1, gradients 1, .1, .1, .1, lr .1: PyTorch's Adam(amsgrad=True) (bias-corrected)
    and Reddi et al. 2018, Algorithm 2 (no bias correction), worked out by hand; and the
    numpy transcription agrees."""
    opt = lrjax.amsgrad(0.1, bias_correction=bias_correction)
    x, trajectory = jnp.asarray(1.0), []
    state = opt.init(x)
    for g in (1.0, 0.1, 0.1, 0.1):
        updates, state = opt.update(jnp.asarray(g), state, x)
        x = x + updates
        trajectory.append(float(x))
    np.testing.assert_allclose(trajectory, AMSGRAD_REFERENCE[bias_correction], atol=5e-9)

    grads = {"x": np.asarray([1.0, 0.1, 0.1, 0.1])}
    np_x = np_amsgrad({"x": np.asarray(1.0)}, grads, 0.1, 0.9, 0.999, 1e-8, bias_correction)
    np.testing.assert_allclose(np_x["x"], AMSGRAD_REFERENCE[bias_correction][-1], atol=5e-9)


@pytest.mark.parametrize("bias_correction", [True, False], ids=["pytorch", "paper"])
def test_amsgrad_matches_numpy(x64, bias_correction):
    params, grads = _random_problem(4)
    # Shrinking gradients make v decrease, so the running max matters.
    grads = jax.tree.map(
        lambda g: g * np.geomspace(3, 0.1, NUM_STEPS).reshape(-1, *[1] * (g.ndim - 1)), grads
    )
    opt = lrjax.amsgrad(0.02, b1=0.8, b2=0.9, eps=1e-6, bias_correction=bias_correction)
    expected = np_amsgrad(params, grads, 0.02, 0.8, 0.9, 1e-6, bias_correction)
    _assert_trees_close(run_optimizer(opt, params, grads), expected)


def test_amsgrad_differs_from_optax_amsgrad(x64):
    """optax takes the max of the bias-corrected moment: a different (documented) rule."""
    params, grads = _random_problem(5)
    grads = jax.tree.map(
        lambda g: g * np.geomspace(3, 0.1, NUM_STEPS).reshape(-1, *[1] * (g.ndim - 1)), grads
    )
    ours = run_optimizer(lrjax.amsgrad(0.02), params, grads)
    theirs = run_optimizer(optax.amsgrad(0.02), params, grads)
    assert not np.allclose(ours["w"], theirs["w"], rtol=1e-6)


# ------------------------------------------------------------------------------------
# Hyperparameter injection (plain floats, every argument live, traced under jit: the table
# in tests/test_traced_optimizers.py); schedules for learning_rate and multiplier here.
# ------------------------------------------------------------------------------------
def test_inject_hyperparams_with_schedules_under_jit():
    """learning_rate and multiplier schedules are evaluated by inject_hyperparams."""
    params, grads = _random_problem(7)
    params, grads = jax.tree.map(lambda x: np.asarray(x, np.float32), (params, grads))
    lr = optax.linear_schedule(0.05, 0.01, NUM_STEPS)
    mult = optax.cosine_decay_schedule(1.0, NUM_STEPS)
    kwargs = dict(learning_rate=lr, weight_decay=0.1, multiplier=mult)
    injected = optax.inject_hyperparams(lrjax.adamw)(**kwargs)
    _assert_trees_close(
        run_optimizer(injected, params, grads), run_optimizer(lrjax.adamw(**kwargs), params, grads),
        rtol=1e-5, atol=1e-6,
    )  # fmt: skip


# ------------------------------------------------------------------------------------
# Validation of static arguments
# ------------------------------------------------------------------------------------
_RESTART = dict(period_epochs=1, steps_per_epoch=10, weight_decay_norm=0.05)
INVALID = [
    (lrjax.adamw, dict(learning_rate=0.1, b1=1.0), "b1"),
    (lrjax.adamw, dict(learning_rate=0.1, b2=-0.1), "b2"),
    (lrjax.adamw, dict(learning_rate=0.1, eps=-1e-8), "eps"),
    (lrjax.adamw, dict(learning_rate=0.1, eps_root=-1.0), "eps_root"),
    (lrjax.adamw, dict(learning_rate=0.1, weight_decay=-1e-4), "weight_decay"),
    (lrjax.adamw, dict(learning_rate=0.1, b1=float("nan")), "b1"),
    (lrjax.adamw, dict(learning_rate=0.1, multiplier=-1.0), "multiplier"),
    (lrjax.sgdw, dict(learning_rate=0.1, momentum=1.0), "momentum"),
    (lrjax.sgdw, dict(learning_rate=0.1, weight_decay=-1.0), "weight_decay"),
    (lrjax.amsgrad, dict(learning_rate=0.1, b2=1.5), "b2"),
    (lrjax.amsgrad, dict(learning_rate=0.1, eps=-1.0), "eps"),
    (lrjax.scale_by_amsgrad, dict(b1=-0.5), "b1"),
    (lrjax.adamwr, dict(learning_rate=0.1, **{**_RESTART, "period_epochs": 0}), "period_epochs"),
    (
        lrjax.adamwr,
        dict(learning_rate=0.1, **{**_RESTART, "steps_per_epoch": -3}),
        "steps_per_epoch",
    ),
    (lrjax.adamwr, dict(learning_rate=0.1, **{**_RESTART, "period_epochs": 0.25}), "period_epochs"),
    (
        lrjax.adamwr,
        dict(learning_rate=0.1, **{**_RESTART, "weight_decay_norm": -1}),
        "weight_decay_norm",
    ),
    (lrjax.adamwr, dict(learning_rate=0.1, period_mult=0.5, **_RESTART), "period_mult"),
    (lrjax.sgdwr, dict(learning_rate=0.1, min_multiplier=1.5, **_RESTART), "min_multiplier"),
    (lrjax.sgdwr, dict(learning_rate=0.1, restart_decay=0.0, **_RESTART), "restart_decay"),
    (lrjax.sgdwr, dict(learning_rate=0.1, momentum=-0.1, **_RESTART), "momentum"),
    (
        lrjax.normalized_weight_decay,
        dict(weight_decay_norm=0.1, steps_per_period=0),
        "steps_per_period",
    ),
    (
        lrjax.normalized_weight_decay,
        dict(weight_decay_norm=-0.1, steps_per_period=5),
        "weight_decay_norm",
    ),
    (lrjax.decoupled_weight_decay, dict(learning_rate=0.1, weight_decay=-0.1), "weight_decay"),
]


@pytest.mark.parametrize(
    "factory, kwargs, name", INVALID, ids=[f"{f.__name__}-{n}" for f, _, n in INVALID]
)
def test_invalid_static_arguments_raise(factory, kwargs, name):
    with pytest.raises(ValueError, match=name):
        factory(**kwargs)


def test_warm_restart_arguments_must_be_static():
    """inject_hyperparams without static_args would make the period an array: clear error."""
    opt = optax.inject_hyperparams(lrjax.sgdwr)(
        0.1, period_epochs=2, steps_per_epoch=5, weight_decay_norm=0.1
    )
    with pytest.raises(TypeError, match="static_args"):
        opt.init({"w": jnp.ones(2)})


def test_decoupled_weight_decay_needs_params():
    opt = lrjax.adamw(0.1)
    params = {"w": jnp.ones(2)}
    with pytest.raises(ValueError, match="params"):
        opt.update(params, opt.init(params))


# ------------------------------------------------------------------------------------
# Hardening: bad values refused at construction, with the argument's name
# ------------------------------------------------------------------------------------
INF = float("inf")
BAD_VALUES = [
    (lambda: lrjax.adamw(1e-3, weight_decay=INF), ValueError, "weight_decay"),
    (lambda: lrjax.adamw(1e-3, b1=np.float32(1.5)), ValueError, "b1"),  # numpy scalars checked
    (lambda: lrjax.adamw(1e-3, b2=jnp.asarray(-0.5)), ValueError, "b2"),  # concrete arrays too
    (lambda: lrjax.adamw(1e-3, b2=1 - 1e-9), ValueError, "b2"),  # 1.0 in float32: NaN update
    (lambda: lrjax.adamw(1e39), ValueError, "learning_rate"),  # inf in float32
    (lambda: lrjax.adamw(-1e-3), ValueError, "learning_rate"),
    (lambda: lrjax.adamw(1e-3, multiplier=float("nan")), ValueError, "multiplier"),
    (lambda: lrjax.sgdw(0.1, momentum=np.float64(INF)), ValueError, "momentum"),
    (lambda: lrjax.amsgrad(0.1, eps=INF), ValueError, "eps"),
    (lambda: lrjax.adamwr(0.1, period_mult=INF, **_RESTART), ValueError, "period_mult"),
    (lambda: lrjax.sgdwr(0.1, period_mult=INF, **_RESTART), ValueError, "period_mult"),
    (lambda: lrjax.sgdwr(0.1, period_mult=1e300, **_RESTART), ValueError, "period_mult"),
    (lambda: lrjax.adamwr(0.1, **{**_RESTART, "period_epochs": INF}), ValueError, "period_epochs"),
    (lambda: lrjax.adamwr(0.1, **{**_RESTART, "weight_decay_norm": INF}), ValueError, "weight_decay_norm"),
    (lambda: lrjax.adamwr(0.1, **{**_RESTART, "steps_per_epoch": 2.5}), ValueError, "steps_per_epoch"),
    (lambda: lrjax.normalized_weight_decay(INF, 10), ValueError, "weight_decay_norm"),
    # None is not a learning rate: refused at construction, not at update time.
    (lambda: lrjax.adamw(None), TypeError, "learning_rate"),
    (lambda: lrjax.sgdw(None), TypeError, "learning_rate"),
    (lambda: lrjax.amsgrad(None), TypeError, "learning_rate"),
    (lambda: lrjax.adamwr(None, **_RESTART), TypeError, "learning_rate"),
    (lambda: lrjax.adamw(1e-3, weight_decay=None), TypeError, "weight_decay"),
    (lambda: lrjax.adamw(1e-3, b1=None), TypeError, "b1"),
    (lambda: lrjax.adamw("1e-3"), TypeError, "learning_rate"),
    # Flags are real bools: a truthy string is refused.
    (lambda: lrjax.sgdw(0.1, nesterov="yes"), TypeError, "nesterov"),
    (lambda: lrjax.sgdwr(0.1, nesterov=1, **_RESTART), TypeError, "nesterov"),
    (lambda: lrjax.amsgrad(0.1, bias_correction="no"), TypeError, "bias_correction"),
]  # fmt: skip


@pytest.mark.parametrize("make, error, name", BAD_VALUES, ids=[f"{i}-{c[2]}" for i, c in enumerate(BAD_VALUES)])
def test_bad_values_raise_at_construction(make, error, name):
    with pytest.raises(error, match=name):
        make()


def test_warm_restart_static_arguments_refuse_arrays_at_construction():
    """period_mult as an array (inject_hyperparams without static_args) fails at once."""
    with pytest.raises(TypeError, match="static_args"):
        lrjax.adamwr(0.1, period_mult=jnp.asarray(2.0), **_RESTART)


def test_effective_learning_rate_of_warm_restarts(x64):
    """adamwr/sgdwr: the state holds alpha_t * eta_t of the step just taken (numpy SGDR),
    read through inject_hyperparams and MultiSteps alike, inside one jitted scan."""
    period, mult, lr = 3, 2.0, 0.05
    kwargs = dict(period_epochs=1, steps_per_epoch=period, period_mult=mult, weight_decay_norm=0.1)
    np_mult = np_warm_restarts(period, mult, 0.1, 0.0)[0]
    schedule = optax.linear_schedule(0.1, 0.0, 10)
    optimizers = {
        "adamwr": lrjax.adamwr(lr, **kwargs),
        "sgdwr": lrjax.sgdwr(lr, **kwargs),
        "injected": optax.inject_hyperparams(lrjax.sgdwr, static_args=tuple(kwargs))(lr, **kwargs),
        # a learning-rate schedule times the multiplier; MultiSteps steps it every 2nd call
        "multisteps": optax.MultiSteps(lrjax.adamwr(schedule, **kwargs), every_k_schedule=2),
    }
    params = {"w": jnp.ones(3)}

    @jax.jit
    def logged_rates():
        def run(opt):
            def step(state, _):
                state = opt.update(params, state, params)[1]
                return state, lrjax.effective_learning_rate(state)

            state = opt.init(params)
            return lrjax.effective_learning_rate(state), jax.lax.scan(step, state, None, 10)[1]

        return {name: run(opt) for name, opt in optimizers.items()}

    rates = logged_rates()
    expected = [lr * np_mult(t) for t in range(10)]
    for name in ("adamwr", "sgdwr", "injected"):
        initial, logged = rates[name]
        np.testing.assert_allclose(initial, expected[0], rtol=1e-12)
        np.testing.assert_allclose(logged, expected, rtol=1e-12)
    # After 2k calls the inner optimizer has taken k steps, the last at inner count k - 1;
    # optax evaluates linear_schedule(int32 count) in float32.
    inner = [0.1 * (1 - t / 10) * np_mult(t) for t in range(5)]
    np.testing.assert_allclose(rates["multisteps"][1][1::2], inner, rtol=1e-6)


def test_effective_learning_rate_of_other_optimizers():
    params = {"w": jnp.ones(2)}
    assert float(lrjax.effective_learning_rate(lrjax.adamw(0.3).init(params))) == np.float32(0.3)
    injected = optax.inject_hyperparams(lrjax.amsgrad)(learning_rate=0.2)
    np.testing.assert_allclose(lrjax.effective_learning_rate(injected.init(params)), 0.2)
    with pytest.raises(ValueError, match="inject_hyperparams"):
        lrjax.effective_learning_rate(lrjax.amsgrad(0.1).init(params))
    both = optax.multi_transform(
        {"a": lrjax.adamw(0.1), "b": lrjax.sgdw(0.2)}, {"w": "a", "v": "b"}
    ).init({"w": jnp.ones(2), "v": jnp.ones(2)})
    with pytest.raises(ValueError, match="several"):
        lrjax.effective_learning_rate(both)
