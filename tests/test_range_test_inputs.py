"""Bad input of the range test API: each case from issue 8 part 3, refused clearly or handled."""

import functools
import itertools
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lrjax

STEPS = 12
RNG = np.random.default_rng(4)
X = RNG.normal(size=(STEPS, 6, 3)).astype(np.float32)  # batch 6: one device
Y = (X @ np.array([1.0, -1.0, 2.0], np.float32)).astype(np.float32)
PARAMS = {"w": jnp.zeros(3, jnp.float32), "b": jnp.zeros((), jnp.float32)}
RANGE = dict(min_lr=1e-3, max_lr=3.0, num_steps=STEPS, smoothing=0.5)


def mse(params, batch):
    x, y = batch
    return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)


class Counting:
    """An endless iterator of batches that counts how many were pulled."""

    def __init__(self):
        self.pulled = 0

    def __iter__(self):
        return self

    def __next__(self):
        i = self.pulled % STEPS
        self.pulled += 1
        return X[i], Y[i]


@pytest.mark.parametrize("num_steps, chunk_size", [(12, None), (11, 5), (12, 7)])
def test_an_iterator_gives_exactly_the_batches_used(num_steps, chunk_size):
    data = Counting()
    options = {**RANGE, "num_steps": num_steps, "diverge_threshold": float("inf")}
    result = lrjax.range_test(mse, PARAMS, optax.sgd, data, chunk_size=chunk_size, **options)
    assert data.pulled == num_steps and np.all(np.isfinite(result.losses))


@pytest.mark.parametrize("bounds, match", [
    ((1e-30, 1e9), "overflows float32"),
    ((1e-3, 1e39), "outside float32"),
    ((1e-40, 1.0), "outside float32"),
    ((1.0, 1.0 + 1e-9), "equal in float32"),
])
def test_lr_ranges_float32_cannot_hold_are_refused_before_running(bounds, match):
    with pytest.raises(ValueError, match=match):
        lrjax.range_test(mse, PARAMS, optax.sgd, (X, Y),
                         **{**RANGE, "min_lr": bounds[0], "max_lr": bounds[1]})
    with pytest.raises(ValueError, match=match):
        lrjax.lr_ramp(bounds[0], bounds[1], 10)


def test_numbers_keys_and_smoothing():
    plain = lrjax.range_test(mse, PARAMS, optax.sgd, (X, Y), **RANGE)
    arrays = lrjax.range_test(mse, PARAMS, optax.sgd, (X, Y), **{
        **RANGE, "min_lr": jnp.float32(1e-3), "max_lr": np.float64(3.0)})
    np.testing.assert_array_equal(arrays.losses, plain.losses)
    with pytest.raises(ValueError, match="smoothing"):
        lrjax.range_test(mse, PARAMS, optax.sgd, (X, Y), **{**RANGE, "smoothing": 0.99999999})
    with pytest.raises(TypeError, match="key must be an int seed"):
        lrjax.range_test(mse, PARAMS, optax.sgd, (X, Y), key="abc", **RANGE)
    with pytest.raises(ValueError, match="key: an int seed must fit in 64 bits"):
        lrjax.range_test(mse, PARAMS, optax.sgd, (X, Y), key=2**70, **RANGE)
    with pytest.raises(ValueError, match="min_lr must be a real number"):
        lrjax.range_test(mse, PARAMS, optax.sgd, (X, Y), **{**RANGE, "min_lr": "1e-3"})


def test_make_train_step_accumulation_needs_the_micro_axis():
    step = lrjax.engine.make_train_step(mse, optax.sgd, 0.1, accumulation_steps=2)
    with pytest.raises(ValueError, match="accumulation_steps=2: every batch leaf needs a leading"):
        step.step(PARAMS, step.init(PARAMS), (X[0], Y[0]))  # leading axis 6, not 2
    micro = (X[0].reshape(2, 3, 3), Y[0].reshape(2, 3))
    _, _, loss, _ = step.step(PARAMS, step.init(PARAMS), micro)
    np.testing.assert_allclose(loss, mse(PARAMS, (X[0], Y[0])), rtol=1e-6)


def test_sweeps_over_static_and_bool_arguments_equal_separate_runs():
    adamwr = functools.partial(lrjax.adamwr, period_epochs=1.0, steps_per_epoch=4,
                               weight_decay_norm=0.05)
    result = lrjax.range_test(mse, PARAMS, adamwr, (X, Y), sweep={"steps_per_epoch": [3, 6]},
                              **RANGE)
    assert result.losses.shape == (2, STEPS) and result.batch_axes == ("steps_per_epoch",)
    alone = lrjax.range_test(mse, PARAMS, functools.partial(adamwr, steps_per_epoch=6), (X, Y),
                             **RANGE)
    np.testing.assert_allclose(result.losses[1], alone.losses, rtol=1e-5)
    assert not np.allclose(result.losses[0], result.losses[1], equal_nan=True)
    # A bool (nesterov) and a traced float, with the static name second: dict order kept.
    sgd = lrjax.range_test(mse, PARAMS, optax.sgd, (X, Y),
                           sweep={"momentum": [0.5, 0.9], "nesterov": [False, True]}, **RANGE)
    assert sgd.batch_axes == ("momentum", "nesterov") and sgd.sweep["nesterov"] == [False, True]
    alone = lrjax.range_test(mse, PARAMS, functools.partial(optax.sgd, momentum=0.9,
                                                            nesterov=True), (X, Y), **RANGE)
    np.testing.assert_allclose(sgd.losses[1, 1], alone.losses, rtol=1e-5)
    # An iterator is read once (exactly the batches needed) and shared by both programs.
    data = Counting()
    pulled = lrjax.range_test(mse, PARAMS, optax.sgd, data,
                              sweep={"momentum": [0.5, 0.9], "nesterov": [False, True]}, **RANGE)
    assert data.pulled == STEPS
    np.testing.assert_array_equal(pulled.losses, sgd.losses)
    assert np.asarray(sgd.diverged_at).shape == (2, 2)
    assert json.loads(sgd.to_json())["sweep"] == {"momentum": [0.5, 0.9], "nesterov": [False, True]}


@pytest.mark.parametrize("sweep, match", [
    ({"weight_decay": [1e-4, -1.0]}, r"weight_decay.*\[0.0, inf\]"),
    ({"momentum": [0.5, True]}, "mixes bools"),
    ({"momentum": "0.9"}, "non-empty 1-D list"),
    ({"momentum": [float("nan")]}, "finite"),
])
def test_bad_sweep_values(sweep, match):
    optimizer = functools.partial(lrjax.sgdw, weight_decay=1e-4)
    with pytest.raises(ValueError, match=match):
        lrjax.range_test(mse, PARAMS, optimizer, (X, Y), sweep=sweep, **RANGE)


def test_init_fn_mismatch_shows_the_difference():
    wrong = lambda key: {"w": jnp.zeros(4), "b": jnp.zeros(())}  # noqa: E731
    with pytest.raises(ValueError, match=r"init_fn gave \[\"\['w'\]: \(4,\) float32\"\] where "
                                         r"params has \[\"\['w'\]: \(3,\) float32\"\]"):
        lrjax.range_test(mse, PARAMS, optax.sgd, (X, Y), init_fn=wrong, **RANGE)


def test_result_json_is_validated_and_allow_nan_is_accepted():
    result = lrjax.range_test(mse, PARAMS, optax.sgd, (X, Y), **RANGE)
    blob = json.loads(result.to_json(allow_nan=True, indent=1))
    back = lrjax.RangeTestResult.from_dict(blob)
    np.testing.assert_array_equal(back.losses, result.losses)
    with pytest.raises(ValueError, match="missing keys"):
        lrjax.RangeTestResult.from_json("{}")
    wide = dict(blob, losses={"dtype": "float32", "shape": [2, STEPS // 2],
                              "data": [0.0] * STEPS})
    with pytest.raises(ValueError, match="losses has shape"):
        lrjax.RangeTestResult.from_dict(wide)
    with pytest.raises(ValueError, match="lrs: not an encoded array"):
        lrjax.RangeTestResult.from_dict(dict(blob, lrs=[1, 2]))
    with pytest.raises(ValueError, match="diverged_at"):
        lrjax.RangeTestResult.from_dict(dict(blob, diverged_at=[1, 2]))
    with pytest.raises(ValueError, match="JSON object"):
        lrjax.RangeTestResult.from_json("[1]")
