"""Cyclical schedules (SGDR, CLR, one-cycle) against numpy references written from the papers.

The references below are deliberately naive step-by-step loops (exact rationals for SGDR
boundaries), independent of the vectorised library code.
"""

import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrjax.schedules.cyclical import (
    cyclic,
    cyclic_momentum,
    one_cycle,
    one_cycle_momentum,
    sgdr,
    sgdr_cycle,
)

# --------------------------------------------------------------------------------------
# SGDR
# --------------------------------------------------------------------------------------


def sgdr_reference(max_value, period, period_mult, num_steps, min_value=0.0, decay=1.0):
    """SGDR stepped one count at a time; returns (values, index, position, length) arrays.

    Cycle i nominally lasts period * period_mult**i steps (exact rationals, from the
    decimal literal); a restart happens at the first integer step >= the nominal boundary.
    """
    mult = Fraction(str(period_mult))
    nominal_length = Fraction(period)
    nominal_end = nominal_length
    index, start, restart = 0, 0, math.ceil(nominal_end)
    rows = []
    for t in range(num_steps):
        if t == restart:
            index, start = index + 1, t
            nominal_length *= mult
            nominal_end += nominal_length
            restart = math.ceil(nominal_end)
        length = restart - start
        cycle_max = max(max_value * decay**index, min_value)
        value = min_value + (cycle_max - min_value) * (1 + math.cos(math.pi * (t - start) / length)) / 2
        rows.append((value, index, t - start, length))
    return tuple(np.array(column) for column in zip(*rows))


def test_sgdr_pytorch_golden_sequence():
    values = sgdr(0.5, period=1, period_mult=2.0)(jnp.arange(8))
    assert values.dtype == jnp.float32
    np.testing.assert_allclose(values, [0.5, 0.5, 0.25, 0.5, 0.4268, 0.25, 0.0732, 0.5], atol=5e-5)


@pytest.mark.parametrize(
    "period_mult, restarts",
    [
        (10.0, [1, 11, 111, 1111, 11111, 111111, 1111111, 11111111, 111111111, 1111111111]),
        (3.0, [(3**k - 1) // 2 for k in range(1, 21)]),  # 1, 4, 13, 40, 121, 364, ... 1743392200
    ],
)
def test_sgdr_value_is_max_at_every_restart_up_to_2_31(period_mult, restarts):
    """PyTorch/timm compute the cycle with a float log and return the minimum at e.g. t=111."""
    restarts = jnp.array(restarts)
    schedule = sgdr(1.0, period=1, period_mult=period_mult)
    np.testing.assert_array_equal(schedule(restarts), 1.0)
    np.testing.assert_array_equal(schedule(0), 1.0)
    # The step before each restart is the last of its cycle: (1 + cos(pi (L-1)/L)) / 2.
    lengths = np.diff(np.concatenate([[0], np.asarray(restarts)])).astype(np.float64)
    before = (1 + np.cos(np.pi * (lengths - 1) / lengths)) / 2
    np.testing.assert_allclose(schedule(restarts - 1), before, atol=1e-6)
    index, position, length = sgdr_cycle(restarts, 1, period_mult)
    np.testing.assert_array_equal(index, np.arange(1, len(restarts) + 1))
    np.testing.assert_array_equal(position, 0.0)
    # Lengths beyond 2**24 are float32-rounded, hence the relative tolerance.
    np.testing.assert_allclose(length, period_mult ** np.arange(1, len(restarts) + 1), rtol=1e-7)


@pytest.mark.parametrize(
    "max_value, period, period_mult, min_value, decay",
    [
        (0.5, 1, 2.0, 0.0, 1.0),
        (1.0, 3, 1.0, 0.1, 1.0),
        (1.0, 4, 3.0, 0.0, 0.5),
        (0.2, 2, 1.5, 0.01, 0.8),
        (1.0, 10, 1.1, 0.0, 1.0),
        (1.0, 25, 2.2, 0.0, 1.0),
        (1.0, 1, 1.3, 0.0, 0.9),
    ],
)
def test_sgdr_matches_stepwise_reference(max_value, period, period_mult, min_value, decay):
    num_steps = 400
    expected, index, position, length = sgdr_reference(
        max_value, period, period_mult, num_steps, min_value, decay
    )
    counts = jnp.arange(num_steps)
    np.testing.assert_allclose(
        sgdr(max_value, period, period_mult, min_value, decay)(counts), expected, rtol=2e-6, atol=1e-7
    )
    got_index, got_position, got_length = sgdr_cycle(counts, period, period_mult)
    assert got_index.dtype == jnp.int32 and got_position.dtype == got_length.dtype == jnp.float32
    np.testing.assert_array_equal(got_index, index)
    np.testing.assert_array_equal(got_position, position)
    np.testing.assert_array_equal(got_length, length)


def test_sgdr_fractional_boundary_restarts_at_its_ceiling():
    # period 2, period_mult 1.5: nominal boundaries 2, 5, 9.5, 16.25, 26.375 -> 2, 5, 10, 17, 27.
    index, _, _ = sgdr_cycle(jnp.arange(30), 2, 1.5)
    np.testing.assert_array_equal(np.flatnonzero(np.diff(index)) + 1, [2, 5, 10, 17, 27])
    # period 25, period_mult 2.2: 25 + 55 + 121 = 201 exactly, but float64 sums it to
    # 201.00000000000003; the restart must still land on 201, not 202.
    index, _, _ = sgdr_cycle(jnp.arange(300), 25, 2.2)
    np.testing.assert_array_equal(np.flatnonzero(np.diff(index)) + 1, [25, 80, 201])


def test_sgdr_decay_shrinks_max_and_keeps_min():
    schedule = sgdr(0.8, period=4, period_mult=1.0, min_value=0.1, decay=0.5)
    np.testing.assert_allclose(schedule(jnp.array([0, 4, 8, 12])), [0.8, 0.4, 0.2, 0.1], rtol=1e-6)
    # Mid-cycle of cycle 1: halfway between max 0.4 and the unchanged min 0.1.
    np.testing.assert_allclose(schedule(6), 0.25, rtol=1e-6)
    # A max decayed below min_value is held at min_value: the schedule is flat there.
    np.testing.assert_allclose(schedule(jnp.arange(12, 40)), 0.1, rtol=1e-6)


def test_sgdr_counts_negative_huge_float_and_shaped():
    schedule = sgdr(1.0, period=7, period_mult=2.0, min_value=0.05)
    counts = jnp.array([[-(2**31), -1], [2**31 - 1, 0]], dtype=jnp.int32)
    values = schedule(counts)
    assert values.shape == (2, 2) and values.dtype == jnp.float32
    assert np.all(np.isfinite(values)) and np.all((values >= 0.05) & (values <= 1.0))
    np.testing.assert_array_equal(values[0], 1.0)  # negative counts act as count 0
    np.testing.assert_allclose(schedule(10.0), schedule(10), rtol=0)
    np.testing.assert_allclose(jax.vmap(schedule)(jnp.arange(20)), schedule(jnp.arange(20)))


def test_sgdr_restart_table_is_bounded():
    # period_mult just above 1: ~65k restarts fit below 2**31; a little closer is refused.
    index, position, length = sgdr_cycle(jnp.array([2**31 - 1]), 1, 1.0002)
    assert 60_000 < int(index[0]) <= 2**16 and 0 <= float(position[0]) < float(length[0])
    with pytest.raises(ValueError, match="period_mult"):
        sgdr(1.0, period=1, period_mult=1.00001)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(period=0), "period"),
        (dict(period=2.5), "period"),
        (dict(period=2**31), "period"),
        (dict(period_mult=0.9), "period_mult"),
        (dict(min_value=-0.1), "min_value"),
        (dict(max_value=0.1, min_value=0.2), "min_value"),
        (dict(decay=0.0), "decay"),
        (dict(decay=1.5), "decay"),
    ],
)
def test_sgdr_rejects_bad_arguments(kwargs, name):
    args = dict(max_value=1.0, period=10) | kwargs
    with pytest.raises(ValueError, match=name):
        sgdr(**args)


def test_sgdr_float64(x64):
    expected, *_ = sgdr_reference(0.5, 1, 2.0, 64)
    values = sgdr(0.5, 1, 2.0)(jnp.arange(64))
    assert values.dtype == jnp.float64
    np.testing.assert_allclose(values, expected, rtol=1e-12)


# --------------------------------------------------------------------------------------
# CLR: numpy transcription of PyTorch's CyclicLR (float64, cycle counted from 1, x from
# the total size and the step ratio).
# --------------------------------------------------------------------------------------


def cyclic_reference(base, top, up, down, t, scale, scale_mode, momentum=False):
    total = up + down
    ratio = up / total
    cycle = math.floor(1 + t / total)
    x = 1.0 + t / total - cycle
    factor = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
    height = (top - base) * factor * (scale(cycle) if scale_mode == "cycle" else scale(t))
    return top - height if momentum else base + height


CLR_COUNTS = np.arange(64)
CLR_CASES = {
    # name: (cyclic kwargs beyond base/max/up/down, reference scale function, its mode)
    "triangular": (dict(), lambda x: 1.0, "cycle"),
    "triangular2": (dict(mode="triangular2"), lambda x: 1 / 2.0 ** (x - 1), "cycle"),
    "exp_range": (dict(mode="exp_range", gamma=0.97), lambda x: 0.97**x, "iterations"),
    "scale_fn_cycle": (
        dict(scale_fn=lambda x: 1.0 / (1.0 + 0.5 * x), scale_mode="cycle"),
        lambda x: 1.0 / (1.0 + 0.5 * x),
        "cycle",
    ),
    "scale_fn_iterations": (
        dict(scale_fn=lambda x: 1.0 / (1.0 + 0.05 * x), scale_mode="iterations"),
        lambda x: 1.0 / (1.0 + 0.05 * x),
        "iterations",
    ),
}


@pytest.mark.parametrize("case", sorted(CLR_CASES))
@pytest.mark.parametrize("up, down", [(4, None), (3, 7), (5, 1)])
def test_cyclic_matches_pytorch_cycliclr(case, up, down):
    kwargs, scale, scale_mode = CLR_CASES[case]
    steps_down = up if down is None else down
    lr = cyclic(0.01, 0.1, up, down, **kwargs)(CLR_COUNTS)
    momentum = cyclic_momentum(0.8, 0.9, up, down, **kwargs)(CLR_COUNTS)
    assert lr.dtype == momentum.dtype == jnp.float32
    lr_expected = [cyclic_reference(0.01, 0.1, up, steps_down, t, scale, scale_mode) for t in CLR_COUNTS]
    momentum_expected = [
        cyclic_reference(0.8, 0.9, up, steps_down, t, scale, scale_mode, momentum=True) for t in CLR_COUNTS
    ]
    np.testing.assert_allclose(lr, lr_expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(momentum, momentum_expected, rtol=1e-6)


def test_cyclic_boundaries():
    up, down = 3, 5
    triangular = cyclic(0.1, 1.0, up, down)
    np.testing.assert_allclose(triangular(jnp.array([0, up, up + down, 2 * up + down])), [0.1, 1.0, 0.1, 1.0])
    # triangular2: the second cycle's peak is half the amplitude above the base.
    halving = cyclic(0.1, 1.0, up, down, mode="triangular2")
    np.testing.assert_allclose(halving(jnp.array([up, up + down + up, 2 * (up + down) + up])), [1.0, 0.55, 0.325])
    # exp_range scales by gamma**t with the global count, not the cycle or the position.
    exp_range = cyclic(0.0, 1.0, up, down, mode="exp_range", gamma=0.9)
    np.testing.assert_allclose(exp_range(jnp.array([up, up + down + up])), [0.9**up, 0.9 ** (2 * up + down)], rtol=1e-6)
    # Momentum is the mirror image: max where the LR is at its base, base at the LR's peak.
    momentum = cyclic_momentum(0.85, 0.95, up, down)
    np.testing.assert_allclose(momentum(jnp.array([0, up, up + down])), [0.95, 0.85, 0.95], rtol=1e-6)


def test_cyclic_extreme_counts_are_finite():
    counts = jnp.array([-(2**31), -1, 0, 2**31 - 1], dtype=jnp.int32)
    for mode in ("triangular", "triangular2", "exp_range"):
        values = cyclic(0.1, 1.0, 1000, 3, mode=mode, gamma=0.99 if mode == "exp_range" else 1.0)(counts)
        assert np.all(np.isfinite(values)) and np.all((values >= 0.1) & (values <= 1.0))
        np.testing.assert_allclose(values[:3], 0.1)  # negative counts act as count 0


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(base_value=0.2, max_value=0.1), "base_value"),
        (dict(base_value=-0.1), "base_value"),
        (dict(step_size_up=0), "step_size_up"),
        (dict(step_size_down=0), "step_size_down"),
        (dict(step_size_up=2**30, step_size_down=2**30), "step_size_up"),
        (dict(mode="triangle"), "mode"),
        (dict(scale_mode="epochs", scale_fn=jnp.sqrt), "scale_mode"),
        (dict(scale_mode="iterations"), "scale_mode"),
        (dict(gamma=0.9), "gamma"),
        (dict(mode="exp_range", gamma=0.0), "gamma"),
        (dict(mode="exp_range", gamma=1.01), "gamma"),
        (dict(mode="triangular2", scale_fn=jnp.sqrt), "scale_fn"),
        (dict(scale_fn=0.5), "scale_fn"),
    ],
)
def test_cyclic_rejects_bad_arguments(kwargs, name):
    args = dict(base_value=0.01, max_value=0.1, step_size_up=10) | kwargs
    for factory in (cyclic, cyclic_momentum):
        with pytest.raises(ValueError, match=name):
            factory(**args)


# --------------------------------------------------------------------------------------
# One-cycle: numpy transcription of PyTorch's OneCycleLR phases.
# --------------------------------------------------------------------------------------


def one_cycle_reference(total, pct, three_phase, anneal, knots):
    """Value at steps 0..total-1: phase i anneals knots[i] -> knots[i+1] up to its float end."""
    if three_phase:
        ends = [pct * total - 1, 2 * pct * total - 2, total - 1]
    else:
        ends = [pct * total - 1, total - 1]
    values = []
    for t in range(total):
        start = 0.0
        for i, end in enumerate(ends):
            if t <= end or i == len(ends) - 1:
                p = (t - start) / (end - start)
                a, b = knots[i], knots[i + 1]
                if anneal == "cos":
                    values.append(b + (a - b) / 2 * (math.cos(math.pi * p) + 1))
                else:
                    values.append((b - a) * p + a)
                break
            start = end
    return np.array(values)


@pytest.mark.parametrize("anneal", ["cos", "linear"])
@pytest.mark.parametrize("three_phase", [False, True])
@pytest.mark.parametrize("total, pct", [(100, 0.3), (37, 0.25)])
def test_one_cycle_matches_pytorch_onecyclelr(anneal, three_phase, total, pct):
    max_lr, div, final_div = 0.4, 8.0, 50.0
    initial = max_lr / div
    final = initial / final_div
    lr_knots = [initial, max_lr, initial, final] if three_phase else [initial, max_lr, final]
    momentum_knots = [0.95, 0.85, 0.95, 0.95] if three_phase else [0.95, 0.85, 0.95]
    counts = jnp.arange(-3, total + 20)
    lr = one_cycle(max_lr, total, pct, div, final_div, anneal, three_phase)(counts)
    momentum = one_cycle_momentum(total, pct, 0.85, 0.95, anneal, three_phase)(counts)
    lr_expected = one_cycle_reference(total, pct, three_phase, anneal, lr_knots)
    momentum_expected = one_cycle_reference(total, pct, three_phase, anneal, momentum_knots)
    np.testing.assert_allclose(lr[3 : total + 3], lr_expected, rtol=1e-5)
    np.testing.assert_allclose(momentum[3 : total + 3], momentum_expected, rtol=1e-6)
    # Negative counts give step 0; after the cycle the final value is held.
    np.testing.assert_array_equal(lr[:3], lr[3])
    np.testing.assert_array_equal(lr[total + 3 :], lr[total + 2])
    np.testing.assert_array_equal(momentum[total + 3 :], momentum[total + 2])


def test_one_cycle_pins_start_peak_and_last_value():
    # pct_start * total_steps - 1 = 29 is PyTorch's peak step; the last step trains at final.
    schedule = one_cycle(1.0, total_steps=100, pct_start=0.3, div_factor=10.0, final_div_factor=100.0)
    values = np.asarray(schedule(jnp.arange(100)))
    assert int(np.argmax(values)) == 29 and float(values[29]) == 1.0
    np.testing.assert_allclose(values[[0, 99]], [0.1, 0.001], rtol=1e-6)
    three = one_cycle(1.0, 100, 0.3, 10.0, 100.0, anneal="linear", three_phase=True)(jnp.array([29, 58, 99]))
    np.testing.assert_allclose(three, [1.0, 0.1, 0.001], rtol=1e-6)
    np.testing.assert_allclose(one_cycle_momentum(100)(jnp.array([0, 29, 99])), [0.95, 0.85, 0.95], rtol=1e-6)
    # pct_start * total_steps == 1: PyTorch divides 0 by 0; here step 0 is the initial value.
    tiny = one_cycle(1.0, total_steps=10, pct_start=0.1)(jnp.arange(10))
    assert np.all(np.isfinite(tiny)) and float(tiny[0]) == pytest.approx(0.04)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(total_steps=1), "total_steps"),
        (dict(pct_start=0.0), "pct_start"),
        (dict(pct_start=1.0), "pct_start"),
        (dict(pct_start=0.5, three_phase=True), "pct_start"),
        (dict(anneal="cosine"), "anneal"),
        (dict(div_factor=0.0), "div_factor"),
        (dict(final_div_factor=-1.0), "final_div_factor"),
        (dict(max_value=0.0), "max_value"),
    ],
)
def test_one_cycle_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        one_cycle(**(dict(max_value=0.1, total_steps=100) | kwargs))


def test_one_cycle_momentum_rejects_bad_arguments():
    with pytest.raises(ValueError, match="base_momentum"):
        one_cycle_momentum(100, base_momentum=0.96, max_momentum=0.95)
    with pytest.raises(ValueError, match="pct_start"):
        one_cycle_momentum(100, pct_start=1.5)
