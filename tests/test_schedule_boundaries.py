"""Every schedule, jitted and vmapped over counts, against a float64 reference at its boundaries.

XLA rewrites arithmetic under ``jit`` (a division by a constant becomes a multiplication by
a rounded reciprocal, ``1 - t / T`` a fused multiply-add, ``pow`` an ``exp(p * log(x))``),
so eager results say little about what a training step computes. Each case below evaluates
the schedule in one compiled program, both vmapped over scalar counts and on the count
array, at and around every boundary of its shape (ends of decays, restarts, phase changes,
milestones, cycle peaks) with non-integer parameters, and compares with a plain-Python
float64 reference written from the formula. Knots (end values, peaks, restart maxima,
bases) must be hit exactly, and nothing may be NaN, values or gradients.
"""

from __future__ import annotations

import bisect
import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lrjax

MAX = 2**31 - 1


def around(*points, width=1):
    """The points and their neighbours within ``width`` (clipped to [0, 2**31 - 1])."""
    counts = {min(max(p + d, 0), MAX) for p in points for d in range(-width, width + 1)}
    return sorted(counts)


def sgdr_restarts(period, period_mult, limit):
    """Restart steps below ``limit``: ceilings of exact rational cumulative boundaries."""
    mult, length, end, restarts = Fraction(str(period_mult)), Fraction(period), Fraction(0), [0]
    while True:
        end += length
        restarts.append(math.ceil(end))
        length *= mult
        if restarts[-1] >= limit:
            return restarts


def sgdr_ref(max_value, period, period_mult, min_value, decay):
    if period_mult == 1:  # fixed cycles: the restarts are the multiples of the period
        restarts = list(range(0, 40 * period, period)) + [MAX // period * period, MAX // period * period + period]
    else:
        restarts = sgdr_restarts(period, period_mult, MAX + 1)

    def value(t):
        if period_mult == 1:
            i, position, length = t // period, t % period, period
        else:
            i = bisect.bisect_right(restarts, t) - 1
            position, length = t - restarts[i], restarts[i + 1] - restarts[i]
        top = max(max_value * decay**i, min_value)
        return min_value + (top - min_value) * (1 + math.cos(math.pi * position / length)) / 2

    return value, restarts


def clr_ref(base, top, up, down, mode, gamma=1.0, momentum=False):
    """PyTorch CyclicLR's formula (cycle from 1, x from the total size and step ratio)."""

    def value(t):
        total = up + down
        cycle = math.floor(1 + t / total)
        x = 1.0 + t / total - cycle
        ratio = up / total
        factor = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
        scale = {"triangular": 1.0, "triangular2": 0.5 ** (cycle - 1), "exp_range": gamma**t}[mode]
        height = (top - base) * factor * scale
        return top - height if momentum else base + height

    return value


def one_cycle_ref(total, pct, three_phase, anneal, knots):
    """PyTorch OneCycleLR's phases (float ends), final knot held from ``total - 1`` on."""
    ends = [pct * total - 1, 2 * pct * total - 2, total - 1] if three_phase else [pct * total - 1, total - 1]

    def value(t):
        t = min(t, total - 1)
        start = 0.0
        for i, end in enumerate(ends):
            if t <= end or i == len(ends) - 1:
                p = (t - start) / (end - start)
                a, b = knots[i], knots[i + 1]
                return b + (a - b) / 2 * (math.cos(math.pi * p) + 1) if anneal == "cos" else (b - a) * p + a
            start = end

    return value


def cosine_ref(init, total, low):
    return lambda t: low + (init - low) * (1 + math.cos(math.pi * min(t, total) / total)) / 2


def warmup_ref(inner, steps, init, mode):
    def value(t):
        if t >= steps:
            return inner(t - steps)
        f = t / steps
        if mode == "linear":
            return init + (inner(0) - init) * f
        return init * (inner(0) / init) ** f if mode == "exponential" else init

    return value


# id: (schedule, float64 reference t -> value, counts, {count: exact knot value})
CASES = {}


def case(name, schedule, reference, counts, exact=None):
    CASES[name] = (schedule, reference, np.asarray(counts, np.int64), exact or {})


case("constant", lrjax.constant(0.37), lambda t: 0.37, around(0, 1, MAX), {0: 0.37, MAX: 0.37})
case("step_decay", lrjax.step_decay(0.53, 7, 0.37), lambda t: 0.53 * 0.37 ** (t // 7),
     around(0, 7, 14, 21, 7 * 306783378, MAX), {0: 0.53, 6: 0.53})
case("step_decay_huge_step", lrjax.step_decay(0.53, 1_000_000_007, 0.37),
     lambda t: 0.53 * 0.37 ** (t // 1_000_000_007), around(1_000_000_007, 2_000_000_014, MAX))
milestones = [3, 17, 17, 40, 2**31 - 2]
case("multistep_decay", lrjax.multistep_decay(0.53, milestones, 0.37),
     lambda t: 0.53 * 0.37 ** sum(m <= t for m in milestones), around(0, 3, 17, 40, MAX - 1), {2: 0.53})
case("exponential_decay", lrjax.exponential_decay(0.53, 0.37, 9), lambda t: 0.53 * 0.37 ** (t / 9),
     around(0, 9, 18, 90), {0: 0.53})
case("exponential_staircase", lrjax.exponential_decay(0.53, 0.37, 9, staircase=True),
     lambda t: 0.53 * 0.37 ** (t // 9), around(9, 18, 27, MAX), {8: 0.53})
case("inverse_time_decay", lrjax.inverse_time_decay(0.53, 0.37, 9), lambda t: 0.53 / (1 + 0.37 * t / 9),
     around(0, 9, 18, MAX), {0: 0.53})
case("inverse_time_staircase", lrjax.inverse_time_decay(0.53, 0.37, 9, staircase=True),
     lambda t: 0.53 / (1 + 0.37 * (t // 9)), around(9, 18, MAX), {8: 0.53})
for power in (0.5, 0.7, 0.9, 2.3):
    for end in (0.0, 0.0021):
        case(f"polynomial_p{power}_end{end}", lrjax.polynomial_decay(0.013, end, 1000, power),
             lambda t, p=power, e=end: e + (0.013 - e) * (1 - min(t, 1000) / 1000) ** p,
             around(0, 500, 1000, MAX, width=2), {0: 0.013, 1000: end, 1001: end, MAX: end})
case("polynomial_increasing", lrjax.polynomial_decay(0.0, 0.7, 37, 0.5),
     lambda t: 0.7 - 0.7 * (1 - min(t, 37) / 37) ** 0.5, around(0, 37, MAX), {0: 0.0, 37: 0.7})
for low in (0.0, 0.013):
    case(f"cosine_min{low}", lrjax.cosine_annealing(0.53, 77, low), cosine_ref(0.53, 77, low),
         around(0, 38, 77, MAX, width=2), {0: 0.53, 77: low, 78: low, MAX: low})
case("noam", lrjax.noam(37.5, 13, 1.7), lambda t: 1.7 * 37.5**-0.5 * min((t + 1) ** -0.5, (t + 1) * 13**-1.5),
     around(0, 12, MAX))
inner = cosine_ref(0.8, 31, 0.0)
for mode, init in (("linear", 0.0), ("exponential", 0.0037), ("constant", 0.05)):
    case(f"warmup_{mode}", lrjax.warmup(lrjax.cosine_annealing(0.8, 31), 11, init, mode),
         warmup_ref(inner, 11, init, mode), around(0, 5, 11, 42, MAX), {0: init, 11: 0.8, 42: 0.0})
for args in ((0.53, 3, 1.7, 0.013, 0.77), (0.53, 7, 1.0, 0.0, 1.0), (1.0, 1, 3.0, 0.0, 1.0)):
    reference, restarts = sgdr_ref(*args)
    case(f"sgdr{args}", lrjax.sgdr(*args), reference, around(*restarts[:12], restarts[-2], MAX),
         {0: args[0], restarts[1]: args[0] if args[4] == 1 else None})
for mode, gamma in (("triangular", 1.0), ("triangular2", 1.0), ("exp_range", 0.93)):
    peaks = [k * 8 + 3 for k in range(4)] + [MAX // 8 * 8 + 3 - 8]
    bases = [k * 8 for k in range(5)] + [MAX // 8 * 8]
    case(f"cyclic_{mode}", lrjax.cyclic(0.013, 0.53, 3, 5, mode, gamma), clr_ref(0.013, 0.53, 3, 5, mode, gamma),
         around(*peaks, *bases, MAX), {0: 0.013, 8: 0.013, **({3: 0.53} if mode != "exp_range" else {}),
                                       **({11: 0.53} if mode == "triangular" else {})})
    case(f"cyclic_momentum_{mode}", lrjax.cyclic_momentum(0.8, 0.95, 3, 5, mode, gamma),
         clr_ref(0.8, 0.95, 3, 5, mode, gamma, momentum=True), around(*peaks, *bases, MAX),
         {0: 0.95, 8: 0.95, **({3: 0.8} if mode != "exp_range" else {})})
for three_phase in (False, True):
    for anneal in ("cos", "linear"):
        total, pct, peak, div, final_div = 37, 0.27, 0.53, 7.5, 130.0
        initial = peak / div
        final = initial / final_div
        lr_knots = [initial, peak, initial, final] if three_phase else [initial, peak, final]
        ends = [pct * total - 1, 2 * pct * total - 2] if three_phase else [pct * total - 1]
        counts = around(0, *(math.floor(e) for e in ends), *(math.ceil(e) for e in ends), 36, MAX)
        case(f"one_cycle_{anneal}_{three_phase}", lrjax.one_cycle(peak, total, pct, div, final_div, anneal, three_phase),
             one_cycle_ref(total, pct, three_phase, anneal, lr_knots), counts, {0: initial, 36: final, 37: final})
        momentum_knots = [0.95, 0.8, 0.95, 0.95] if three_phase else [0.95, 0.8, 0.95]
        case(f"one_cycle_momentum_{anneal}_{three_phase}",
             lrjax.one_cycle_momentum(total, pct, 0.8, 0.95, anneal, three_phase),
             one_cycle_ref(total, pct, three_phase, anneal, momentum_knots), counts, {0: 0.95, 36: 0.95})
# pct_start * total_steps an integer: the peak lands exactly on step 9.
case("one_cycle_integer_peak", lrjax.one_cycle(0.53, 50, 0.2, 7.5, 130.0),
     one_cycle_ref(50, 0.2, False, "cos", [0.53 / 7.5, 0.53, 0.53 / 7.5 / 130]), around(0, 9, 49, MAX), {9: 0.53})
if hasattr(lrjax, "snapshot_schedule"):
    case("snapshot_schedule", lrjax.snapshot_schedule(0.53, 50, 3),
         lambda t: 0.53 / 2 * (math.cos(math.pi * (t % 17) / 17) + 1), around(0, 17, 34, 49, MAX), {17: 0.53, 34: 0.53})
# fmt: on


@pytest.mark.parametrize("name", sorted(CASES))
def test_jitted_and_vmapped_schedule_matches_float64_reference_at_boundaries(name):
    schedule, reference, counts, exact = CASES[name]
    counts32 = jnp.asarray(counts, jnp.int32)
    # One compiled program: vmapped over scalar counts, on the count array, and the
    # gradient in a float count (vmapped): none may be NaN.
    program = jax.jit(
        lambda c: (jax.vmap(schedule)(c), schedule(c), jax.vmap(jax.grad(lambda t: schedule(t)))(c.astype(float)))
    )
    vmapped, batch, grads = program(counts32)
    expected = np.array([reference(int(t)) for t in counts], np.float64)
    for values in (vmapped, batch):
        assert values.dtype == jnp.float32 and values.shape == counts.shape
        np.testing.assert_allclose(values, expected, rtol=3e-6, atol=1e-9)
    np.testing.assert_array_equal(vmapped, batch)
    assert np.all(np.isfinite(grads))
    for t, knot in exact.items():
        if knot is not None:
            (index,) = np.flatnonzero(counts == t)
            assert float(batch[index]) == np.float32(knot), (t, float(batch[index]), knot)
