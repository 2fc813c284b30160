"""Properties every lrjax optimizer must have, parametrized over all of them.

Gradient accumulation (optax.MultiSteps), chaining after gradient clipping, vmap,
differentiation through the update, bf16/float16 dtypes, convergence on a quadratic and on
Rosenbrock in float32, no recompiles, and user arrays left intact.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lrjax


def make_optimizer(
    name: str, learning_rate, weight_decay: bool = True
) -> optax.GradientTransformation:
    """One optimizer of each kind; restarts every 4, 8, 16... steps for the warm-restart forms."""
    wd = 0.1 if weight_decay else 0.0
    restarts = dict(period_epochs=2, steps_per_epoch=2, period_mult=2.0, weight_decay_norm=wd)
    return {
        "adamw": lambda: lrjax.adamw(learning_rate, weight_decay=wd),
        "adamw-paper": lambda: lrjax.adamw(learning_rate, weight_decay=wd, multiplier=0.5),
        "sgdw": lambda: lrjax.sgdw(learning_rate, momentum=0.9, nesterov=True, weight_decay=wd),
        "adamwr": lambda: lrjax.adamwr(learning_rate, **restarts),
        "sgdwr": lambda: lrjax.sgdwr(learning_rate, **restarts),
        "amsgrad": lambda: lrjax.amsgrad(learning_rate),
        "amsgrad-paper": lambda: lrjax.amsgrad(learning_rate, bias_correction=False),
        "powersign": lambda: lrjax.powersign(learning_rate, sign_decay=lrjax.restart_sign_decay(6)),
        "addsign": lambda: lrjax.addsign(learning_rate, sign_decay=lrjax.cosine_sign_decay(10_000)),
    }[name]()  # fmt: skip


NAMES = [
    "adamw",
    "adamw-paper",
    "sgdw",
    "adamwr",
    "sgdwr",
    "amsgrad",
    "amsgrad-paper",
    "powersign",
    "addsign",
]


def _problem(seed: int, num_steps: int, dtype=np.float32) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    params = {
        "w": rng.normal(size=(3, 4)),
        "b": rng.normal(size=(4,)),
        "nested": {"s": np.asarray(0.7)},
    }
    grads = jax.tree.map(lambda p: rng.normal(size=(num_steps, *p.shape)), params)
    return jax.tree.map(lambda x: jnp.asarray(x, dtype), (params, grads))


def _scan_steps(opt, params, grads):
    """(params, state, last updates) after one update per row of the stacked gradients."""

    def step(carry, g):
        p, state, _ = carry
        updates, state = opt.update(g, state, p)
        return (optax.apply_updates(p, updates), state, updates), None

    return jax.lax.scan(step, (params, opt.init(params), params), grads)[0]


def run_steps(opt, params, grads):
    """Params after one update per row of the stacked gradients (one jitted scan)."""
    return jax.jit(lambda p, gs: _scan_steps(opt, p, gs)[0])(params, grads)


def _assert_trees_close(actual, expected, rtol=2e-6, atol=1e-6):
    jax.tree.map(
        lambda a, e: np.testing.assert_allclose(a, e, rtol=rtol, atol=atol), actual, expected
    )


@pytest.mark.parametrize("name", NAMES)
def test_multisteps_accumulation_equals_mean_gradient_steps(name):
    """MultiSteps(k=2) on g1..g8 == the plain optimizer on the pair means (g1+g2)/2, ..."""
    params, grads = _problem(0, 8)
    accumulated = run_steps(
        optax.MultiSteps(make_optimizer(name, 0.05), every_k_schedule=2), params, grads
    )
    means = jax.tree.map(lambda g: (g[0::2] + g[1::2]) / 2, grads)
    _assert_trees_close(accumulated, run_steps(make_optimizer(name, 0.05), params, means))


@pytest.mark.parametrize("name", NAMES)
def test_chain_after_clip_by_global_norm(name):
    """chain(clip_by_global_norm(1), opt) == opt fed gradients clipped in numpy."""
    params, grads = _problem(1, 6)
    grads = jax.tree.map(lambda g: 3.0 * g, grads)  # global norms well above 1
    chained = optax.chain(optax.clip_by_global_norm(1.0), make_optimizer(name, 0.05))
    norms = np.sqrt(
        sum(np.sum(np.asarray(g).reshape(6, -1) ** 2, axis=1) for g in jax.tree.leaves(grads))
    )
    assert np.all(norms > 1)
    clipped = jax.tree.map(
        lambda g: g / norms.reshape(-1, *[1] * (g.ndim - 1)).astype(np.float32), grads
    )
    _assert_trees_close(
        run_steps(chained, params, grads), run_steps(make_optimizer(name, 0.05), params, clipped)
    )


@pytest.mark.parametrize("name", NAMES)
def test_vmap_over_independent_problems(name):
    """vmap(update) over a batch of 3 parameter sets == updating each one separately."""
    params, grads = _problem(2, 3)  # the gradients' leading axis is the batch here
    batch = jax.tree.map(lambda g: g * 0.5 + 1.0, grads)
    opt = make_optimizer(name, 0.05)

    @jax.jit
    def batched_and_one_by_one(g, p):
        batched = jax.vmap(opt.update)(g, jax.vmap(opt.init)(p), p)[0]
        one_by_one = []
        for i in range(3):
            g_i, p_i = jax.tree.map(lambda x: x[i], (g, p))
            one_by_one.append(opt.update(g_i, opt.init(p_i), p_i)[0])
        return batched, one_by_one

    batched, one_by_one = batched_and_one_by_one(grads, batch)
    for i in range(3):
        _assert_trees_close(jax.tree.map(lambda u: u[i], batched), one_by_one[i])


@pytest.mark.parametrize("name", NAMES)
def test_python_float_leaves_work_like_float32_arrays(name):
    """Params and gradients {"w": 1.0} (Python floats, as optax accepts) == float32 arrays."""
    floats, grads = {"w": 1.0, "v": -2.0}, [{"w": 0.3, "v": -0.1}, {"w": -0.2, "v": 0.4}]

    def two_steps(to_leaf):
        opt, params = make_optimizer(name, 0.05), jax.tree.map(to_leaf, floats)
        state = opt.init(params)
        for g in grads:
            updates, state = opt.update(jax.tree.map(to_leaf, g), state, params)
            params = optax.apply_updates(params, updates)
        return params

    _assert_trees_close(two_steps(lambda x: x), two_steps(lambda x: jnp.asarray(x, jnp.float32)))


@pytest.mark.parametrize("name", NAMES)
def test_grad_through_update_matches_finite_difference(x64, name):
    """d/d(lr) of a loss after two steps: autodiff == central finite difference (float64)."""
    params, grads = _problem(3, 2, np.float64)

    def loss_after_steps(lr):
        p = _scan_steps(make_optimizer(name, lr), params, grads)[0]
        return sum(jnp.sum(jnp.sin(x)) for x in jax.tree.leaves(p))

    @jax.jit
    def gradient_and_finite_difference(lr, h):
        return jax.grad(loss_after_steps)(lr), (
            loss_after_steps(lr + h) - loss_after_steps(lr - h)
        ) / (2 * h)

    gradient, finite_difference = gradient_and_finite_difference(0.05, 1e-6)
    np.testing.assert_allclose(gradient, finite_difference, rtol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("name", NAMES)
def test_low_precision_params_keep_their_dtype(name, dtype):
    """Updates and every float state leaf (moments, buffers) keep the params' dtype."""
    params, grads = _problem(4, 3, np.float32)
    params, grads = jax.tree.map(lambda x: x.astype(dtype), (params, grads))
    params, state, updates = jax.jit(lambda p, g: _scan_steps(make_optimizer(name, 0.05), p, g))(
        params, grads
    )
    for leaf in jax.tree.leaves(updates) + jax.tree.leaves(params):
        assert leaf.dtype == dtype and bool(jnp.all(jnp.isfinite(leaf)))
    float_state = [x for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.floating)]
    assert float_state and all(x.dtype == dtype for x in float_state)


# Per optimizer: learning rate for the quadratic, for Rosenbrock (both cosine-decayed).
CONVERGENCE_LR = {
    "adamw": (0.1, 0.1), "adamw-paper": (0.1, 0.1), "adamwr": (0.1, 0.1),
    "amsgrad": (0.1, 0.1), "amsgrad-paper": (0.1, 0.1),
    "sgdw": (0.01, 0.002), "sgdwr": (0.01, 0.002),
    "powersign": (0.01, 0.002), "addsign": (0.01, 0.002),
}  # fmt: skip
CONVERGENCE_STEPS = 8000


def _quadratic(p):
    return 0.5 * jnp.sum(jnp.asarray([1.0, 3.0, 10.0]) * p["x"] ** 2)


def _rosenbrock(p):
    x, y = p["x"][0], p["x"][1]
    return (1 - x) ** 2 + 100 * (y - x * x) ** 2


def _minimize(opt, loss, x0):
    def step(carry, _):
        p, state = carry
        updates, state = opt.update(jax.grad(loss)(p), state, p)
        return (optax.apply_updates(p, updates), state), None

    p = {"x": jnp.asarray(x0, jnp.float32)}
    run = jax.jit(
        lambda p: jax.lax.scan(step, (p, opt.init(p)), None, length=CONVERGENCE_STEPS)[0][0]
    )
    return np.asarray(run(p)["x"])


@pytest.mark.parametrize("name", NAMES)
def test_converges_on_quadratic_and_rosenbrock_float32(name):
    lr_quadratic, lr_rosenbrock = CONVERGENCE_LR[name]
    schedule = optax.cosine_decay_schedule(lr_quadratic, CONVERGENCE_STEPS)
    # No weight decay: it would move the minimum. The restart forms bring their own cosine.
    lr = lr_quadratic if name.endswith("wr") else schedule
    x = _minimize(make_optimizer(name, lr, weight_decay=False), _quadratic, [1.0, -2.0, 3.0])
    assert x.dtype == np.float32 and np.max(np.abs(x)) < 1e-3, x
    schedule = optax.cosine_decay_schedule(lr_rosenbrock, CONVERGENCE_STEPS)
    lr = lr_rosenbrock if name.endswith("wr") else schedule
    x = _minimize(make_optimizer(name, lr, weight_decay=False), _rosenbrock, [-1.2, 1.0])
    np.testing.assert_allclose(x, [1.0, 1.0], atol=2e-2)


@pytest.mark.parametrize("name", NAMES)
def test_jitted_update_compiles_once_and_leaves_inputs_intact(name):
    params, grads = _problem(5, 4)
    saved = jax.tree.map(np.array, (params, grads))
    opt = make_optimizer(name, optax.linear_schedule(0.1, 0.01, 10))
    traces = []

    @jax.jit
    def update(g, state, p):
        traces.append(1)  # runs only when jax traces (compiles) the function
        return opt.update(g, state, p)

    state = opt.init(params)
    for t in range(4):
        g = jax.tree.map(lambda x: x[t], grads)
        _, state = update(g, state, params)
    assert len(traces) == 1
    for leaf in jax.tree.leaves((params, grads)):
        assert not leaf.is_deleted()  # nothing donated
    _assert_trees_close((params, grads), saved, rtol=0, atol=0)
