"""The range test: known answers, smoothing and divergence, options, errors, the result."""

import functools
import importlib
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lrjax

ONE_DEVICE = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("data",))

# --- a quadratic with curvature L: f(w) = L/2 |w|^2, the batch is ignored ----------------
CURVATURE = 4.0
QUAD_STEPS = 60
QUAD_DATA = np.zeros((QUAD_STEPS, 3), np.float32)  # batch 3: never sharded over 8 devices
W0 = {"w": jnp.ones(4, jnp.float32)}


def quadratic(params, batch):
    return 0.5 * CURVATURE * jnp.sum(params["w"] ** 2) + 0.0 * jnp.sum(batch)


# --- linear regression on random data, shared by most tests -----------------------------
STEPS = 30
RNG = np.random.default_rng(0)
X = RNG.normal(size=(2 * STEPS, 12, 3)).astype(np.float32)  # batch 12: not split over 8 devices
Y = (X @ np.array([1.0, -2.0, 0.5], np.float32) + 0.1 * RNG.normal(size=(2 * STEPS, 12))).astype(np.float32)
PARAMS = {"w": jnp.zeros(3, jnp.float32), "b": jnp.zeros((), jnp.float32)}
RANGE = dict(min_lr=1e-4, max_lr=10.0, num_steps=STEPS, smoothing=0.8)


def mse(params, batch):
    x, y = batch
    return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)


def mse_aux(params, batch):
    x, y = batch
    residual = x @ params["w"] + params["b"] - y
    return jnp.mean(residual**2), {"mae": jnp.mean(jnp.abs(residual)), "count": jnp.int32(7)}


# --- numpy references -------------------------------------------------------------------
def ref_ramp(min_lr, max_lr, n, mode):
    t = np.arange(n) / (n - 1)
    return min_lr * (max_lr / min_lr) ** t if mode == "exp" else min_lr + (max_lr - min_lr) * t


def ref_smooth_and_diverge(losses, beta, threshold):
    """Bias-corrected EMA and the divergence step, from the definition, in float64."""
    avg, best, smoothed = 0.0, math.inf, []
    for t, loss in enumerate(losses):
        avg = beta * avg + (1 - beta) * loss
        smoothed.append(avg / (1 - beta ** (t + 1)))
        if math.isfinite(smoothed[-1]):
            best = min(best, smoothed[-1])
        if not math.isfinite(loss) or smoothed[-1] > threshold * best:
            return np.asarray(smoothed), t
    return np.asarray(smoothed), None


def sgd_regression_reference(lrs, x, y):
    """Plain-loop SGD on the mean squared error, float64: the losses before each update."""
    w, b, losses = np.zeros(3), 0.0, []
    for lr, xb, yb in zip(lrs, x, y):
        r = xb @ w + b - yb
        losses.append(np.mean(r**2))
        w, b = w - lr * 2 * xb.T @ r / len(yb), b - lr * 2 * np.mean(r)
    return np.asarray(losses)


# --- known answer -----------------------------------------------------------------------
def test_quadratic_sgd_turns_at_two_over_curvature():
    result = lrjax.range_test(quadratic, W0, optax.sgd, QUAD_DATA, min_lr=1e-3, max_lr=10.0,
                              num_steps=QUAD_STEPS)
    lrs, losses = result.lrs.astype(np.float64), result.losses
    # Closed form: w_{t+1} = (1 - lr_t L) w_t, so f_t = f_0 * prod_{s<t} (1 - lr_s L)^2.
    closed = 0.5 * CURVATURE * 4 * np.concatenate([[1.0], np.cumprod((1 - lrs * CURVATURE) ** 2)])
    finite = np.isfinite(losses)
    np.testing.assert_allclose(losses[finite], closed[:QUAD_STEPS][finite], rtol=1e-4)
    critical = int(np.argmax(lrs > 2 / CURVATURE))  # first step trained above 2/L
    turn = int(np.argmax(np.diff(losses) > 0))  # first step after which the loss grows
    assert abs(turn - critical) <= 2
    assert result.diverged_at is not None and result.diverged_at > turn
    assert result.stopped_early


def test_negative_loss_divergence_is_a_rise_over_best():
    # f - 100 < 0 throughout: divergence is smoothed - best > (threshold - 1) * |best|.
    def shifted(params, batch):
        return quadratic(params, batch) - 100.0

    result = lrjax.range_test(shifted, W0, optax.sgd, QUAD_DATA, min_lr=1e-3, max_lr=10.0,
                              num_steps=QUAD_STEPS, smoothing=0.5, diverge_threshold=1.5)
    avg, best = 0.0, math.inf
    for t, loss in enumerate(result.losses.astype(np.float64)):
        avg = 0.5 * avg + 0.5 * loss
        smoothed = avg / (1 - 0.5 ** (t + 1))
        best = min(best, smoothed)
        if not math.isfinite(loss) or smoothed - best > 0.5 * abs(best):
            break
    assert result.diverged_at == t
    assert result.lrs[t] > 2 / CURVATURE  # only past the stability limit


def test_losses_match_a_numpy_sgd_loop():
    result = lrjax.range_test(mse, PARAMS, optax.sgd, (X, Y), **RANGE)
    np.testing.assert_allclose(result.lrs, ref_ramp(1e-4, 10.0, STEPS, "exp"), rtol=1e-5)
    want = sgd_regression_reference(result.lrs.astype(np.float64), X[:STEPS], Y[:STEPS])
    stop = result.diverged_at if result.diverged_at is not None else STEPS - 1
    np.testing.assert_allclose(result.losses[: stop + 1], want[: stop + 1], rtol=2e-4)
    assert np.all(np.isnan(result.losses[stop + 1:]))


@settings(max_examples=15, deadline=None, derandomize=True)
@given(beta=st.floats(0.0, 0.99), threshold=st.floats(1.05, 10.0))
def test_smoothing_and_divergence_match_the_definition(beta, threshold):
    # beta and threshold are runtime inputs: every example reuses one compiled program.
    options = {**RANGE, "smoothing": beta, "diverge_threshold": threshold}
    result = lrjax.range_test(mse, PARAMS, optax.sgd, (X, Y), **options)
    smoothed, diverged = ref_smooth_and_diverge(result.losses.astype(np.float64), beta, threshold)
    assert result.diverged_at == diverged
    np.testing.assert_allclose(result.smoothed_losses[: len(smoothed)], smoothed, rtol=1e-5)


@pytest.mark.parametrize("mode", ["exp", "linear"])
def test_lrs_are_the_rates_the_optimizer_used(mode):
    # Loss w * c + 100 with c = 1: SGD moves w by exactly -lr_t at step t; aux records w_t.
    def linear(params, batch):
        return params["w"] * jnp.mean(batch) + 100.0, params["w"]

    data = np.ones((20, 3), np.float32)
    result = lrjax.range_test(linear, {"w": jnp.zeros(())}, optax.sgd, data, min_lr=1e-3,
                              max_lr=1.0, num_steps=20, mode=mode, has_aux=True)
    np.testing.assert_allclose(result.lrs, ref_ramp(1e-3, 1.0, 20, mode), rtol=1e-5)
    assert result.lrs[0] == np.float32(1e-3)
    np.testing.assert_allclose(-np.diff(result.aux), result.lrs[:-1], rtol=1e-4)
    assert result.lrs.dtype == np.float32 and result.losses.dtype == np.float32


def test_lr_ramp_schedule():
    sched = lrjax.lr_ramp(1e-7, 10.0, 100)
    values = np.asarray(sched(jnp.arange(100)))
    np.testing.assert_allclose(values, ref_ramp(1e-7, 10.0, 100, "exp"), rtol=1e-5)
    assert float(sched(500)) == pytest.approx(10.0)  # clamped
    with pytest.raises(ValueError, match="num_steps"):
        lrjax.lr_ramp(1e-3, 1.0, 1)


# --- NaN, params, recompiles --------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:valley")  # 7 finite points may not show a fall
def test_injected_nan_stops_cleanly():
    def nan_at_step_7(params, batch):
        x, y = batch
        return mse(params, batch) + jnp.where(x[0, 0] == X[7, 0, 0], jnp.nan, 0.0)

    result = lrjax.range_test(nan_at_step_7, PARAMS, optax.sgd, (X, Y), **RANGE)
    assert result.diverged_at == 7
    assert np.all(np.isfinite(result.losses[:7])) and np.all(np.isnan(result.losses[7:]))
    assert np.all(np.isnan(result.smoothed_losses[7:]))
    # 7 steps are too few for the curve to fall: the documented fallback, with its warning.
    with pytest.warns(UserWarning, match="falling back to the smallest learning rate"):
        assert result.suggest() == pytest.approx(result.lrs[0])


def test_no_work_after_divergence():
    # Count the loss evaluations that actually run (a host callback runs only when executed).
    runs = []

    def counted(params, batch):
        jax.debug.callback(lambda: runs.append(1))
        return quadratic(params, batch)

    result = lrjax.range_test(counted, W0, optax.sgd, QUAD_DATA, min_lr=1e-3, max_lr=10.0,
                              num_steps=QUAD_STEPS)
    assert result.stopped_early and len(runs) == result.diverged_at + 1
    # In chunks too: the chunk in which the curve diverges stops at the diverging step.
    runs.clear()
    chunked = lrjax.range_test(counted, W0, optax.sgd, QUAD_DATA, min_lr=1e-3, max_lr=10.0,
                               num_steps=QUAD_STEPS, chunk_size=7)
    assert chunked.diverged_at % 7 != 6  # it stops inside a chunk, not at a chunk's end
    assert chunked.diverged_at == result.diverged_at and len(runs) == result.diverged_at + 1
    np.testing.assert_array_equal(chunked.losses, result.losses)


def test_params_and_data_unchanged():
    params = {"w": jnp.arange(3.0), "b": jnp.ones(())}
    host = {"w": np.arange(3.0, dtype=np.float32), "b": 1.0}  # a Python number is fine too
    x, y = X.copy(), Y.copy()
    lrjax.range_test(mse, host, optax.adam, (x, y), **RANGE)
    lrjax.range_test(mse, params, optax.adam, (x, y), **RANGE)
    np.testing.assert_array_equal(params["w"], np.arange(3.0))  # still alive: not donated
    np.testing.assert_array_equal(host["w"], np.arange(3.0))
    np.testing.assert_array_equal(x, X)
    np.testing.assert_array_equal(y, Y)


def test_no_recompile_on_second_call():
    traces = []

    def counted(params, batch):
        traces.append(1)
        return mse(params, batch)

    adam = functools.partial(optax.adam, b1=0.8)
    lrjax.range_test(counted, PARAMS, adam, (X, Y), **RANGE)
    first = len(traces)
    assert first > 0
    # Same shapes, an equal partial, other range and smoothing values: no new trace.
    lrjax.range_test(counted, PARAMS, functools.partial(optax.adam, b1=0.8), (X, Y), min_lr=1e-3,
                     max_lr=1.0, num_steps=STEPS, smoothing=0.9, diverge_threshold=5.0)
    assert len(traces) == first
    # baseline_loss is read off the curves on the host, never compiled in.
    for baseline in (2.5, 0.7):
        lrjax.range_test(counted, PARAMS, adam, (X, Y), baseline_loss=baseline, **RANGE)
    assert len(traces) == first
    # The chunked path (an iterable) compiles its own programs once, then reuses them.
    batches = list(zip(X[:STEPS], Y[:STEPS]))
    lrjax.range_test(counted, PARAMS, adam, batches, chunk_size=7, **RANGE)
    chunked = len(traces)
    lrjax.range_test(counted, PARAMS, adam, iter(batches), chunk_size=7, **RANGE)
    assert len(traces) == chunked


def test_repeated_calls_check_new_inputs_again():
    # No plan is cached across calls (measured not to pay): a call with the same structure
    # but other shapes or types is checked in full, and stacked data is cut every time.
    first = lrjax.range_test(mse, PARAMS, optax.sgd, (X, Y), **RANGE)  # X: 2 * STEPS, cut
    again = lrjax.range_test(mse, PARAMS, optax.sgd, (X, Y), **{**RANGE, "smoothing": 0.5})
    np.testing.assert_array_equal(again.losses, first.losses)
    smoothed, _ = ref_smooth_and_diverge(again.losses[:3].astype(np.float64), 0.5, 4.0)
    np.testing.assert_allclose(again.smoothed_losses[:3], smoothed, rtol=1e-6)  # new smoothing
    with pytest.raises(ValueError, match="same leading step axis"):
        lrjax.range_test(mse, PARAMS, optax.sgd, (X, Y[:40]), **RANGE)
    with pytest.raises(ValueError, match="steps along its leading axis"):
        lrjax.range_test(mse, PARAMS, optax.sgd, (X[:10], Y[:10]), **RANGE)
    with pytest.raises(ValueError, match="params must contain arrays"):
        lrjax.range_test(mse, {"w": PARAMS["w"], "b": "zero"}, optax.sgd, (X, Y), **RANGE)
    with pytest.raises(TypeError, match="progress"):
        lrjax.range_test(mse, PARAMS, optax.sgd, (X, Y), progress=3, **RANGE)


def test_results_come_back_bit_exact_through_one_packed_buffer():
    # Records travel to the host as one int32 vector of float bits (one transfer): every
    # float, NaN, inf, -0.0 and a denormal included, must come back bit for bit.
    module = importlib.import_module("lrjax.finder.program")
    special = np.array([np.nan, np.inf, -np.inf, -0.0, 1e-45, 3.5, -2.0], np.float32)
    loss = np.stack([special, special[::-1]])
    records = {"loss": loss, "smoothed": loss * 2, "val": -loss, "aux": {"n": np.arange(3)}}
    lrs = np.linspace(0.1, 0.7, 7, dtype=np.float32)
    packed, aux = jax.jit(module._pack)(np.array([-1, 4], np.int32), lrs, records)
    diverged, got_lrs, got = module._unpack(np.asarray(packed), aux, num_curves=2, has_val=True)
    np.testing.assert_array_equal(diverged, [-1, 4])
    for want, back in ((lrs, got_lrs), (loss, got["loss"]), (loss * 2, got["smoothed"]),
                       (-loss, got["val"])):
        np.testing.assert_array_equal(back.view(np.int32), want.view(np.int32))
    np.testing.assert_array_equal(got["aux"]["n"], np.arange(3))


# --- options ------------------------------------------------------------------------------
def test_has_aux_and_validation():
    val = (X[-1], Y[-1])
    result = lrjax.range_test(mse_aux, PARAMS, optax.sgd, (X, Y), has_aux=True, val_data=val, **RANGE)
    plain = lrjax.range_test(mse, PARAMS, optax.sgd, (X, Y), **RANGE)
    np.testing.assert_array_equal(result.losses, plain.losses)
    stop = result.diverged_at
    assert result.aux["mae"].shape == (STEPS,) and result.aux["count"].dtype == np.int32
    np.testing.assert_array_equal(result.aux["count"][: stop + 1], 7)
    assert np.all(result.aux["count"][stop + 1:] == 0) and np.all(np.isnan(result.aux["mae"][stop + 1:]))
    # Validation loss = loss of the params AFTER step t on the held-out batch.
    lrs = result.lrs.astype(np.float64)
    w, b = np.zeros(3), 0.0
    for t in range(stop):
        r = X[t] @ w + b - Y[t]
        w, b = w - lrs[t] * 2 * X[t].T @ r / len(r), b - lrs[t] * 2 * np.mean(r)
        want = np.mean((X[-1] @ w + b - Y[-1]) ** 2)
        assert result.val_losses[t] == pytest.approx(want, rel=2e-4, abs=1e-6)


def test_accumulation_equals_one_big_batch():
    # k = 2 micro-batches of 6 examples == one batch of 12 for a mean loss.
    micro_x, micro_y = X.reshape(4 * STEPS, 6, 3), Y.reshape(4 * STEPS, 6)
    acc = lrjax.range_test(mse, PARAMS, optax.adam, (micro_x, micro_y), accumulation_steps=2,
                           devices=lrjax.Devices(ONE_DEVICE), **RANGE)
    big = lrjax.range_test(mse, PARAMS, optax.adam, (X, Y), devices=lrjax.Devices(ONE_DEVICE), **RANGE)
    np.testing.assert_allclose(acc.losses, big.losses, rtol=2e-5)
    assert acc.diverged_at == big.diverged_at


def test_sweep_rows_equal_separate_runs():
    result = lrjax.range_test(mse, PARAMS, optax.sgd, (X, Y), sweep={"momentum": [0.0, 0.9]}, **RANGE)
    assert result.losses.shape == (2, STEPS) and result.batch_axes == ("momentum",)
    for row, momentum in enumerate([0.0, 0.9]):
        alone = lrjax.range_test(mse, PARAMS, functools.partial(optax.sgd, momentum=momentum),
                                 (X, Y), **RANGE)
        np.testing.assert_allclose(result.losses[row], alone.losses, rtol=1e-5)
        assert result.diverged_at[row] == (-1 if alone.diverged_at is None else alone.diverged_at)
    assert result.suggest(per_curve=True).shape == (2,)


def test_weight_decay_sweep_with_an_lrjax_partial():
    # Smith's practice: one curve per weight decay, the factory a partial of lrjax.adamw.
    adamw = functools.partial(lrjax.adamw, weight_decay=1e-4)
    result = lrjax.range_test(mse, PARAMS, adamw, (X, Y), sweep={"weight_decay": [0.0, 1.0]}, **RANGE)
    alone = lrjax.range_test(mse, PARAMS, functools.partial(lrjax.adamw, weight_decay=1.0), (X, Y),
                             **RANGE)
    np.testing.assert_allclose(result.losses[1], alone.losses, rtol=1e-4)
    assert not np.allclose(result.losses[0], result.losses[1], equal_nan=True)


def test_sweep_grid_with_seeds_shape():
    init = lambda key: {"w": 0.1 * jax.random.normal(key, (3,)), "b": jnp.zeros(())}  # noqa: E731
    result = lrjax.range_test(mse, None, optax.adam, (X, Y), init_fn=init, num_seeds=2,
                              sweep={"b1": [0.0, 0.5, 0.9], "b2": [0.99]}, **RANGE)
    assert result.losses.shape == (3, 1, 2, STEPS)
    assert result.batch_axes == ("b1", "b2", "seed")
    # Row (i, 0, s) is seed s with b1 = [0, .5, .9][i]: seeds repeat across the grid.
    alone = lrjax.range_test(mse, None, functools.partial(optax.adam, b1=0.5, b2=0.99), (X, Y),
                             init_fn=init, num_seeds=2, **RANGE)
    np.testing.assert_allclose(result.losses[1, 0], alone.losses, rtol=1e-4)
    assert result.suggest(per_curve=True).shape == (3, 1, 2)
    assert result.sweep_points() == [{"b1": b1, "b2": 0.99} for b1 in (0.0, 0.5, 0.9)]


# --- bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(min_lr=float("nan")), ValueError, "min_lr"),
        (dict(max_lr=float("inf")), ValueError, "max_lr"),
        (dict(min_lr=1.0, max_lr=0.1), ValueError, "min_lr must be < max_lr"),
        (dict(num_steps=1), ValueError, "num_steps"),
        (dict(mode="cosine"), ValueError, "mode"),
        (dict(smoothing=1.0), ValueError, "smoothing"),
        (dict(diverge_threshold=1.0), ValueError, "diverge_threshold"),
        (dict(accumulation_steps=0), ValueError, "accumulation_steps"),
        (dict(num_steps=1000), ValueError, "steps along its leading axis"),
        (dict(num_seeds=2), ValueError, "num_seeds needs init_fn"),
        (dict(sweep={"learning_rate": [1.0]}), ValueError, "learning_rate"),
        (dict(sweep={"nonsense": [1.0]}), ValueError, "nonsense"),
        (dict(sweep={"momentum": []}), ValueError, "momentum"),
        (dict(devices=lrjax.Devices(ONE_DEVICE, "batch")), ValueError, "data_axis"),
    ],
)
def test_bad_static_arguments(kwargs, error, match):
    options = {**RANGE, **kwargs}
    with pytest.raises(error, match=match):
        lrjax.range_test(mse, PARAMS, optax.sgd, (X, Y), **options)


def test_bad_callables_and_data():
    with pytest.raises(TypeError, match="factory"):
        lrjax.range_test(mse, PARAMS, optax.sgd(0.1), (X, Y), **RANGE)
    with pytest.raises(ValueError, match="empty"):
        lrjax.range_test(mse, PARAMS, optax.sgd, {}, **RANGE)
    with pytest.raises(ValueError, match="params is None"):
        lrjax.range_test(mse, None, optax.sgd, (X, Y), **RANGE)
    with pytest.raises(ValueError, match="same leading step axis"):
        lrjax.range_test(mse, PARAMS, optax.sgd, (X, Y[:40]), **RANGE)


def test_non_scalar_loss_and_bad_init_fn():
    with pytest.raises(ValueError, match="scalar"):
        lrjax.range_test(lambda p, b: (b[0] @ p["w"]), PARAMS, optax.sgd, (X, Y), **RANGE)
    with pytest.raises(ValueError, match="has_aux=True"):
        lrjax.range_test(mse_aux, PARAMS, optax.sgd, (X, Y), **RANGE)
    wrong = lambda key: {"w": jnp.zeros(4)}  # noqa: E731
    with pytest.raises(ValueError, match="init_fn"):
        lrjax.range_test(mse, PARAMS, optax.sgd, (X, Y), init_fn=wrong, **RANGE)
    with pytest.raises(ValueError, match="init_fn"):
        lrjax.range_test(mse, None, optax.sgd, (X, Y), init_fn=lambda key: 3, **RANGE)


# --- the result -------------------------------------------------------------------------------
def test_result_api_and_json_round_trip():
    result = lrjax.range_test(mse, PARAMS, optax.sgd, (X, Y), **RANGE)
    text = result.to_json()
    json.loads(text)  # strict JSON: NaN stored as strings
    back = lrjax.RangeTestResult.from_json(text)
    for name in ("lrs", "losses", "smoothed_losses"):
        np.testing.assert_array_equal(getattr(back, name), getattr(result, name))
        assert getattr(back, name).dtype == getattr(result, name).dtype
    assert back.diverged_at == result.diverged_at and back.settings == result.settings
    suggestions = result.suggestions()
    assert {"valley", "steepest", "minimum", "slide"} <= set(suggestions)
    assert all(1e-4 <= v <= 10.0 for v in suggestions.values())
    assert suggestions == back.suggestions() == json.loads(text)["suggestions"]
    base, top = result.cyclical_bounds()
    assert 1e-4 <= base < top <= 10.0
    text_repr = repr(result)
    assert f"{STEPS} steps" in text_repr and "diverged at step" in text_repr and "valley" in text_repr


def test_batched_result_median_spread_and_json():
    init = lambda key: {"w": jax.random.normal(key, (3,)), "b": jnp.zeros(())}  # noqa: E731
    result = lrjax.range_test(mse, None, optax.sgd, (X, Y), init_fn=init, num_seeds=3, **RANGE)
    per_seed = result.suggest(per_curve=True)
    assert per_seed.shape == (3,)
    assert result.suggest() == pytest.approx(float(np.median(per_seed)))
    assert result.spread() == pytest.approx(np.log10(per_seed.max() / per_seed.min()))
    back = lrjax.RangeTestResult.from_json(result.to_json())
    np.testing.assert_array_equal(back.diverged_at, result.diverged_at)
    np.testing.assert_array_equal(back.losses, result.losses)
    assert "seed" in repr(result)


def hand_made_result(batch_shape=(), batch_axes=(), sweep=None):
    """A result built by hand (no compile): bowls with minimum near lr = 1e-2."""
    lrs = np.logspace(-4, 1, 40).astype(np.float32)
    offsets = np.arange(int(np.prod(batch_shape))).reshape(batch_shape + (1,))
    smoothed = (1 + (np.log10(lrs) + 2) ** 2 + 0.1 * offsets).astype(np.float32)
    smoothed[..., 35:] = np.nan
    diverged = 34 if not batch_shape else np.full(batch_shape, 34)
    return lrjax.RangeTestResult(lrs=lrs, losses=smoothed + 0.01, smoothed_losses=smoothed,
                                 diverged_at=diverged, batch_axes=batch_axes, sweep=sweep,
                                 settings={"mode": "exp"})


def test_hand_made_result_suggestions():
    # The bowl's minimum at index 24 (lr 10**(-4 + 24*5/39) ~ 1.2e-2): minimum = lr/10.
    result = hand_made_result()
    assert result.suggest("minimum") == pytest.approx(result.lrs[np.nanargmin(result.smoothed_losses)] / 10)
    assert result.stopped_early
    assert hand_made_result((2,), ("seed",)).suggest(per_curve=True).shape == (2,)


def test_cyclical_bounds_read_raw_losses_cut_at_divergence_median_over_curves():
    lrs = np.logspace(-4, 1, 40)
    raw = np.stack([1 + (np.log10(lrs) - c) ** 2 for c in (-3.0, -2.0, -1.5)])
    diverged = np.array([30, -1, 34])
    # The smoothed curves are not read: make them useless (flat) to prove it.
    result = lrjax.RangeTestResult(lrs=lrs, losses=raw, smoothed_losses=np.ones_like(raw),
                                   diverged_at=diverged, batch_axes=("seed",))
    cut = raw.copy()
    cut[0, 30:] = np.nan  # the diverging step itself is excluded
    cut[2, 34:] = np.nan
    rows = np.asarray([lrjax.finder.suggest.suggest_cyclical_bounds(lrs, row) for row in cut])
    assert result.cyclical_bounds() == pytest.approx(tuple(np.median(rows, axis=0)))
    np.testing.assert_array_equal(result.losses_before_divergence(), cut)


def test_records_are_float32_under_x64(x64):
    params = {"w": jnp.ones(4, jnp.float64)}
    result = lrjax.range_test(quadratic, params, optax.sgd, QUAD_DATA.astype(np.float64),
                              min_lr=1e-3, max_lr=10.0, num_steps=QUAD_STEPS)
    assert result.lrs.dtype == result.losses.dtype == result.smoothed_losses.dtype == np.float32
    assert 0 < result.diverged_at < QUAD_STEPS
