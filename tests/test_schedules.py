"""Decay schedules against numpy references, and every schedule's optax integration.

The references are plain Python loops written from each formula, independent of the
vectorised library code.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import lrjax

COUNTS = np.arange(0, 120)


def reference(function, counts=COUNTS):
    return np.array([function(int(t)) for t in counts], dtype=np.float64)


# --------------------------------------------------------------------------------------
# Values against the formulas
# --------------------------------------------------------------------------------------
FORMULAS = {
    "constant": (lrjax.constant(0.3), lambda t: 0.3),
    "step_decay": (lrjax.step_decay(0.5, 7, 0.5), lambda t: 0.5 * 0.5 ** (t // 7)),
    "multistep_decay": (
        lrjax.multistep_decay(0.5, [40, 10, 40, 90], 0.3),
        lambda t: 0.5 * 0.3 ** sum(m <= t for m in [40, 10, 40, 90]),
    ),
    "exponential_decay": (lrjax.exponential_decay(0.5, 0.7, 9), lambda t: 0.5 * 0.7 ** (t / 9)),
    "exponential_staircase": (
        lrjax.exponential_decay(0.5, 0.7, 9, staircase=True),
        lambda t: 0.5 * 0.7 ** (t // 9),
    ),
    "inverse_time_decay": (lrjax.inverse_time_decay(0.5, 0.3, 4), lambda t: 0.5 / (1 + 0.3 * t / 4)),
    "inverse_time_staircase": (
        lrjax.inverse_time_decay(0.5, 0.3, 4, staircase=True),
        lambda t: 0.5 / (1 + 0.3 * (t // 4)),
    ),
    "polynomial_decay": (
        lrjax.polynomial_decay(0.5, 0.05, 70, power=2.0),
        lambda t: 0.05 + (0.5 - 0.05) * (1 - min(t, 70) / 70) ** 2,
    ),
    "polynomial_increasing": (
        lrjax.polynomial_decay(0.0, 1.0, 70, power=0.5),
        lambda t: 1.0 - (1 - min(t, 70) / 70) ** 0.5,
    ),
    "cosine_annealing": (
        lrjax.cosine_annealing(0.5, 70, min_value=0.02),
        lambda t: 0.02 + (0.5 - 0.02) * (1 + math.cos(math.pi * min(t, 70) / 70)) / 2,
    ),
    "noam": (
        lrjax.noam(64, 25, factor=2.0),
        lambda t: 2.0 * 64**-0.5 * min((t + 1) ** -0.5, (t + 1) * 25**-1.5),
    ),
}


def warmup_reference(target, steps, init, mode):
    def value(t):
        if t >= steps:
            return target(t - steps)
        if mode == "linear":
            return init + (target(0) - init) * t / steps
        if mode == "exponential":
            return init * (target(0) / init) ** (t / steps)
        return init

    return value


def cosine_reference(t):
    return 0.5 * (1 + math.cos(math.pi * min(t, 60) / 60))


for _mode, _init in [("linear", 0.0), ("exponential", 1e-3), ("constant", 0.1)]:
    FORMULAS[f"warmup_{_mode}"] = (
        lrjax.warmup(lrjax.cosine_annealing(1.0, 60), 20, _init, _mode),
        warmup_reference(cosine_reference, 20, _init, _mode),
    )


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_schedule_matches_formula(name):
    schedule, formula = FORMULAS[name]
    values = schedule(COUNTS)
    assert values.dtype == jnp.float32 and values.shape == COUNTS.shape
    np.testing.assert_allclose(values, reference(formula), rtol=2e-6, atol=1e-7)


def test_step_and_multistep_boundaries_are_exact():
    # Switch exactly at multiples of step_size, including where float32 cannot hold t.
    step = 1_000_000_007
    schedule = lrjax.step_decay(1.0, step, gamma=0.5)
    counts = jnp.array([step - 1, step, 2 * step - 1, 2 * step, 2**31 - 1], dtype=jnp.int32)
    np.testing.assert_array_equal(schedule(counts), [1.0, 0.5, 0.5, 0.25, 0.25])
    # Multistep switches at t == milestone; a repeated milestone counts twice; order is free.
    multistep = lrjax.multistep_decay(1.0, [30, 10, 30], gamma=0.5)
    np.testing.assert_array_equal(multistep(jnp.array([9, 10, 29, 30, 10**9])), [1, 0.5, 0.5, 0.125, 0.125])
    staircase = lrjax.exponential_decay(1.0, 0.5, decay_steps=step, staircase=True)
    np.testing.assert_array_equal(staircase(counts), [1.0, 0.5, 0.5, 0.25, 0.25])


def test_cosine_and_polynomial_hold_their_end_value():
    counts = jnp.array([70, 71, 1000, 2**31 - 1])
    np.testing.assert_allclose(lrjax.cosine_annealing(0.5, 70, 0.02)(counts), 0.02, rtol=1e-6)
    np.testing.assert_allclose(lrjax.polynomial_decay(0.5, 0.05, 70)(counts), 0.05, rtol=1e-6)
    np.testing.assert_allclose(lrjax.polynomial_decay(0.5, 0.0, 70)(counts), 0.0, atol=1e-7)


def test_noam_peaks_where_count_plus_one_is_warmup():
    values = np.asarray(lrjax.noam(512, 40)(jnp.arange(200)))
    assert int(np.argmax(values)) == 39
    np.testing.assert_allclose(values[39], (512 * 40) ** -0.5, rtol=1e-6)


def test_warmup_hands_over_to_the_schedule():
    inner = lrjax.step_decay(0.8, 5, 0.5)
    for mode, init in [("linear", 0.0), ("exponential", 0.008), ("constant", 0.01)]:
        values = lrjax.warmup(inner, 10, init, mode)(jnp.arange(-3, 30))
        np.testing.assert_allclose(values[:4], init, rtol=1e-6, atol=1e-8)  # t <= 0
        np.testing.assert_allclose(values[13:], inner(jnp.arange(0, 20)), rtol=1e-6)
    # Exponential warmup is geometric: halfway, the geometric mean of the two ends.
    np.testing.assert_allclose(lrjax.warmup(inner, 10, 0.008, "exponential")(5), math.sqrt(0.008 * 0.8), rtol=1e-6)
    # No warmup at all: the schedule itself, with negative counts clamped.
    np.testing.assert_allclose(lrjax.warmup(inner, 0)(jnp.array([-4, 0, 7])), [0.8, 0.8, 0.4])
    # Any optax schedule works inside, including one returning a bare Python float.
    np.testing.assert_allclose(lrjax.warmup(optax.constant_schedule(0.2), 4)(jnp.arange(6)), [0, 0.05, 0.1, 0.15, 0.2, 0.2])


def test_float64_when_x64_is_on(x64):
    for name in ("exponential_decay", "cosine_annealing", "warmup_exponential"):
        schedule, formula = FORMULAS[name]
        values = schedule(COUNTS)
        assert values.dtype == jnp.float64
        np.testing.assert_allclose(values, reference(formula), rtol=1e-12)


# --------------------------------------------------------------------------------------
# Every schedule as an optax Schedule
# --------------------------------------------------------------------------------------
ALL_SCHEDULES = {name: schedule for name, (schedule, _) in FORMULAS.items()} | {
    "sgdr": lrjax.sgdr(0.5, 3, 2.0, min_value=0.01, decay=0.9),
    "sgdr_fractional": lrjax.sgdr(0.5, 2, 1.5),
    "cyclic": lrjax.cyclic(0.01, 0.5, 4, 6, mode="triangular2"),
    "cyclic_exp_range": lrjax.cyclic(0.01, 0.5, 4, mode="exp_range", gamma=0.999),
    "cyclic_momentum": lrjax.cyclic_momentum(0.85, 0.95, 4),
    "one_cycle": lrjax.one_cycle(0.5, 100),
    "one_cycle_three_phase": lrjax.one_cycle(0.5, 100, anneal="linear", three_phase=True),
    "one_cycle_momentum": lrjax.one_cycle_momentum(100),
}
EXTREME_COUNTS = jnp.array([-(2**31), -12345, -1, 0, 1, 49, 50, 51, 2**24 + 1, 2**31 - 2, 2**31 - 1], jnp.int32)


def test_every_contract_name_is_exported():
    names = {"constant", "step_decay", "multistep_decay", "exponential_decay", "inverse_time_decay",
             "polynomial_decay", "cosine_annealing", "sgdr", "cyclic", "cyclic_momentum", "one_cycle",
             "one_cycle_momentum", "noam", "warmup", "schedule_values", "plot_schedule"}  # fmt: skip
    assert names <= set(lrjax.__all__) and all(callable(getattr(lrjax, name)) for name in names)


@pytest.mark.parametrize("name", sorted(ALL_SCHEDULES))
def test_count_kinds_shapes_and_transforms(name):
    schedule = ALL_SCHEDULES[name]
    grid = jnp.arange(12, dtype=jnp.int32).reshape(3, 4)
    values = schedule(grid)
    assert values.shape == (3, 4) and values.dtype == jnp.float32
    for count in (7, np.int64(7), jnp.int32(7), 7.0):
        value = schedule(count)
        assert value.dtype == jnp.float32 and value.shape == ()
        np.testing.assert_allclose(value, values[1, 3], rtol=1e-6)
    np.testing.assert_allclose(jax.vmap(schedule)(grid.ravel()), values.ravel(), rtol=1e-6)
    np.testing.assert_allclose(jax.jit(schedule)(grid), values, rtol=1e-6)
    # Negative counts (a joined schedule's unused branch) and the largest int32 counts.
    extreme = schedule(EXTREME_COUNTS)
    assert np.all(np.isfinite(extreme))
    np.testing.assert_array_equal(extreme[:3], extreme[3])


@pytest.mark.parametrize("name", sorted(ALL_SCHEDULES))
def test_joined_schedules_have_no_nan(name):
    schedule = ALL_SCHEDULES[name]
    joined = optax.join_schedules([lrjax.constant(0.123), schedule], [50])
    values = joined(EXTREME_COUNTS)
    assert values.dtype == jnp.float32 and np.all(np.isfinite(values))
    np.testing.assert_allclose(values[:6], 0.123, rtol=1e-6)
    np.testing.assert_allclose(values[6:8], schedule(jnp.array([0, 1])), rtol=1e-6)


@pytest.mark.parametrize("name", sorted(ALL_SCHEDULES))
def test_counts_beyond_int32_clamp_instead_of_wrapping(name):
    schedule = ALL_SCHEDULES[name]
    top, zero = schedule(jnp.array([2**31 - 1, 0]))
    # int64 / uint64 arrays, Python ints and floats far beyond int32; 2**32 + 50 would wrap to 50.
    wide = schedule(np.array([2**40, 2**32 + 50, 2**63 - 1, -(2**40), -(2**63)], np.int64))
    np.testing.assert_array_equal(wide, [top, top, top, zero, zero])
    np.testing.assert_array_equal(schedule(np.array([2**64 - 1, 2**32], np.uint64)), [top, top])
    for count in (2**40, 2**70, np.int64(2**40), np.uint32(2**32 - 1), 1e12, [2**40]):
        np.testing.assert_array_equal(np.ravel(schedule(count)), top)
    assert schedule(-(2**70)) == zero


def test_wide_integer_counts_clamp_under_jit_with_x64(x64):
    schedule = lrjax.step_decay(1.0, 2**30, 0.5)  # 0.5 from 2**30 on; 2**40 would wrap to 0
    counts = jnp.array([2**40, 2**32, 2**30, -(2**40)], jnp.int64)
    np.testing.assert_array_equal(jax.jit(schedule)(counts), [0.5, 0.5, 0.5, 1.0])
    unsigned = jnp.array([2**32 - 1, 2**31, 2**30, 0], jnp.uint32)
    np.testing.assert_array_equal(jax.jit(schedule)(unsigned), [0.5, 0.5, 0.5, 1.0])
    np.testing.assert_array_equal(jax.jit(schedule)(jnp.array([2**64 - 1, 5], jnp.uint64)), [0.5, 1.0])
    np.testing.assert_array_equal(jax.jit(schedule)(jnp.array([1e12, 2**31 - 1.0, 2.0**30], jnp.float64)), 0.5)


def test_issue_counts_clamp():
    # The three cases of the issue: a wrapped int64, a wrapped array, an OverflowError.
    assert float(lrjax.step_decay(1.0, 10, 0.5)(np.int64(2**40))) == float(lrjax.step_decay(1.0, 10, 0.5)(2**31 - 1))
    assert float(lrjax.step_decay(1.0, 2**30, 0.5)(np.int64(2**40))) == 0.5  # wrapping gave 1.0
    np.testing.assert_allclose(lrjax.cosine_annealing(1, 100)(np.array([50, 2**32 + 50])), [0.5, 0.0], atol=1e-7)
    assert float(lrjax.step_decay(1.0, 2**30, 0.5)(2**40)) == 0.5


def test_jitted_training_step_does_not_recompile():
    traces = []
    schedule = lrjax.warmup(lrjax.sgdr(0.1, 5, 2.0), 3)
    optimizer = optax.sgd(learning_rate=schedule)
    params = {"w": jnp.ones(3)}

    @jax.jit
    def train_step(params, state):
        traces.append(None)  # runs once per trace, i.e. once per compilation
        grads = jax.tree.map(jnp.ones_like, params)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    state = optimizer.init(params)
    expected = np.ones(3)
    for step in range(8):
        params, state = train_step(params, state)
        expected = expected - float(schedule(step))
    assert len(traces) == 1
    np.testing.assert_allclose(params["w"], expected, rtol=1e-6)


def test_inject_hyperparams_evaluates_the_schedules():
    lr = lrjax.cyclic(0.01, 0.1, 3)
    momentum = lrjax.cyclic_momentum(0.8, 0.9, 3)
    optimizer = optax.inject_hyperparams(optax.sgd)(learning_rate=lr, momentum=momentum)
    params = jnp.zeros(2)
    state = optimizer.init(params)
    update = jax.jit(optimizer.update)
    for step in range(7):
        _, state = update(jnp.ones(2), state, params)
        # inject_hyperparams evaluates at the count before its increment.
        np.testing.assert_allclose(state.hyperparams["learning_rate"], lr(step), rtol=1e-6)
        np.testing.assert_allclose(state.hyperparams["momentum"], momentum(step), rtol=1e-6)


def test_sharded_counts():
    mesh = Mesh(np.array(jax.devices()[:8]), ("data",))
    counts = jnp.arange(64)
    sharded = jax.device_put(counts, NamedSharding(mesh, PartitionSpec("data")))
    for name in ("sgdr_fractional", "one_cycle", "multistep_decay"):
        schedule = ALL_SCHEDULES[name]
        values = jax.jit(schedule)(sharded)
        assert values.sharding.is_equivalent_to(sharded.sharding, 1)
        np.testing.assert_allclose(values, schedule(counts), rtol=1e-6)


def test_schedule_values():
    values = lrjax.schedule_values(lrjax.step_decay(1.0, 2, 0.5), 5)
    assert isinstance(values, np.ndarray) and values.dtype == np.float32
    np.testing.assert_array_equal(values, [1, 1, 0.5, 0.5, 0.25])
    np.testing.assert_allclose(lrjax.schedule_values(optax.constant_schedule(0.3), 3), [0.3] * 3)
    np.testing.assert_allclose(lrjax.schedule_values(lambda t: t, 3), [0, 1, 2])
    with pytest.raises(ValueError, match="num_steps"):
        lrjax.schedule_values(lrjax.constant(1.0), 0)


# --------------------------------------------------------------------------------------
# Validation of static arguments
# --------------------------------------------------------------------------------------
BAD_ARGUMENTS = [
    (lambda: lrjax.constant(-1.0), "value"),
    (lambda: lrjax.constant(math.inf), "value"),
    (lambda: lrjax.step_decay(-0.1, 10), "init_value"),
    (lambda: lrjax.step_decay(0.1, 0), "step_size"),
    (lambda: lrjax.step_decay(0.1, 2.5), "step_size"),
    (lambda: lrjax.step_decay(0.1, 10, gamma=0.0), "gamma"),
    (lambda: lrjax.step_decay(0.1, 10, gamma=1.5), "gamma"),
    (lambda: lrjax.multistep_decay(0.1, []), "milestones"),
    (lambda: lrjax.multistep_decay(0.1, [5, -1]), "milestones"),
    (lambda: lrjax.multistep_decay(0.1, [5], gamma=-0.1), "gamma"),
    (lambda: lrjax.exponential_decay(0.1, 0.0), "decay_rate"),
    (lambda: lrjax.exponential_decay(0.1, 1.1), "decay_rate"),
    (lambda: lrjax.exponential_decay(0.1, 0.5, decay_steps=0), "decay_steps"),
    (lambda: lrjax.inverse_time_decay(0.1, -0.5), "decay_rate"),
    (lambda: lrjax.inverse_time_decay(0.1, 0.5, decay_steps=-3), "decay_steps"),
    (lambda: lrjax.polynomial_decay(0.1, -0.1, 10), "end_value"),
    (lambda: lrjax.polynomial_decay(0.1, 0.0, 0), "total_steps"),
    (lambda: lrjax.polynomial_decay(0.1, 0.0, 10, power=0.0), "power"),
    (lambda: lrjax.cosine_annealing(0.1, 0), "total_steps"),
    (lambda: lrjax.cosine_annealing(0.1, 10, min_value=-1.0), "min_value"),
    (lambda: lrjax.noam(0, 10), "d_model"),
    (lambda: lrjax.noam(512, 0), "warmup_steps"),
    (lambda: lrjax.noam(512, 10, factor=0.0), "factor"),
    (lambda: lrjax.warmup(lrjax.constant(1.0), -1), "warmup_steps"),
    (lambda: lrjax.warmup(lrjax.constant(1.0), 5, mode="cosine"), "mode"),
    (lambda: lrjax.warmup(lrjax.constant(1.0), 5, 0.0, "exponential"), "init_value"),
    (lambda: lrjax.warmup(lrjax.constant(1.0), 5, -0.1), "init_value"),
    (lambda: lrjax.warmup(0.1, 5), "schedule"),
]


@pytest.mark.parametrize("make, name", BAD_ARGUMENTS)
def test_bad_static_arguments_raise_naming_the_argument(make, name):
    with pytest.raises(ValueError, match=name):
        make()


INF = math.inf
# Found by a hostile review (issue 7): each raised nothing, or a raw error, before.
HARDENING = [
    (lambda: lrjax.cyclic(0.1, INF, 2), ValueError, "max_value"),
    (lambda: lrjax.sgdr(INF, 5), ValueError, "max_value"),
    (lambda: lrjax.cosine_annealing(1e39, 5), ValueError, "init_value"),
    (lambda: lrjax.inverse_time_decay(1.0, 1e39), ValueError, "decay_rate"),
    (lambda: lrjax.sgdr(1, 5, period_mult=INF), ValueError, "period_mult"),  # was OverflowError
    (lambda: lrjax.sgdr(1, 5, period_mult=math.nan), ValueError, "period_mult"),
    (lambda: lrjax.sgdr(1, 5, period_mult="2"), TypeError, "period_mult"),
    (lambda: lrjax.exponential_decay(0.1, 0.5, staircase="no"), TypeError, "staircase"),
    (lambda: lrjax.inverse_time_decay(0.1, 0.5, staircase=1), TypeError, "staircase"),
    (lambda: lrjax.one_cycle(0.1, 100, three_phase="no"), TypeError, "three_phase"),
    (lambda: lrjax.one_cycle_momentum(100, three_phase="no"), TypeError, "three_phase"),
    (lambda: lrjax.one_cycle(0.1, 100, pct_start=INF), ValueError, "pct_start"),
    (lambda: lrjax.one_cycle(0.1, 100, pct_start=np.float32(1.5)), ValueError, "pct_start"),
    # numpy scalars and concrete JAX scalars are checked like Python numbers.
    (lambda: lrjax.step_decay(0.1, 10, gamma=np.float32(1.5)), ValueError, "gamma"),
    (lambda: lrjax.cyclic(np.float32(0.5), np.float64(0.1), 4), ValueError, "base_value"),
    (lambda: lrjax.cyclic(0.1, 0.5, 4, mode="exp_range", gamma=jnp.float32(1.5)), ValueError, "gamma"),
    (lambda: lrjax.sgdr(jnp.float32(0.1), 5, min_value=np.float32(0.2)), ValueError, "min_value"),
    (lambda: lrjax.one_cycle_momentum(100, base_momentum=np.float32(0.96)), ValueError, "base_momentum"),
    (lambda: lrjax.step_decay(0.1, np.int64(0)), ValueError, "step_size"),
    (lambda: lrjax.multistep_decay(0.1, [np.int64(5), np.float64(2.5)]), ValueError, "milestones"),
    (lambda: lrjax.multistep_decay(0.1, 5), ValueError, "milestones"),
    # Values derived from finite arguments must stay finite float32 numbers.
    (lambda: lrjax.one_cycle(1.0, 100, div_factor=1e-39), ValueError, "div_factor"),
    (lambda: lrjax.one_cycle(1.0, 100, final_div_factor=1e-44), ValueError, "final_div_factor"),
    (lambda: lrjax.noam(1e-45, 10, factor=1e30), ValueError, "d_model"),
    # one_cycle's PyTorch form: epochs and steps_per_epoch, or total_steps, not both.
    (lambda: lrjax.one_cycle(0.1, 100, epochs=2, steps_per_epoch=50), ValueError, "total_steps"),
    (lambda: lrjax.one_cycle(0.1), ValueError, "total_steps"),
    (lambda: lrjax.one_cycle(0.1, epochs=2), ValueError, "steps_per_epoch"),
    (lambda: lrjax.one_cycle(0.1, epochs=0, steps_per_epoch=10), ValueError, "epochs"),
    (lambda: lrjax.one_cycle(0.1, epochs=1, steps_per_epoch=1), ValueError, "epochs \\* steps_per_epoch"),
    (lambda: lrjax.one_cycle_momentum(epochs=2, steps_per_epoch=2**30), ValueError, "epochs \\* steps_per_epoch"),
    (lambda: lrjax.warmup(lrjax.constant(1.0), 5, mode=None), ValueError, "mode"),
]


@pytest.mark.parametrize("make, error, name", HARDENING)
def test_bad_input_is_a_named_error_at_construction(make, error, name):
    with pytest.raises(error, match=name):
        make()


def test_shape_arguments_cannot_be_traced():
    with pytest.raises(TypeError, match="period_mult"):
        jax.jit(lambda mult: lrjax.sgdr(1.0, 5, period_mult=mult)(3))(2.0)
    with pytest.raises(TypeError, match="step_size"):
        jax.jit(lambda size: lrjax.step_decay(1.0, size)(3))(4)
    with pytest.raises(TypeError, match="pct_start"):
        jax.jit(lambda pct: lrjax.one_cycle(1.0, 100, pct)(3))(0.3)


def test_one_cycle_epochs_form_equals_total_steps():
    counts = jnp.arange(0, 45)
    np.testing.assert_array_equal(
        lrjax.one_cycle(0.1, epochs=4, steps_per_epoch=10, three_phase=True)(counts),
        lrjax.one_cycle(0.1, 40, three_phase=True)(counts),
    )
    np.testing.assert_array_equal(
        lrjax.one_cycle_momentum(epochs=4, steps_per_epoch=10)(counts), lrjax.one_cycle_momentum(40)(counts)
    )
