"""Regression tests for a hostile review's findings: each failed before its fix.

Refusals are checked for the argument's name in the message; right answers against an
independent reference (numpy, a closed form).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lrjax


# --- 1. SWA's mean of bfloat16 params ---------------------------------------------------
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_swa_mean_of_narrow_params_keeps_moving(dtype):
    """2000 iterates alternating 1.0 and 1.5: the mean is 1.25 (exact in bf16 and f16)."""
    tx = lrjax.swa(optax.identity(), start_step=0)
    params = jnp.ones(3, dtype)
    state = tx.init(params)
    step = jax.jit(tx.update)
    for i in range(2000):
        target = 1.5 if i % 2 == 0 else 1.0
        updates = jnp.full(3, target, dtype) - params
        updates, state = step(updates, state, params)
        params = optax.apply_updates(params, updates)
    mean = lrjax.swa_params(state)
    assert mean.dtype == dtype
    np.testing.assert_allclose(np.asarray(mean, np.float32), 1.25, rtol=0, atol=1e-3)
    assert lrjax.swa_state(state).accumulator is not None


def test_swa_float32_params_have_no_second_copy():
    state = lrjax.swa(optax.sgd(0.1), start_step=0).init({"w": jnp.ones(2)})
    assert state.accumulator is None


# --- 2. ensembles of one logit per example ------------------------------------------------
@pytest.mark.parametrize("shape", [(4, 1), (4,)])
def test_ensemble_refuses_one_logit_per_example(shape):
    x = jnp.ones((4, 3))
    members = jnp.stack([jnp.ones(3), -jnp.ones(3)])
    apply_fn = lambda w, x: (x @ w).reshape(shape)  # noqa: E731
    with pytest.raises(ValueError, match="logits of shape"):
        lrjax.ensemble_predict(apply_fn, members, x)
    with pytest.raises(ValueError, match="logits of shape"):
        lrjax.ensemble_members(apply_fn, members, x)


def test_ensemble_binary_as_two_logits_is_the_mean_sigmoid():
    x = jnp.array([[0.5], [-2.0]])
    members = jnp.stack([jnp.array([1.0]), jnp.array([3.0])])
    def apply_fn(w, x):
        z = (x @ w)[:, None]
        return jnp.concatenate([jnp.zeros_like(z), z], -1)
    probs = lrjax.ensemble_predict(apply_fn, members, x)
    z = np.array([[0.5, 1.5], [-2.0, -6.0]])  # members' logits per example
    want = np.mean(1 / (1 + np.exp(-z)), axis=1)
    np.testing.assert_allclose(np.asarray(probs[:, 1]), want, rtol=1e-6)


@pytest.mark.parametrize("last", [True, 0, 3, 1.5])
def test_ensemble_last_names_members(last):
    members = jnp.stack([jnp.eye(2), -jnp.eye(2)])
    with pytest.raises(ValueError, match=r"last must be an integer number of members in \[1, 2\]"):
        lrjax.ensemble_predict(lambda w, x: x @ w, members, jnp.ones((1, 2)), last=last)
