"""``RangeTestResult.search_space``: the range a short search around a suggestion covers.

The range (lr / 8 to lr * 30) was read off benchmarks/finder_quality.py's first 38
problems and checked on later held-out batches (``--search``); these tests pin its
definition (a closed form in the suggestion), its argument checks, and that it composes
with ``lrjax.search`` as users run it (a real range test, then a jitted, vmapped search).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from regression_problem import tiny_regression
from test_readability import range_curve, result_of

import lrjax
from lrjax.finder.result import SEARCH_RANGE
from lrjax.tuning.space import LogUniform


def test_space_is_log_uniform_from_an_eighth_to_thirty_times_the_suggestion():
    result = result_of(range_curve(0))
    lr = result.suggest()
    space = result.search_space()
    assert list(space) == ["learning_rate"]
    dim = space["learning_rate"]
    assert isinstance(dim, LogUniform)
    assert SEARCH_RANGE == (1 / 8, 30.0)
    assert dim.low == pytest.approx(lr / 8, rel=1e-12)
    assert dim.high == pytest.approx(lr * 30, rel=1e-12)


def test_space_around_a_given_rate_and_name():
    result = result_of(range_curve(1))
    peak = result.peak_lr()
    space = result.search_space(peak, name="lr")
    assert space == {"lr": lrjax.log_uniform(peak / 8, peak * 30)}
    # numpy and jax scalars are numbers too (what peak_lr(per_curve=True)[i] gives).
    assert result.search_space(np.float32(0.01))["learning_rate"].low == pytest.approx(
        0.01 / 8, rel=1e-6)
    assert result.search_space(jnp.float32(0.01))["learning_rate"].high == pytest.approx(
        0.3, rel=1e-6)


@pytest.mark.parametrize("lr", [0.0, -1e-3, math.nan, math.inf, "0.1x", [1e-3, 1e-2]])
def test_bad_rate_is_a_value_error_naming_lr(lr):
    result = result_of(range_curve(2))
    with pytest.raises(ValueError, match="lr must be a positive finite number"):
        result.search_space(lr)


@pytest.mark.parametrize("name", ["", None, 3])
def test_bad_name_is_a_value_error(name):
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        result_of(range_curve(2)).search_space(1e-3, name=name)


def test_range_test_then_search_in_its_space():
    """What the suggestions guide tells users to run: the range test, then 8 quasi-random
    full trainings in ``search_space``, one compiled program; every trial's rate lies in
    the space, and the search's best is the trial with the lowest loss."""
    loss_fn, init_fn, data = tiny_regression(key=3, num_batches=60)
    params = init_fn(jax.random.key(0))
    result = lrjax.range_test(loss_fn, params, optax.adam, data, num_steps=60,
                              min_lr=1e-2, max_lr=3.0)
    space = result.search_space(name="lr")
    before = np.asarray(params).copy()
    train_fn = lrjax.make_train_fn(loss_fn, init_fn, lambda h: optax.adam(h["lr"]), data,
                                   num_steps=16)
    found = lrjax.search(train_fn, space, num_trials=8, method="quasirandom", key=0)
    np.testing.assert_array_equal(np.asarray(params), before)  # nothing of the user's mutated
    rates = np.asarray([t["params"]["lr"] for t in found.trials])
    dim = space["lr"]
    assert len(rates) == 8
    assert np.all((rates >= dim.low * (1 - 1e-6)) & (rates <= dim.high * (1 + 1e-6)))
    # Quasi-random in log-rate: the 8 points cover the range's three decades evenly.
    logs = np.log(rates / dim.low) / np.log(dim.high / dim.low)
    assert np.histogram(logs, bins=4, range=(0, 1))[0].min() >= 1
    values = np.asarray([t["value"] for t in found.trials])
    assert found.best_params["lr"] == pytest.approx(rates[int(np.nanargmin(values))])


@pytest.mark.parametrize("lr", [1e-40, 1e38])
def test_a_range_float32_cannot_hold_is_a_value_error(lr):
    """Trials train with float32 rates: lr/8 below float32's smallest normal number, or
    lr*30 past its largest, would train with 0 or inf."""
    with pytest.raises(ValueError, match="outside float32's range"):
        result_of(range_curve(2)).search_space(lr)
