"""Property tests: every schedule, jitted, is finite and inside its documented bounds for
random valid arguments and counts (huge and negative ones included); decays never increase;
triangular CLR is periodic."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lrjax

# 20 examples: each one compiles its schedule (the property is checked jitted).
SETTINGS = settings(max_examples=20, deadline=None, derandomize=True)
INT32 = st.integers(-(2**31), 2**31 - 1)
# Eight counts per example, one array shape: eager evaluation reuses compiled kernels.
COUNTS = st.lists(st.one_of(INT32, st.integers(-5, 300)), min_size=8, max_size=8)
VALUE = st.floats(0.0, 10.0)
POSITIVE = st.floats(1e-4, 10.0)
FACTOR = st.floats(0.01, 1.0)
STEPS = st.integers(1, 10**6)
SMALL_STEPS = st.integers(1, 50)


def _ordered(draw, strategy=VALUE):
    low, high = sorted([draw(strategy), draw(strategy)])
    return low, high


@st.composite
def schedules(draw, family):
    """(schedule, lower bound, upper bound, whether it never increases)."""
    if family == "constant":
        value = draw(VALUE)
        return lrjax.constant(value), value, value, True
    if family == "step_decay":
        init = draw(VALUE)
        return lrjax.step_decay(init, draw(STEPS), draw(FACTOR)), 0.0, init, True
    if family == "multistep_decay":
        init = draw(VALUE)
        milestones = draw(st.lists(st.integers(0, 2**31 - 1), min_size=1, max_size=5))
        return lrjax.multistep_decay(init, milestones, draw(FACTOR)), 0.0, init, True
    if family == "exponential_decay":
        init = draw(VALUE)
        schedule = lrjax.exponential_decay(init, draw(FACTOR), draw(STEPS), draw(st.booleans()))
        return schedule, 0.0, init, True
    if family == "inverse_time_decay":
        init = draw(VALUE)
        schedule = lrjax.inverse_time_decay(init, draw(VALUE), draw(STEPS), draw(st.booleans()))
        return schedule, 0.0, init, True
    if family == "polynomial_decay":
        init, end = draw(VALUE), draw(VALUE)
        schedule = lrjax.polynomial_decay(init, end, draw(STEPS), draw(st.floats(0.1, 4.0)))
        return schedule, min(init, end), max(init, end), init >= end
    if family == "cosine_annealing":
        init, low = draw(VALUE), draw(VALUE)
        schedule = lrjax.cosine_annealing(init, draw(STEPS), low)
        return schedule, min(init, low), max(init, low), init >= low
    if family == "noam":
        d_model, warmup_steps, factor = draw(st.integers(1, 4096)), draw(STEPS), draw(POSITIVE)
        peak = factor * (d_model * warmup_steps) ** -0.5
        return lrjax.noam(d_model, warmup_steps, factor), 0.0, peak, False
    if family == "sgdr":
        low, high = _ordered(draw)
        period, mult = draw(STEPS), draw(st.one_of(st.just(1.0), st.floats(1.01, 10.0)))
        return lrjax.sgdr(high, period, mult, low, draw(FACTOR)), low, high, False
    if family == "cyclic":
        low, high = _ordered(draw)
        mode = draw(st.sampled_from(["triangular", "triangular2", "exp_range"]))
        gamma = draw(st.floats(0.9, 1.0)) if mode == "exp_range" else 1.0
        factory = draw(st.sampled_from([lrjax.cyclic, lrjax.cyclic_momentum]))
        schedule = factory(low, high, draw(STEPS), draw(st.one_of(st.none(), STEPS)), mode, gamma)
        return schedule, low, high, False
    if family == "one_cycle":
        three_phase = draw(st.booleans())
        pct = draw(st.floats(0.01, 0.49 if three_phase else 0.99))
        total, anneal = draw(st.integers(2, 10**6)), draw(st.sampled_from(["cos", "linear"]))
        if draw(st.booleans()):
            low, high = _ordered(draw, st.floats(0.0, 1.0))
            schedule = lrjax.one_cycle_momentum(total, pct, low, high, anneal, three_phase)
            return schedule, low, high, False
        peak, div, final_div = draw(POSITIVE), draw(st.floats(1.0, 100.0)), draw(st.floats(1.0, 1e4))
        schedule = lrjax.one_cycle(peak, total, pct, div, final_div, anneal, three_phase)
        return schedule, peak / div / final_div, peak, False
    if family == "warmup":
        init, peak = _ordered(draw, POSITIVE)
        mode = draw(st.sampled_from(["linear", "exponential", "constant"]))
        inner = lrjax.cosine_annealing(peak, draw(SMALL_STEPS))
        return lrjax.warmup(inner, draw(st.integers(0, 100)), init, mode), 0.0, peak, False
    raise AssertionError(family)


FAMILIES = ["constant", "step_decay", "multistep_decay", "exponential_decay", "inverse_time_decay",
            "polynomial_decay", "cosine_annealing", "noam", "sgdr", "cyclic", "one_cycle", "warmup"]  # fmt: skip


@pytest.mark.parametrize("family", FAMILIES)
@SETTINGS
@given(data=st.data())
def test_finite_and_within_documented_bounds(family, data):
    schedule, low, high, never_increases = data.draw(schedules(family))
    counts = np.sort(np.array(data.draw(COUNTS), dtype=np.int32))
    # Jitted, as a training step evaluates it (XLA rewrites divisions and powers under jit).
    values = np.asarray(jax.jit(schedule)(jnp.asarray(counts)), dtype=np.float64)
    assert values.dtype == np.float64 and np.all(np.isfinite(values))
    slack = 1e-6 * max(abs(high), 1e-30)
    assert np.all(values >= low - slack) and np.all(values <= high + slack), (values, low, high)
    if never_increases:
        assert np.all(np.diff(values) <= slack)


@SETTINGS
@given(
    up=SMALL_STEPS,
    down=st.one_of(st.none(), SMALL_STEPS),
    counts=st.lists(st.integers(0, 2**20), min_size=8, max_size=8),
    cycles=st.integers(1, 2000),
)
def test_triangular_cyclic_is_periodic(up, down, counts, cycles):
    schedule = lrjax.cyclic(0.1, 1.0, up, down)
    period = up + (up if down is None else down)
    counts = jnp.array(counts)
    jitted = jax.jit(schedule)
    np.testing.assert_array_equal(jitted(counts), jitted(counts + cycles * period))
