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

from lrjax.cyclical import sgdr, sgdr_cycle

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
    # 10 * 1.1 is 11.000000000000002 in float64; the restart still lands on 21, not 22.
    index, _, _ = sgdr_cycle(jnp.arange(50), 10, 1.1)
    np.testing.assert_array_equal(np.flatnonzero(np.diff(index)) + 1, [10, 21, 34, 47])


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
