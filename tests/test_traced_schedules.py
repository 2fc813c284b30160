"""Hyperparameters are data: ONE table, every schedule factory x every value-like argument.

For each row (a factory and one of its value-like arguments, the others fixed):

* ``jit(vmap)`` over several values of the argument equals the concrete calls, one by one;
* ``jax.grad`` with respect to the argument matches a central finite difference (float64);
* the ``optax.inject_hyperparams(lambda v: optax.sgd(factory(v)))`` pattern runs under
  ``jit`` and uses the value held in the state (changed after ``init``), not a constant.

A completeness test reads every factory's signature: each parameter is either a row of the
table or listed as static here, so a new factory or argument cannot be added without rows.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lrjax


class Row(NamedTuple):
    factory: str  # name in lrjax
    arg: str  # the value-like argument varied
    make: Callable[[Any], optax.Schedule]  # value -> schedule, the other arguments fixed
    value: float  # a nominal value, inside the argument's range with room for +-30%
    variant: str = ""  # distinguishes rows of the same (factory, arg)

    @property
    def id(self) -> str:
        return f"{self.factory}{'-' + self.variant if self.variant else ''}:{self.arg}"


L = lrjax  # short rows
ROWS = [
    Row("constant", "value", lambda v: L.constant(v), 0.3),
    Row("step_decay", "init_value", lambda v: L.step_decay(v, 7, 0.5), 0.5),
    Row("step_decay", "gamma", lambda v: L.step_decay(0.5, 7, v), 0.6),
    Row("multistep_decay", "init_value", lambda v: L.multistep_decay(v, [10, 30, 30], 0.3), 0.5),
    Row("multistep_decay", "gamma", lambda v: L.multistep_decay(0.5, [10, 30, 30], v), 0.4),
    Row("exponential_decay", "init_value", lambda v: L.exponential_decay(v, 0.7, 9), 0.5),
    Row("exponential_decay", "decay_rate", lambda v: L.exponential_decay(0.5, v, 9), 0.7),
    Row("exponential_decay", "decay_rate", lambda v: L.exponential_decay(0.5, v, 9, True), 0.7, "stairs"),
    Row("inverse_time_decay", "init_value", lambda v: L.inverse_time_decay(v, 0.3, 4), 0.5),
    Row("inverse_time_decay", "decay_rate", lambda v: L.inverse_time_decay(0.5, v, 4), 0.3),
    Row("inverse_time_decay", "decay_rate", lambda v: L.inverse_time_decay(0.5, v, 4, True), 0.3, "stairs"),
    Row("polynomial_decay", "init_value", lambda v: L.polynomial_decay(v, 0.05, 50, 0.9), 0.5),
    Row("polynomial_decay", "end_value", lambda v: L.polynomial_decay(0.5, v, 50, 0.9), 0.05),
    Row("polynomial_decay", "power", lambda v: L.polynomial_decay(0.5, 0.0, 50, v), 0.9),
    Row("cosine_annealing", "init_value", lambda v: L.cosine_annealing(v, 50, 0.02), 0.5),
    Row("cosine_annealing", "min_value", lambda v: L.cosine_annealing(0.5, 50, v), 0.02),
    Row("noam", "d_model", lambda v: L.noam(v, 25, 2.0), 64.0),
    Row("noam", "factor", lambda v: L.noam(64, 25, v), 2.0),
    Row("warmup", "init_value", lambda v: L.warmup(L.cosine_annealing(1.0, 40), 10, v), 0.1, "linear"),
    Row("warmup", "init_value", lambda v: L.warmup(L.cosine_annealing(1.0, 40), 10, v, "exponential"), 0.01, "exponential"),
    Row("warmup", "init_value", lambda v: L.warmup(L.cosine_annealing(1.0, 40), 10, v, "constant"), 0.1, "constant"),
    Row("warmup", "schedule", lambda v: L.warmup(L.cosine_annealing(v, 40), 10, 0.01, "exponential"), 0.8, "inner"),
    Row("sgdr", "max_value", lambda v: L.sgdr(v, 3, 2.0, 0.01, 0.9), 0.5),
    Row("sgdr", "min_value", lambda v: L.sgdr(0.5, 3, 2.0, v, 0.9), 0.01),
    Row("sgdr", "decay", lambda v: L.sgdr(0.5, 3, 1.5, 0.01, v), 0.7),
    Row("cyclic", "base_value", lambda v: L.cyclic(v, 0.5, 4, 6, "triangular2"), 0.01),
    Row("cyclic", "max_value", lambda v: L.cyclic(0.01, v, 4, 6), 0.5),
    Row("cyclic", "gamma", lambda v: L.cyclic(0.01, 0.5, 4, 6, "exp_range", v), 0.7),
    Row("cyclic_momentum", "base_value", lambda v: L.cyclic_momentum(v, 0.95, 4, 6, "triangular2"), 0.6),
    Row("cyclic_momentum", "max_value", lambda v: L.cyclic_momentum(0.6, v, 4, 6), 0.9),
    Row("cyclic_momentum", "gamma", lambda v: L.cyclic_momentum(0.6, 0.95, 4, 6, "exp_range", v), 0.7),
    Row("one_cycle", "max_value", lambda v: L.one_cycle(v, 50), 0.1),
    Row("one_cycle", "div_factor", lambda v: L.one_cycle(0.1, 50, 0.3, v, 100.0, three_phase=True), 8.0),
    Row("one_cycle", "final_div_factor", lambda v: L.one_cycle(0.1, 50, 0.3, 8.0, v, "linear"), 100.0),
    Row("one_cycle_momentum", "base_momentum", lambda v: L.one_cycle_momentum(50, 0.3, v, 0.95), 0.6),
    Row("one_cycle_momentum", "max_momentum", lambda v: L.one_cycle_momentum(50, 0.3, 0.6, v, three_phase=True), 0.9),
    Row("wsd", "peak_value", lambda v: L.wsd(v, 50, warmup_steps=9, decay_steps=21, min_value=0.02), 0.5),
    Row("wsd", "min_value", lambda v: L.wsd(0.5, 50, warmup_steps=9, decay_steps=21, decay="cosine", min_value=v), 0.02),
    Row("wsd", "init_value", lambda v: L.wsd(0.5, 50, warmup_steps=9, decay_fraction=0.4, warmup="1-sqrt", init_value=v), 0.05),
    Row("wsd_cooldown", "schedule_or_value", lambda v: L.wsd_cooldown(v, 25, 20, "linear", 0.01), 0.4),
    Row("wsd_cooldown", "min_value", lambda v: L.wsd_cooldown(L.inverse_sqrt(0.5, 7), 25, 20, min_value=v), 0.02),
    Row("inverse_sqrt", "peak_value", lambda v: L.inverse_sqrt(v, 9, 4.5), 0.3),
]  # fmt: skip
if hasattr(lrjax, "snapshot_schedule"):
    ROWS.append(Row("snapshot_schedule", "init_value", lambda v: L.snapshot_schedule(v, 50, 3), 0.1))

# Arguments that fix the schedule's shape (static), or are not numbers (callables, modes).
STATIC = {
    "constant": set(),
    "step_decay": {"step_size"},
    "multistep_decay": {"milestones"},
    "exponential_decay": {"decay_steps", "staircase"},
    "inverse_time_decay": {"decay_steps", "staircase"},
    "polynomial_decay": {"total_steps"},
    "cosine_annealing": {"total_steps"},
    "noam": {"warmup_steps"},
    "warmup": {"warmup_steps", "mode"},
    "sgdr": {"period", "period_mult"},
    "cyclic": {"step_size_up", "step_size_down", "mode", "scale_fn", "scale_mode"},
    "cyclic_momentum": {"step_size_up", "step_size_down", "mode", "scale_fn", "scale_mode"},
    "one_cycle": {"total_steps", "pct_start", "anneal", "three_phase", "epochs", "steps_per_epoch"},
    "one_cycle_momentum": {"total_steps", "pct_start", "anneal", "three_phase", "epochs", "steps_per_epoch"},
    "snapshot_schedule": {"total_steps", "num_cycles"},
    "wsd": {"total_steps", "warmup_steps", "decay_steps", "decay_fraction", "decay", "warmup"},
    "wsd_cooldown": {"start_step", "decay_steps", "decay"},
    "inverse_sqrt": {"warmup_steps", "timescale"},
}
NOT_FACTORIES = {"schedule_values", "plot_schedule"}  # utilities among the schedules
# Around the boundaries of the rows' shapes (7, 9, 10, 25, 30, 40, 50, restarts, cycles)
# plus the far end of the count range.
COUNTS = jnp.array([0, 1, 3, 6, 7, 9, 10, 11, 14, 21, 25, 29, 30, 34, 45, 49, 50, 51, 99, 2**31 - 1])
SCALES = np.array([0.7, 1.0, 1.3])
ROW_IDS = [row.id for row in ROWS]


def eager(schedule, counts=COUNTS):
    """The concrete call, evaluated operation by operation (no compile of its own).

    Every schedule is one jitted program; evaluated with ``jax.disable_jit`` its operations
    run one by one and reuse the per-operation programs of every earlier row (one count
    shape throughout), which keeps this table cheap, and makes the reference an
    uncompiled evaluation of the same code.
    """
    with jax.disable_jit():
        return np.asarray(schedule(counts))


def test_every_schedule_factory_and_value_argument_has_a_row():
    porting = set(lrjax.schedules.porting.__all__)  # wrappers of schedules, not schedules
    factories = (set(lrjax.schedules.__all__) - porting - NOT_FACTORIES) | (
        {"snapshot_schedule"} & set(lrjax.__all__))
    assert factories == {row.factory for row in ROWS}
    for name in factories:
        parameters = set(inspect.signature(getattr(lrjax, name)).parameters)
        rows = {row.arg for row in ROWS if row.factory == name}
        assert parameters == STATIC[name] | rows, (name, parameters ^ (STATIC[name] | rows))


@pytest.mark.parametrize("row", ROWS, ids=ROW_IDS)
def test_jit_vmap_over_the_value_equals_the_concrete_calls(row):
    values = row.value * SCALES
    batched = jax.jit(jax.vmap(lambda v: row.make(v)(COUNTS)))(jnp.asarray(values, jnp.float32))
    assert batched.shape == (len(values), len(COUNTS)) and batched.dtype == jnp.float32
    concrete = np.stack([eager(row.make(float(np.float32(v)))) for v in values])
    np.testing.assert_allclose(batched, concrete, rtol=2e-6, atol=1e-9)
    assert np.all(np.isfinite(batched))


@pytest.mark.parametrize("row", ROWS, ids=ROW_IDS)
def test_grad_matches_central_finite_difference(row, x64):
    value = row.value
    grad = jax.jit(jax.vmap(jax.grad(lambda v, t: row.make(v)(t)), in_axes=(None, 0)))(value, COUNTS)
    assert grad.dtype == jnp.float64 and np.all(np.isfinite(grad))
    step = 1e-6 * value
    difference = (eager(row.make(value + step)) - eager(row.make(value - step))) / (2 * step)
    np.testing.assert_allclose(grad, difference, rtol=1e-6, atol=1e-8)
    assert np.any(np.abs(difference) > 1e-9)  # the argument does move the schedule


@pytest.mark.parametrize("row", ROWS, ids=ROW_IDS)
def test_inject_hyperparams_factory_under_jit(row):
    num_steps = 52  # every row's boundaries below 52 are crossed
    optimizer = optax.inject_hyperparams(lambda v: optax.sgd(row.make(v)))(v=row.value)
    params = jnp.ones(2)
    state = optimizer.init(params)
    # The value is data in the state: a changed one must be used, with no recompile.
    state.hyperparams["v"] = jnp.asarray(1.2 * row.value, jnp.float32)
    traces = []

    @jax.jit
    def run(state):
        traces.append(None)

        def step(state, _):
            updates, state = optimizer.update(jnp.ones(2), state, params)
            return state, updates[0]

        return jax.lax.scan(step, state, None, length=num_steps)

    state, updates = run(state)
    expected = -eager(row.make(1.2 * np.float32(row.value)), jnp.arange(num_steps))
    np.testing.assert_allclose(updates, expected, rtol=2e-6, atol=1e-9)
    run(state)
    assert len(traces) == 1


@pytest.mark.parametrize("row", ROWS, ids=ROW_IDS)
def test_non_finite_or_non_number_value_is_refused_naming_the_argument(row):
    # The same rule for every value-like argument: a concrete value (Python, numpy or a
    # concrete JAX scalar) is checked at construction; the error names the argument.
    name = "init_value" if row.arg == "schedule" else row.arg  # the inner schedule's argument
    for bad in (math.inf, -math.inf, math.nan, 1e39, np.float64(np.inf), np.float32(np.nan)):
        with pytest.raises(ValueError, match=name):
            row.make(bad)
    for bad in (None, "0.1", True, np.bool_(False), jnp.array([row.value, row.value])):
        with pytest.raises(TypeError, match=name):
            row.make(bad)
    # A concrete JAX scalar is checked like a number, and works like one.
    np.testing.assert_allclose(eager(row.make(jnp.float32(row.value))), eager(row.make(float(np.float32(row.value)))))


def test_the_three_failures_of_the_issue():
    # Each raised TracerBoolConversionError before (the checks ran on tracers).
    lrs = jnp.array([0.1, 0.2])
    np.testing.assert_allclose(
        jax.vmap(lambda lr: lrjax.cosine_annealing(lr, 100)(5))(lrs),
        [lrjax.cosine_annealing(0.1, 100)(5), lrjax.cosine_annealing(0.2, 100)(5)],
        rtol=1e-6,
    )
    grad = jax.grad(lambda peak: lrjax.one_cycle(peak, 100)(10))(0.1)
    step = 1e-3  # the value is linear in the peak: the difference is exact up to rounding
    difference = (lrjax.one_cycle(0.1 + step, 100)(10) - lrjax.one_cycle(0.1 - step, 100)(10)) / (2 * step)
    np.testing.assert_allclose(grad, difference, rtol=1e-4)
    optimizer = optax.inject_hyperparams(lambda peak: optax.sgd(lrjax.one_cycle(peak, 50)))(peak=0.1)
    params = jnp.zeros(3)
    updates, _ = jax.jit(optimizer.update)(jnp.ones(3), optimizer.init(params), params)
    np.testing.assert_allclose(updates, -lrjax.one_cycle(0.1, 50)(0) * np.ones(3), rtol=1e-6)
