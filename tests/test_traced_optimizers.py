"""Hyperparameters are data: the one table of every optimizer and sign decay x every value-like argument.

For each row (a factory and one of its value-like float arguments) a short training on a
fixed problem is a function of that argument, and three things must hold:

* ``jit(vmap(train))`` over several values equals the concrete calls (Python floats, eager);
* ``jax.grad`` of the final loss with respect to the argument equals a central finite
  difference of concrete calls (float64);
* ``optax.inject_hyperparams(factory)(arg=...)`` runs under ``jit`` and equals the concrete
  call, and changing ``state.hyperparams[arg]`` (same compiled function, no retrace) acts as
  building the optimizer with the new value.

``test_table_covers_every_factory_and_argument`` walks ``lrjax.optim.__all__`` and every
factory's signature: a new factory, or a new argument, fails it until it is in the table
(or listed as static, with the reason).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lrjax

NUM_STEPS = 4
TARGET = np.asarray([0.5, -0.6, 1.0])  # near the start: the noise below dominates the gradients
# Added to the gradients: alternating signs, each about 0.7 times the previous, so the
# moving average's sign follows the gradient's for beta 0 but not for beta .9 (PowerSign
# and AddSign's beta matters) whatever the optimizer's step size.
NOISE = np.asarray([[2.0, -2.0, 1.5, -1.5], [-1.4, 1.4, -1.05, 1.05], [1.2, -1.0, 0.8, -0.9],
                    [-0.9, 0.8, -0.6, 0.7]])  # fmt: skip


def loss_fn(params: dict) -> jax.Array:
    """A coupled quadratic plus a quartic term, so gradients change every step."""
    w, b = params["w"], params["b"]
    return (
        jnp.sum((w - TARGET) ** 2 * jnp.asarray([1.0, 0.5, 2.0]))
        + 0.3 * (w[0] * w[1] + b) ** 2
        + 0.05 * jnp.sum(w**4)
        + (b + 0.1) ** 2
    )


def init_params(dtype=jnp.float32) -> dict:
    return {"w": jnp.asarray([0.3, -0.4, 1.1], dtype), "b": jnp.asarray(-0.2, dtype)}


def _noisy_grads(params: dict, t: Any) -> dict:
    grads = jax.grad(loss_fn)(params)
    noise = jnp.asarray(NOISE)[t]
    return {"w": grads["w"] + noise[:3], "b": grads["b"] + noise[3]}


def train(opt: optax.GradientTransformation, params: dict, *, scan: bool = False) -> dict:
    """NUM_STEPS steps of ``opt``: a Python loop (eager calls: no compile per value) or a
    ``lax.scan`` (traced calls: one small compiled body)."""
    state = opt.init(params)

    def step(carry, t):
        params, state = carry
        updates, state = opt.update(_noisy_grads(params, t), state, params)
        return (optax.apply_updates(params, updates), state), None

    if scan:
        return jax.lax.scan(step, (params, state), jnp.arange(NUM_STEPS))[0][0]
    for t in range(NUM_STEPS):
        (params, state), _ = step((params, state), t)
    return params


def flat(params: dict) -> jax.Array:
    return jnp.concatenate([params["w"], params["b"][None]])


class Row(NamedTuple):
    """One factory with fixed keyword arguments and its value-like arguments.

    ``args`` maps each value-like argument to (base value, two other values): the base
    values are used together, and each other value is tried with the rest at base.
    """

    factory: str  # the public name in lrjax.optim.__all__
    build: Callable[..., optax.GradientTransformation]  # build(**hyperparameters)
    args: dict[str, tuple[float, float, float]]
    static_args: tuple[str, ...] = ()
    name: str = ""


def _on_direction(block: Callable[..., optax.GradientTransformation]) -> Callable[..., Any]:
    """A ``scale_by_*`` block as an optimizer: the block, then a fixed learning rate."""

    @functools.wraps(block)
    def build(**kwargs: Any) -> optax.GradientTransformation:
        return optax.chain(block(**kwargs), optax.scale_by_learning_rate(0.05))

    return build


def _sign_decay_optimizer(decay_name: str) -> Callable[..., optax.GradientTransformation]:
    """PowerSign whose sign decay is built from the (possibly traced) arguments."""

    def build(num_periods: Any, zero_after: Any) -> optax.GradientTransformation:
        decay = getattr(lrjax, decay_name)(6, num_periods=num_periods, zero_after=zero_after)
        return lrjax.powersign(0.05, base=2.0, beta=0.9, sign_decay=decay)

    return build


def _normalized_decay_optimizer(
    weight_decay_norm: Any, steps_per_period: Any
) -> optax.GradientTransformation:
    decay = lrjax.normalized_weight_decay(weight_decay_norm, steps_per_period)
    return lrjax.sgdw(0.05, momentum=0.5, weight_decay=decay)


_RESTARTS = dict(period_epochs=1, steps_per_epoch=3, period_mult=2.0)
_STATIC_RESTARTS = tuple(_RESTARTS)
LR = dict(learning_rate=(0.05, 0.01, 0.2))
WD = dict(weight_decay=(0.3, 0.0, 1.0))
ADAM = dict(b1=(0.8, 0.5, 0.95), b2=(0.9, 0.8, 0.99), eps=(0.2, 0.05, 0.5))
ADAM_ROOT = dict(**ADAM, eps_root=(0.1, 0.0, 1.0))
MULTIPLIER = dict(multiplier=(0.7, 0.2, 1.5))
RESTART = dict(weight_decay_norm=(0.5, 0.0, 2.0), min_multiplier=(0.1, 0.0, 0.5),
               restart_decay=(0.6, 0.3, 1.0))  # fmt: skip
SIGN = dict(learning_rate=(0.05, 0.01, 0.1), beta=(0.9, 0.0, 0.5), sign_decay=(0.5, 0.0, 1.0))
SIGN_DECAY = dict(num_periods=(1.5, 0.5, 2.2), zero_after=(0.3, 0.0, 5.0))

ROWS: list[Row] = [
    Row("adamw", lrjax.adamw, {**LR, **ADAM_ROOT, **WD}),
    # The paper's convention (a multiplier) and Nesterov momentum.
    Row("sgdw", functools.partial(lrjax.sgdw, nesterov=True),
        {**LR, "momentum": (0.7, 0.0, 0.9), **WD, **MULTIPLIER}),
    Row("adamwr", functools.partial(lrjax.adamwr, **_RESTARTS), {**LR, **ADAM_ROOT, **RESTART}, _STATIC_RESTARTS),
    Row("sgdwr", functools.partial(lrjax.sgdwr, **_RESTARTS), {**LR, "momentum": (0.7, 0.0, 0.9), **RESTART},
        _STATIC_RESTARTS),
    Row("amsgrad", lrjax.amsgrad, {**LR, **ADAM}),
    Row("normalized_weight_decay", _normalized_decay_optimizer,
        dict(weight_decay_norm=(0.4, 0.0, 2.0), steps_per_period=(9.0, 1.0, 100.0))),
    Row("powersign", lrjax.powersign, {**SIGN, "base": (2.0, 1.5, 10.0)}),
    Row("addsign", lrjax.addsign, {**SIGN, "alpha": (0.6, 0.0, 2.0)}),
    Row("cosine_sign_decay", _sign_decay_optimizer("cosine_sign_decay"), SIGN_DECAY),
    Row("restart_sign_decay", _sign_decay_optimizer("restart_sign_decay"), SIGN_DECAY),
]  # fmt: skip
# Building blocks whose aliases are exactly ``chain(block(args), lr)`` (or the block plus a
# direction): the alias's row runs the block with every one of these arguments traced.
COVERED_BY = {
    "scale_by_amsgrad": ("amsgrad", ("b1", "b2", "eps")),
    "scale_by_powersign": ("powersign", ("base", "beta", "sign_decay")),
    "scale_by_addsign": ("addsign", ("alpha", "beta", "sign_decay")),
    "decoupled_weight_decay": ("sgdw", ("learning_rate", "weight_decay", "multiplier")),
}
IDS = [row.name or row.factory for row in ROWS]

# Arguments of each factory that are NOT value-like (and why), for the completeness test.
STATIC = {
    "adamw": {"mask": "pytree", "mu_dtype": "dtype"},
    "sgdw": {"nesterov": "flag", "mask": "pytree", "accumulator_dtype": "dtype"},
    "adamwr": {"mask": "pytree", "mu_dtype": "dtype", **dict.fromkeys(_RESTARTS, "restart table")},
    "sgdwr": {"nesterov": "flag", "mask": "pytree", "accumulator_dtype": "dtype",
              **dict.fromkeys(_RESTARTS, "restart table")},
    "amsgrad": {"bias_correction": "flag", "mu_dtype": "dtype"},
    "scale_by_amsgrad": {"bias_correction": "flag", "mu_dtype": "dtype"},
    "decoupled_weight_decay": {"mask": "pytree"},
    "normalized_weight_decay": {},
    "powersign": {},
    "addsign": {},
    "scale_by_powersign": {},
    "scale_by_addsign": {},
    "linear_sign_decay": {"decay_steps": "step count"},  # no value-like argument
    "cosine_sign_decay": {"decay_steps": "step count"},
    "restart_sign_decay": {"decay_steps": "step count"},
}  # fmt: skip
# Arguments run traced in another factory's row, through the very same code.
SHARED = {("adamw", "multiplier"): "sgdw"}  # both end in decoupled_weight_decay(multiplier=)
# Public names in _OPTIMIZERS that are neither state classes nor factories.
NOT_FACTORIES = {"effective_learning_rate": "reads a state"}


def _hyperparameters(row: Row) -> tuple[dict[str, float], list[dict[str, float]]]:
    """The base values, and the variants: each argument at each of its other values."""
    base = {name: values[0] for name, values in row.args.items()}
    variants = [base] + [
        {**base, name: other} for name, values in row.args.items() for other in values[1:]
    ]
    return base, variants


def _train(row: Row, hparams: dict[str, Any], *, scan: bool = False) -> jax.Array:
    return flat(train(row.build(**hparams), init_params(), scan=scan))


def _stack(dicts: list[dict[str, float]], dtype) -> dict[str, jax.Array]:
    return {k: jnp.asarray([d[k] for d in dicts], dtype) for k in dicts[0]}


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_jit_vmap_and_inject_hyperparams_equal_concrete_calls(row: Row):
    """jit(vmap) over every argument (all traced at once) == the concrete calls; so does
    optax.inject_hyperparams under jit, with each injected value live (no retrace)."""
    base, variants = _hyperparameters(row)
    concrete = np.stack([_train(row, v) for v in variants])  # Python floats, eager
    names = [name for name, values in row.args.items() for _ in values[1:]]
    for name, result in zip(names, concrete[1:]):
        assert not np.allclose(result, concrete[0], rtol=1e-4, atol=0), f"{name} has no effect"

    batched = jax.jit(jax.vmap(functools.partial(_train, row, scan=True)))(
        _stack(variants, jnp.float32)
    )
    assert batched.dtype == jnp.float32
    np.testing.assert_allclose(batched, concrete, rtol=2e-5, atol=1e-5)

    injected = optax.inject_hyperparams(row.build, static_args=row.static_args)(**base)
    traces = []

    @jax.jit
    def run_injected(state):
        traces.append(1)

        def step(carry, t):
            p, state = carry
            updates, state = injected.update(_noisy_grads(p, t), state, p)
            return (optax.apply_updates(p, updates), state), None

        return flat(jax.lax.scan(step, (init_params(), state), jnp.arange(NUM_STEPS))[0][0])

    state = injected.init(init_params())
    for variant, expected in zip(variants, concrete):
        hyperparams = {k: jnp.asarray(variant[k], v.dtype) if k in variant else v
                       for k, v in state.hyperparams.items()}  # fmt: skip
        actual = run_injected(state._replace(hyperparams=hyperparams))
        np.testing.assert_allclose(actual, expected, rtol=2e-5, atol=1e-5)
    assert len(traces) == 1


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_grad_wrt_hyperparameters_matches_finite_differences(row: Row, x64):
    """jax.grad of the final loss w.r.t. every argument == central differences (float64)."""
    base, _ = _hyperparameters(row)

    def final_loss(hparams):
        return loss_fn(train(row.build(**hparams), init_params(jnp.float64), scan=True))

    steps = {k: 1e-6 * max(abs(v), 1.0) for k, v in base.items()}
    shifted = [{**base, k: base[k] + sign * steps[k]} for k in base for sign in (1, -1)]

    @jax.jit
    def grad_and_shifted_losses(hparams, shifted):
        return jax.grad(final_loss)(hparams), jax.vmap(final_loss)(shifted)

    grads, losses = grad_and_shifted_losses(
        {k: jnp.float64(v) for k, v in base.items()}, _stack(shifted, jnp.float64)
    )
    for i, name in enumerate(base):
        fd = (losses[2 * i] - losses[2 * i + 1]) / (2 * steps[name])
        np.testing.assert_allclose(grads[name], fd, rtol=1e-4, atol=1e-7, err_msg=name)


def test_table_covers_every_factory_and_argument():
    """Every factory in lrjax.optim.__all__ has a row; each argument is in one or listed static."""
    factories = {
        name
        for name in lrjax.optim.__all__
        if not inspect.isclass(getattr(lrjax, name)) and name not in NOT_FACTORIES
    }
    assert factories == set(STATIC), sorted(factories ^ set(STATIC))
    covered = {(row.factory, arg) for row in ROWS for arg in row.args}
    for block, (alias, args) in COVERED_BY.items():
        assert {(alias, arg) for arg in args} <= covered, block
        covered |= {(block, arg) for arg in args}
    for (name, arg), other in SHARED.items():
        assert (other, arg) in covered
        covered.add((name, arg))
    for name in sorted(factories):
        for param in inspect.signature(getattr(lrjax, name)).parameters:
            assert (name, param) in covered or param in STATIC[name], (
                f"lrjax.{name}({param}=...) is neither in ROWS (value-like) nor in STATIC"
            )
    assert {row.factory for row in ROWS} | set(COVERED_BY) | {"linear_sign_decay"} == factories
