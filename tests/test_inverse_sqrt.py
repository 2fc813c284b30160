"""lrjax.inverse_sqrt: linear warmup, then ``peak / sqrt((t - W + tau) / tau)``.

References: Hugging Face ``get_inverse_sqrt_schedule`` (transformers 5.25.0), recorded in
tests/fixtures/schedule_peers.json by tests/fixtures/record_schedule_peers.py and
re-recorded live when torch and transformers are installed; a float64 numpy transcription
of the formula; and lrjax's own ``noam``, an independent code path that is the same curve
one step later (``noam(d, W, f)(t) == inverse_sqrt(f / sqrt(d W), W)(t + 1)``).
"""

from __future__ import annotations

import importlib.util
import json
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lrjax

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
PEERS = json.loads((FIXTURES / "schedule_peers.json").read_text())
CASES = {name: case for name, case in PEERS["cases"].items()
         if case["peer"] == "transformers.get_inverse_sqrt_schedule"}
MAX = 2**31 - 1


@pytest.mark.parametrize("name", sorted(CASES))
def test_equals_recorded_hugging_face(name):
    case = CASES[name]
    call = case["lrjax"]
    schedule = lrjax.inverse_sqrt(*call["args"], **call["kwargs"])
    got = np.asarray(jax.jit(schedule)(np.asarray(case["counts"])))
    np.testing.assert_allclose(got, case["values"], rtol=3e-7, atol=1e-9)


@pytest.mark.skipif(not all(importlib.util.find_spec(n) for n in ("torch", "transformers")),
                    reason="torch and transformers not installed")
def test_recorded_numbers_are_what_hugging_face_gives_now():
    from transformers import get_inverse_sqrt_schedule

    spec = importlib.util.spec_from_file_location("record_schedule_peers",
                                                  FIXTURES / "record_schedule_peers.py")
    recorder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recorder)
    for name, case in CASES.items():
        scheduler = get_inverse_sqrt_schedule(recorder._optimizer(), **case["peer_args"])
        fresh = recorder._lambda_lr_values(scheduler, case["counts"])
        np.testing.assert_allclose(fresh, case["values"], rtol=1e-12, err_msg=name)


def formula(t, peak, warmup, timescale):
    t = np.asarray(t, np.float64)
    decayed = peak / np.sqrt((np.maximum(t, warmup) - warmup + timescale) / timescale)
    return np.where(t < warmup, peak * t / max(warmup, 1), decayed)


@pytest.mark.parametrize("peak, warmup, timescale", [
    (1e-3, 4_000, None), (0.37, 17, 5.5), (2.0, 0, 3), (0.01, 1, None), (0.5, 123_457, 10)])
def test_equals_formula_at_boundaries_jitted_and_vmapped(peak, warmup, timescale):
    tau = timescale if timescale is not None else (warmup or 10_000)
    schedule = lrjax.inverse_sqrt(peak, warmup, timescale)
    points = [0, warmup, warmup // 2, 2 * warmup + 1, 10**6, 2**24 + 1, MAX]
    counts = np.array(sorted({min(max(p + d, 0), MAX) for p in points for d in (-1, 0, 1)}), np.int32)
    ref = formula(counts, peak, warmup, tau)
    for got in (np.asarray(jax.jit(schedule)(counts)), np.asarray(jax.jit(jax.vmap(schedule))(counts))):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, ref, rtol=2e-6, atol=1e-30)
        assert got[counts == warmup][0] == np.float32(peak)  # the peak is exact
        assert got[counts == 0][0] == (np.float32(peak) if warmup == 0 else 0.0)
        assert np.all(got > 0) or warmup > 0


@pytest.mark.parametrize("d_model, warmup, factor", [(512, 4_000, 1.0), (64, 10, 2.5), (1, 1, 0.1)])
def test_is_noam_one_step_later(d_model, warmup, factor):
    noam = lrjax.noam(d_model, warmup, factor)
    inverse = lrjax.inverse_sqrt(factor / math.sqrt(d_model * warmup), warmup)
    counts = np.unique(np.r_[np.arange(0, 3 * warmup + 3), [10**5, 10**7, MAX - 1]]).astype(np.int32)
    np.testing.assert_allclose(noam(counts), inverse(counts + 1), rtol=2e-6)


def test_counts_and_traced_peak():
    schedule = lrjax.inverse_sqrt(0.1, 10)
    assert schedule(-3) == 0.0
    for huge in (MAX, 2**40, np.uint64(2**63)):
        np.testing.assert_allclose(schedule(huge), 0.1 / math.sqrt((MAX - 10 + 10) / 10), rtol=1e-6)
    assert np.isnan(schedule(np.float32(np.nan)))
    assert schedule(jnp.arange(6).reshape(2, 3)).shape == (2, 3)
    peaks = jnp.array([0.1, 0.2])
    mapped = jax.vmap(lambda p: lrjax.inverse_sqrt(p, 10)(40))(peaks)
    np.testing.assert_allclose(mapped, np.asarray(peaks) * 0.5, rtol=1e-6)
    grad = jax.grad(lambda p, t: lrjax.inverse_sqrt(p, 10)(t))
    np.testing.assert_allclose([grad(0.3, 5), grad(0.3, 10), grad(0.3, 40)], [0.5, 1.0, 0.5], rtol=1e-6)
    assert float(jax.grad(lambda p: lrjax.inverse_sqrt(p, 10)(0))(0.3)) == 0.0


@pytest.mark.parametrize("args, message", [
    ((-1.0, 10), "peak_value"),
    ((1.0, -1), "warmup_steps"),
    ((1.0, 2.5), "warmup_steps"),
    ((1.0, 10, 0), "timescale"),
    ((1.0, 10, -3.0), "timescale"),
    ((1.0, 10, float("inf")), "timescale"),
])
def test_refuses_bad_static_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        lrjax.inverse_sqrt(*args)


def test_timescale_must_be_static():
    with pytest.raises(TypeError, match="timescale"):
        jax.jit(lambda tau: lrjax.inverse_sqrt(1.0, 10, tau)(0))(5.0)


def test_public_paths():
    assert lrjax.schedules.inverse_sqrt is lrjax.inverse_sqrt
