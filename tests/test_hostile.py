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


# --- 3, 4. batch_size_schedule: warmups from 0 and huge counts ------------------------------
def test_batch_size_plan_measures_the_fall_from_the_running_peak():
    """A warmup from 0 to 0.1 over 10 steps, then /10 every 20: the batch grows 10x after
    the first decay (as for the same schedule without warmup), not never."""
    schedule = lrjax.warmup(lrjax.step_decay(0.1, 20), 10)
    plan = lrjax.batch_size_plan(schedule, 16, 1024, num_steps=60)
    values = np.asarray([float(schedule(t)) for t in range(60)], np.float32)
    peak = np.maximum.accumulate(values)
    # Reference: numpy walk of the plan's rule k = clip(floor(peak / lr), 1, 64).
    step, ks = 0, []
    while step < 60:
        k = int(np.clip(np.floor(peak[step] / max(values[step], 1e-38) * (1 + 1e-6)), 1, 64))
        ks.append(min(k, 60 - step))
        step += ks[-1]
    assert plan.accumulation.tolist() == ks
    assert max(ks[:-1]) == 10  # grew after the decay
    assert all(k == 1 for k in ks[:30])  # not during the warmup nor before the first decay


def test_batch_size_schedule_refuses_a_rate_of_zero_at_step_0():
    schedule = lrjax.warmup(lrjax.step_decay(0.1, 20), 10)
    with pytest.raises(ValueError, match="reference_value"):
        lrjax.batch_size_schedule(schedule, 16, 1024)
    lr, acc = lrjax.batch_size_schedule(schedule, 16, 1024, reference_value=0.1)
    assert int(acc(35)) == 10


def test_batch_size_schedule_counts_are_clamped_not_wrapped():
    lr, acc = lrjax.batch_size_schedule(lrjax.step_decay(0.1, 3), 16, 1024, num_steps=10)
    last_lr, last_acc = float(lr(9)), int(acc(9))
    for count in (np.uint32(2**32 - 1), 2**40, jnp.int32(2**31 - 1), 1e30):
        assert int(acc(count)) == last_acc and float(lr(count)) == last_lr
    assert int(acc(-5)) == int(acc(0))


# --- 6. scale_adam's b2 that is 1.0 in float32 ----------------------------------------------
def test_scale_adam_refuses_a_beta_that_rounds_to_one():
    with pytest.raises(ValueError, match="kappa"):
        lrjax.scale_adam(1e-5, 1e-3)
    hp = lrjax.scale_adam(0.5, 1e-3)
    assert np.float32(hp["b2"]) < 1


# --- 9. halving plans that never ended ------------------------------------------------------
@pytest.mark.parametrize("call, name", [
    (lambda: lrjax.tuning.rung_plan(9, 10, 1, 1), "reduction_factor"),
    (lambda: lrjax.tuning.rung_plan(9, 10, 2.5, 1), "reduction_factor"),
    (lambda: lrjax.tuning.rung_plan(0, 10, 3, 1), "num_trials"),
    (lambda: lrjax.tuning.rung_plan(9, 0, 3, 1), "num_steps"),
    (lambda: lrjax.tuning.rung_plan(9, 10, 3, 0), "min_steps"),
    (lambda: lrjax.tuning.rung_plan(9, 10, 3, float("nan")), "min_steps"),
    (lambda: lrjax.tuning.hyperband_brackets(81, 1), "reduction_factor"),
    (lambda: lrjax.tuning.hyperband_brackets(81, 0), "reduction_factor"),
    (lambda: lrjax.tuning.hyperband_brackets(81, 3, min_steps=0), "min_steps"),
    (lambda: lrjax.tuning.hyperband_brackets(-5, 3), "num_steps"),
    (lambda: lrjax.tuning.hyperband_brackets(10, 3, min_steps=11), "min_steps"),
])
def test_halving_plans_refuse_what_never_ends(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_halving_plans_still_match_hyperband_paper():
    # Li et al. 2018, Table 1 (R = 81, eta = 3): bracket s = 4 starts 81 trials at 1 step.
    assert lrjax.tuning.rung_plan(27, 81, 3, None) == [(27, 3), (9, 9), (3, 27), (1, 81)]
    assert [plan[0] for plan in lrjax.tuning.hyperband_brackets(81, 3)] == [
        (81, 1), (34, 3), (15, 9), (8, 27), (5, 81)]


# --- 5. search values that float32 / int32 cannot hold --------------------------------------
@pytest.mark.parametrize("call", [
    lambda: lrjax.uniform(-1e39, 1e39),
    lambda: lrjax.uniform(1.0, 1.0 + 1e-9),
    lambda: lrjax.log_uniform(1e-50, 1e-45),
    lambda: lrjax.log_uniform(1e-3, 1e39),
    lambda: lrjax.choice([16777216.0, 16777217.0]),
    lambda: lrjax.choice([1, 2**40]),
    lambda: lrjax.choice([0.5, 1e39]),
])
def test_search_dimensions_refuse_what_float32_or_int32_cannot_hold(call):
    with pytest.raises(ValueError, match="float32|int32"):
        call()


def test_search_dimensions_at_the_float32_edges_are_kept():
    assert lrjax.log_uniform(1.2e-38, 3e38).high == 3e38
    assert lrjax.choice([1, 2**31 - 1]).values == (1, 2**31 - 1)


# --- 8. noise scale with B <= b, and NaN counts -------------------------------------------
@pytest.mark.parametrize("b, big", [(32, 32), (64, 32)])
def test_noise_scale_from_norms_needs_big_batch_above_small(b, big):
    with pytest.raises(ValueError, match="big_batch_size must be > small_batch_size"):
        lrjax.batch.gradient_noise_scale_from_norms(1.0, 2.0, b, big)


SCHEDULES = {
    "constant": lambda: lrjax.constant(0.1),
    "step_decay": lambda: lrjax.step_decay(1.0, 3),
    "multistep_decay": lambda: lrjax.multistep_decay(1.0, [2, 5]),
    "exponential_decay": lambda: lrjax.exponential_decay(1.0, 0.5),
    "inverse_time_decay": lambda: lrjax.inverse_time_decay(1.0, 0.5),
    "polynomial_decay": lambda: lrjax.polynomial_decay(1.0, 0.1, 10),
    "cosine_annealing": lambda: lrjax.cosine_annealing(1.0, 10),
    "noam": lambda: lrjax.noam(16, 4),
    "warmup": lambda: lrjax.warmup(lrjax.constant(1.0), 3),
    "sgdr": lambda: lrjax.sgdr(1.0, 5, period_mult=2.0),
    "cyclic": lambda: lrjax.cyclic(0.1, 1.0, 3),
    "one_cycle": lambda: lrjax.one_cycle(1.0, 10),
}


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_a_nan_count_gives_nan_in_every_schedule(name):
    schedule = SCHEDULES[name]()
    counts = jnp.array([1.0, np.nan, 4.0], jnp.float32)
    eager, jitted = schedule(counts), jax.jit(schedule)(counts)
    for values in (eager, jitted):
        values = np.asarray(values)
        assert np.isnan(values[1]) and np.all(np.isfinite(values[[0, 2]]))
        np.testing.assert_allclose(values[[0, 2]], [float(schedule(1)), float(schedule(4))])


# --- 7. a validation curve that cannot be read ----------------------------------------------
def test_val_losses_all_nan_warn_instead_of_silently_reading_the_training_curve():
    lrs = np.logspace(-5, 1, 60)
    x = np.log10(lrs)
    train = 1 + 2 / (1 + np.exp((x + 2.5) / 0.25)) + 20 * np.maximum(x, 0) ** 2
    result = lrjax.RangeTestResult(lrs=lrs, losses=train, smoothed_losses=train, diverged_at=None,
                                   val_losses=np.full(60, np.nan), batch_axes=())
    with pytest.warns(UserWarning, match="validation curves could not be read"):
        lr = result.suggest(valley_weight=0)
    assert lr == pytest.approx(lrjax.finder.suggest.suggest_fall(lrs, train))


# --- 10. update_batch_stats over an endless iterator ----------------------------------------
def _running_mean(p, s, batch):
    return {"mean": 0.9 * s["mean"] + 0.1 * jnp.mean(batch * p)}


def test_update_batch_stats_reads_one_pass_of_a_cycle():
    import itertools

    batches = [np.full(2, float(i)) for i in range(3)]  # x * p: 0, 2, 4 -> mean 2
    stats = lrjax.update_batch_stats(_running_mean, 2.0, {"mean": 0.0}, itertools.cycle(batches))
    assert float(stats["mean"]) == pytest.approx(2.0, rel=1e-5)
    two = lrjax.update_batch_stats(_running_mean, 2.0, {"mean": 0.0}, itertools.cycle(batches),
                                   num_batches=2)
    assert float(two["mean"]) == pytest.approx(1.0, rel=1e-5)  # 0 and 2


def test_update_batch_stats_num_batches_bounds_a_generator():
    import itertools

    endless = (np.full(2, 1.0) for _ in itertools.count())
    stats = lrjax.update_batch_stats(_running_mean, 2.0, {"mean": 0.0}, endless, num_batches=4)
    assert float(stats["mean"]) == pytest.approx(2.0, rel=1e-5)
    with pytest.raises(ValueError, match="num_batches"):
        lrjax.update_batch_stats(_running_mean, 2.0, {"mean": 0.0}, [np.ones(2)], num_batches=0)


# --- 11. integer params -----------------------------------------------------------------------
def _int_loss(p, batch):
    return jnp.sum(p["w"] * batch)


@pytest.mark.parametrize("run", [
    lambda: lrjax.range_test(_int_loss, {"w": jnp.int32(3)}, optax.sgd, np.ones((4, 2)),
                             num_steps=4),
    lambda: lrjax.train_snapshots(_int_loss, {"w": jnp.int32(3)}, optax.sgd, np.ones((4, 2)),
                                  num_steps=4, num_cycles=2, init_value=0.1),
    lambda: lrjax.gradient_noise_scale(_int_loss, {"w": jnp.int32(3)}, np.ones((8, 2)),
                                       num_splits=2),
    lambda: lrjax.search(lrjax.make_train_fn(_int_loss, lambda k: {"w": jnp.int32(3)},
                                             lambda h: optax.sgd(h["lr"]), np.ones((4, 2)),
                                             num_steps=2),
                         {"lr": lrjax.log_uniform(1e-3, 1e-1)}, num_trials=2),
], ids=["range_test", "train_snapshots", "gradient_noise_scale", "make_train_fn"])
def test_integer_params_name_the_leaf(run):
    with pytest.raises(ValueError, match=r"params\['w'\] has dtype int32"):
        run()


def test_nnx_integer_param_names_the_leaf():
    nnx = pytest.importorskip("flax.nnx")

    class Counter(nnx.Module):
        def __init__(self):
            self.w = nnx.Param(jnp.int32(3))

    with pytest.raises(ValueError, match=r"params.*w.*has dtype int32"):
        lrjax.range_test(lambda m, b: jnp.sum(m.w.value * b), Counter(), optax.sgd,
                         np.ones((4, 2)), num_steps=4)


# --- 16. an nnx model left in eval mode ---------------------------------------------------------
def test_nnx_model_in_eval_mode_warns():
    nnx = pytest.importorskip("flax.nnx")
    model = nnx.Sequential(nnx.Linear(2, 1, rngs=nnx.Rngs(0)), nnx.Dropout(0.5, rngs=nnx.Rngs(1)))
    loss_fn = lambda m, b: jnp.mean(m(b) ** 2)  # noqa: E731
    data = np.ones((4, 3, 2), np.float32)
    model.eval()
    with pytest.warns(UserWarning, match="eval mode"):
        lrjax.range_test(loss_fn, model, optax.sgd, data, num_steps=4)
    model.train()
    import warnings as _warnings
    with _warnings.catch_warnings():
        _warnings.simplefilter("error", UserWarning)
        try:
            lrjax.range_test(loss_fn, model, optax.sgd, data, num_steps=4)
        except UserWarning as warning:  # the tiny curve may be unreadable; not eval mode
            assert "eval mode" not in str(warning)


# --- 19. optimizer chains in the range test -------------------------------------------------
def test_a_ready_chain_is_refused_with_the_factory_form_shown():
    chain = optax.chain(optax.clip(1.0), optax.adam(1e-3))
    with pytest.raises(TypeError, match="lambda learning_rate: optax.chain"):
        lrjax.range_test(lambda p, b: jnp.sum(p * b), jnp.ones(2), chain, np.ones((4, 2)),
                         num_steps=4)
    with pytest.raises(ValueError, match="lambda learning_rate: optax.chain"):
        lrjax.range_test(lambda p, b: jnp.sum(p * b), jnp.ones(2), lambda lr: optax.adam(lr),
                         np.ones((4, 2)), num_steps=4)


# --- left by the hostile pass: update_batch_stats and gradient_noise_scale outputs ------------
def test_update_batch_stats_refuses_statistics_of_another_shape():
    wrong = lambda p, s, batch: {"mean": jnp.zeros(3)}  # noqa: E731
    with pytest.raises(ValueError, match="apply_fn must return new batch statistics"):
        lrjax.update_batch_stats(wrong, 2.0, {"mean": 0.0}, np.ones((3, 2)), momentum=0.9)
    other = lambda p, s, batch: {"var": jnp.zeros(())}  # noqa: E731
    with pytest.raises(ValueError, match="apply_fn must return new batch statistics"):
        lrjax.update_batch_stats(other, 2.0, {"mean": 0.0}, np.ones((3, 2)))


def test_gradient_noise_scale_refuses_a_vector_loss():
    with pytest.raises(ValueError, match="loss_fn must return a scalar floating loss"):
        lrjax.gradient_noise_scale(lambda w, b: w * b, jnp.ones(2), np.ones((8, 2)),
                                   num_splits=2)
