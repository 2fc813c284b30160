"""Regression tests of the hostile pass: each bad argument is refused by name, early."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lrjax
from lrjax.batch.gradient_noise import gradient_noise_scale_from_norms

PARAMS = {"w": jnp.ones(3)}


def _step(tx, params=PARAMS, grads=PARAMS):
    state = tx.init(PARAMS)
    return tx.update(grads, state, params)


@pytest.mark.parametrize("make", [
    lambda: lrjax.sgdwr(2**40, period_epochs=2, steps_per_epoch=3, weight_decay_norm=0.01),
    lambda: lrjax.adamw(0.1, eps=2**40),
    lambda: lrjax.amsgrad(2**40),
    lambda: lrjax.powersign(2**40),
    lambda: lrjax.with_cycled_momentum(optax.sgd, 2**40, 0.9),
])
def test_python_int_past_int32_is_a_float(make):
    updates, _ = _step(make())
    assert np.all(np.isfinite(np.asarray(updates["w"])))


def test_python_int_past_int32_in_value_functions():
    assert float(lrjax.scale_learning_rate(2**40, 64, 32)) == pytest.approx(2.0 * 2**40)
    assert float(lrjax.normalized_weight_decay(2**40, 4)) == pytest.approx(2**39)
    assert float(lrjax.linear_factor(2**40)(10)) == pytest.approx(2**40)


@pytest.mark.parametrize("arg", ["new_learning_rate", "new_momentum"])
def test_rescale_batch_size_names_the_new_argument(arg):
    kwargs = dict(batch_size=32, dataset_size=1000, learning_rate=0.1,
                  new_learning_rate=0.05, momentum=0.9)
    kwargs[arg] = float("nan")
    with pytest.raises(ValueError, match=arg):
        lrjax.rescale_batch_size(**kwargs)


def test_scale_learning_rate_rule_array():
    with pytest.raises(ValueError, match="rule"):
        lrjax.scale_learning_rate(0.1, 64, 32, rule=np.ones(2))


@pytest.mark.parametrize("bad, error", [(float("nan"), ValueError), (1e39, ValueError),
                                        (-1.0, ValueError), ("a", TypeError)])
def test_noise_scale_from_norms_checks_the_norms(bad, error):
    with pytest.raises(error, match="small_norm_sq"):
        gradient_noise_scale_from_norms(bad, 1.0, 8, 64)


def test_swa_params_of_another_model():
    tx = lrjax.swa(optax.sgd(0.1), 1)
    other = {"v": jnp.ones(2)}
    with pytest.raises(ValueError, match="params"):
        tx.update(other, tx.init(PARAMS), other)


def test_ensemble_zero_members():
    with pytest.raises(ValueError, match="stacked_params"):
        lrjax.ensemble_predict(lambda p, x: x @ p["w"], {"w": jnp.ones((0, 3, 2))}, jnp.ones((2, 3)))


def test_ensemble_apply_fn_not_callable():
    with pytest.raises(TypeError, match="apply_fn"):
        lrjax.ensemble_predict(3, {"w": jnp.ones((2, 3, 2))}, jnp.ones((2, 3)))


def test_schedule_values_not_callable():
    with pytest.raises(TypeError, match="schedule"):
        lrjax.schedule_values(0.1, 5)


def test_batch_size_plan_not_callable():
    with pytest.raises(TypeError, match="lr_schedule"):
        lrjax.batch_size_plan(0.1, 32, 64, 5)


def test_gradient_noise_scale_loss_fn_not_callable():
    with pytest.raises(TypeError, match="loss_fn"):
        lrjax.gradient_noise_scale(3, PARAMS, jnp.ones((8, 3)), num_splits=2)


@pytest.mark.parametrize("make, name", [
    (lambda: lrjax.adamw(0.1, mu_dtype="foo"), "mu_dtype"),
    (lambda: lrjax.amsgrad(0.1, mu_dtype=jnp.int32), "mu_dtype"),
    (lambda: lrjax.sgdw(0.1, accumulator_dtype=jnp.int32), "accumulator_dtype"),
])
def test_moment_dtype_must_be_floating(make, name):
    with pytest.raises(TypeError, match=name):
        make()


@pytest.mark.parametrize("mask, error", [(3, TypeError), ({"x": True}, ValueError)])
def test_weight_decay_mask_checked(mask, error):
    with pytest.raises(error, match="mask"):
        _step(lrjax.adamw(0.1, mask=mask))
