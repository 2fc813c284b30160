"""Successive halving: the rung plan, survivors continued on device equal uninterrupted runs."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lrjax


def _problem(eval_fn=None, num_steps=27):
    x = jax.random.normal(jax.random.key(2), (5, 8, 3))
    data = {"x": x, "y": x @ jnp.array([1.0, -2.0, 0.5])}

    def loss_fn(w, batch):
        return jnp.mean((batch["x"] @ w - batch["y"]) ** 2)

    def optimizer_fn(h):  # state carried between rungs: momentum and the schedule's count
        return optax.sgd(optax.cosine_decay_schedule(h["lr"], num_steps), momentum=h["m"])

    return lrjax.make_train_fn(loss_fn, lambda k: jax.random.normal(k, (3,)), optimizer_fn,
                               data, num_steps=num_steps, eval_fn=eval_fn, loss_window=3)


def _hparams(trial):
    return {k: jnp.float32(v) for k, v in trial["params"].items()}


SPACE = {"lr": lrjax.log_uniform(1e-3, 0.3), "m": lrjax.uniform(0.0, 0.9)}


def test_rung_plan():
    assert lrjax.tuning.rung_plan(27, 81, 3, None) == [(27, 3), (9, 9), (3, 27), (1, 81)]
    assert lrjax.tuning.rung_plan(8, 100, 2, 20) == [(8, 25), (4, 50), (2, 100)]
    assert lrjax.tuning.rung_plan(1, 10, 3, None) == [(1, 10)]


def test_survivors_carry_state_and_equal_the_uninterrupted_trial():
    train_fn = _problem()
    result = lrjax.successive_halving(train_fn, SPACE, num_trials=9, batch_size=4, key=5)
    states = [t["state"] for t in result.trials]
    assert states.count("complete") == 1 and states.count("pruned") == 8
    steps = sorted(t["steps"] for t in result.trials)
    assert steps == [3] * 6 + [9] * 2 + [27]
    # Each rung kept the best third of the one before, by the objective after its steps.
    for rung, steps_here in enumerate([3, 9]):
        values = {t["number"]: t["rungs"][rung][1] for t in result.trials if len(t["rungs"]) > rung}
        kept = {t["number"] for t in result.trials if len(t["rungs"]) > rung + 1}
        assert max(values[n] for n in kept) <= min(v for n, v in values.items() if n not in kept)
        assert all(t["rungs"][rung][0] == steps_here for t in result.trials
                   if len(t["rungs"]) > rung)
    later = [t for t in result.trials if t["steps"] > 3]
    assert len(later) == 3
    # Each survivor, trained from scratch for the steps it reached without stops, gives the
    # same numbers: the best through the static-length program, the others in one batch.
    best = result.best_trial
    alone = jax.jit(train_fn)(_hparams(best), lrjax.tuning.trial_key(5, best["number"]))
    np.testing.assert_allclose(best["value"], float(alone["train_loss"]), rtol=1e-5)

    def uninterrupted(h, key, steps):
        state = train_fn.init(h, key)
        return train_fn.evaluate(train_fn.advance(state, h, train_fn.data, 0, steps))

    others = [t for t in later if t is not best]
    hparams = {k: jnp.array([t["params"][k] for t in others], jnp.float32) for k in SPACE}
    keys = jnp.stack([lrjax.tuning.trial_key(5, t["number"]) for t in others])
    expected = jax.jit(jax.vmap(uninterrupted))(hparams, keys,
                                                jnp.array([t["steps"] for t in others]))
    np.testing.assert_allclose([t["value"] for t in others], expected["train_loss"], rtol=1e-5)
    assert best["steps"] == 27 and best["state"] == "complete"
    # The plot shows the pruned trials too (at their last value), not only the finished one.
    lr_ax = result.plot().axes[0]
    assert [t.get_text() for t in lr_ax.get_legend().get_texts()] == [
        "trial", "pruned (early value)", "best"]
    assert len(lr_ax.collections[1].get_offsets()) == 8


def test_nan_trials_fail_and_bad_input():
    # lr up to 1e3 diverges (inf/NaN losses): those trials fail and are dropped first.
    space = {"lr": lrjax.log_uniform(1e-2, 1e3), "m": lrjax.choice([0.0])}
    result = lrjax.successive_halving(_problem(num_steps=16), space, num_trials=8,
                                      reduction_factor=2, min_steps=8, method="grid")
    failed = [t for t in result.trials if t["state"] == "fail"]
    assert failed and all(t["value"] is None and t["steps"] == 8 for t in failed)
    assert all(t["params"]["lr"] > 1 for t in failed)
    assert result.best_trial["steps"] == 16 and result.best_params["lr"] < 1
    with pytest.raises(TypeError, match="make_train_fn"):
        lrjax.successive_halving(lambda h, k: 0.0, SPACE, num_trials=4)
    with pytest.raises(ValueError, match="reduction_factor"):
        lrjax.successive_halving(_problem(), SPACE, num_trials=4, reduction_factor=1)
    with pytest.raises(ValueError, match="method must be one of"):
        lrjax.successive_halving(_problem(), SPACE, num_trials=4, method="tpe")


def test_hyperband_brackets_follow_li_et_al():
    # Li et al. 2018, Table 1 (R = 81, eta = 3): (n_i, r_i) of each bracket's rungs.
    assert lrjax.tuning.hyperband_brackets(81, 3) == [
        [(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)],
        [(34, 3), (11, 9), (3, 27), (1, 81)],
        [(15, 9), (5, 27), (1, 81)],
        [(8, 27), (2, 81)],
        [(5, 81)],
    ]
    assert lrjax.tuning.hyperband_brackets(8, 2, min_steps=4) == [[(2, 4), (1, 8)], [(2, 8)]]


def test_hyperband_runs_every_bracket_and_numbers_trials_across_them(num_devices):
    train_fn = _problem(num_steps=8)
    result = lrjax.hyperband(train_fn, SPACE, reduction_factor=2, min_steps=2, key=1)
    brackets = lrjax.tuning.hyperband_brackets(8, 2, min_steps=2)
    sizes = [plan[0][0] for plan in brackets]
    assert [t["number"] for t in result.trials] == list(range(sum(sizes)))
    assert [sum(t["bracket"] == b for t in result.trials) for b in range(len(sizes))] == sizes
    complete = [t for t in result.trials if t["state"] == "complete"]
    assert all(t["steps"] == 8 for t in complete)
    assert len(complete) == sum(plan[-1][0] for plan in brackets)
    best = result.best_trial
    alone = jax.jit(train_fn)(_hparams(best), lrjax.tuning.trial_key(1, best["number"]))
    np.testing.assert_allclose(best["value"], float(alone["train_loss"]), rtol=1e-5)
    if num_devices >= 8:  # the trial axis sharded over 8 devices gives the same trials
        mesh = jax.sharding.Mesh(np.array(jax.devices()[:8]), ("trials",))
        sharded = lrjax.hyperband(train_fn, SPACE, reduction_factor=2, min_steps=2, key=1,
                                  mesh=mesh)
        for a, b in zip(sharded.trials, result.trials):
            assert a["params"] == b["params"] and a["state"] == b["state"]
            np.testing.assert_allclose(a["value"] or np.nan, b["value"] or np.nan, rtol=1e-5)
