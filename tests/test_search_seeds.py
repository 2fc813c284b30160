"""make_train_fn(num_seeds=S): a trial's metrics are the mean of S trainings from split keys."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from regression_problem import tiny_regression

import lrjax
from lrjax.tuning.train_fn import SEED_REDUCTIONS

STEPS = 10
SPACE = {"lr": lrjax.log_uniform(1e-2, 1e-1), "wd": lrjax.log_uniform(1e-4, 1e-2)}


def _parts():
    """A tiny regression: random init (so seeds differ), 5 shuffled batches, an eval loss."""
    loss_fn, init_fn, data = tiny_regression(key=3, num_batches=5)

    def optimizer_fn(h):
        return optax.adamw(optax.cosine_decay_schedule(h["lr"], STEPS), weight_decay=h["wd"])

    def eval_fn(w):
        return {"eval_loss": loss_fn(w, jax.tree.map(lambda a: a[0], data)), "w0": w[0]}

    return loss_fn, init_fn, optimizer_fn, data, eval_fn


def _make(**kwargs):
    loss_fn, init_fn, optimizer_fn, data, eval_fn = _parts()
    return lrjax.make_train_fn(loss_fn, init_fn, optimizer_fn, data, num_steps=STEPS,
                               eval_fn=eval_fn, loss_window=3, **kwargs)


H = {"lr": jnp.float32(0.05), "wd": jnp.float32(1e-3)}


def _by_hand(h, key):
    """The documented single-seed training, written out: split key, init, permuted batches."""
    loss_fn, init_fn, optimizer_fn, data, eval_fn = _parts()
    init_key, data_key = jax.random.split(key)
    w = init_fn(init_key)
    tx = optimizer_fn(h)
    state = tx.init(w)
    order = np.asarray(jax.random.permutation(data_key, 5))
    losses = []
    for t in range(STEPS):
        batch = jax.tree.map(lambda a: a[order[t % 5]], data)
        loss, grad = jax.value_and_grad(loss_fn)(w, batch)
        updates, state = tx.update(grad, state, w)
        w = optax.apply_updates(w, updates)
        losses.append(float(loss))
    return {"train_loss": np.mean(losses[-3:]), **{k: float(v) for k, v in eval_fn(w).items()}}


def test_one_seed_is_the_default_and_the_documented_training():
    key = jax.random.key(11)
    default = jax.jit(_make())(H, key)
    one = jax.jit(_make(num_seeds=1))(H, key)
    assert default.keys() == one.keys() == {"train_loss", "eval_loss", "w0"}
    for name in default:  # the same program: bit for bit
        assert np.asarray(default[name]).tobytes() == np.asarray(one[name]).tobytes()
    expected = _by_hand(H, key)
    for name in default:
        np.testing.assert_allclose(float(default[name]), expected[name], rtol=1e-5, atol=1e-7)


def test_mean_of_seeds_equals_the_single_seed_trainings_under_jit():
    key = jax.random.key(4)
    averaged = jax.jit(_make(num_seeds=3))(H, key)
    single = jax.jit(_make())
    runs = [single(H, k) for k in jax.random.split(key, 3)]
    w0 = [float(r["w0"]) for r in runs]
    assert max(w0) - min(w0) > 1e-2  # the seeds really train different models
    for name in averaged:
        assert averaged[name].shape == ()
        np.testing.assert_allclose(float(averaged[name]), np.mean([float(r[name]) for r in runs]),
                                   rtol=1e-5, atol=1e-7)
    # vmapped over trials (what lrjax.search does with vectorize="vmap"): the same means.
    hs = {"lr": jnp.array([0.05, 0.02], jnp.float32), "wd": jnp.array([1e-3, 1e-4], jnp.float32)}
    keys = jnp.stack([key, jax.random.key(5)])
    batched = jax.jit(jax.vmap(_make(num_seeds=3)))(hs, keys)
    np.testing.assert_allclose(batched["eval_loss"][0], averaged["eval_loss"], rtol=1e-5)


def test_search_and_halving_with_seeds_trace_once_and_report_the_means():
    train_fn = _make(num_seeds=2)
    traces = []

    def counted(h, key):
        traces.append(1)  # runs only while JAX traces the function
        return train_fn(h, key)

    result = lrjax.search(counted, SPACE, num_trials=6, batch_size=4, key=1,
                          objective="eval_loss", vectorize="vmap")
    again = lrjax.search(counted, SPACE, num_trials=5, batch_size=4, key=2,
                         objective="eval_loss", vectorize="vmap")
    assert len(traces) == 1 and len(again.trials) == 5  # same batch shape: same executable
    single = jax.jit(_make())
    trial = result.trials[5]
    h = {k: jnp.float32(v) for k, v in trial["params"].items()}
    seeds = jax.random.split(lrjax.tuning.trial_key(1, 5), 2)
    np.testing.assert_allclose(trial["value"],
                               np.mean([float(single(h, k)["eval_loss"]) for k in seeds]),
                               rtol=1e-5)
    # Successive halving carries each trial's seeds between rungs (a leading seed axis).
    halved = lrjax.successive_halving(train_fn, SPACE, num_trials=4, batch_size=4, key=3,
                                      reduction_factor=2, objective="eval_loss", min_steps=5)
    best = halved.best_trial
    assert best["steps"] == STEPS
    h = {k: jnp.float32(v) for k, v in best["params"].items()}
    whole = jax.jit(train_fn)(h, lrjax.tuning.trial_key(3, best["number"]))
    np.testing.assert_allclose(best["value"], float(whole["eval_loss"]), rtol=1e-5)


@pytest.mark.parametrize("bad", [0, -2, 2.5, True, "3", None])
def test_bad_num_seeds(bad):
    with pytest.raises(ValueError, match="num_seeds"):
        _make(num_seeds=bad)


@pytest.mark.parametrize("reduce, numpy_reduce", [("max", np.max), ("min", np.min),
                                                  ("mean", np.mean)])
def test_seed_reduce_is_that_reduction_of_the_single_seed_trainings(reduce, numpy_reduce):
    """``seed_reduce`` reduces every metric over the seeds, under jit and vmapped over
    trials; the single-seed trainings are the independent reference."""
    key = jax.random.key(4)
    reduced = jax.jit(_make(num_seeds=3, seed_reduce=reduce))(H, key)
    single = jax.jit(_make())
    runs = [single(H, k) for k in jax.random.split(key, 3)]
    for name in reduced:
        np.testing.assert_allclose(float(reduced[name]),
                                   numpy_reduce([float(r[name]) for r in runs]),
                                   rtol=1e-5, atol=1e-7)
    hs = {"lr": jnp.array([0.05, 0.02], jnp.float32), "wd": jnp.array([1e-3, 1e-4], jnp.float32)}
    batched = jax.jit(jax.vmap(_make(num_seeds=3, seed_reduce=reduce)))(
        hs, jnp.stack([key, jax.random.key(5)]))
    np.testing.assert_allclose(batched["eval_loss"][0], reduced["eval_loss"], rtol=1e-5)


def test_worst_seed_pick_in_a_search_and_a_failed_seed_fails_the_trial():
    """With ``seed_reduce="max"`` a search ranks trials by their worst seed; a trial one of
    whose seeds diverges is NaN (failed), never best, whatever the reduction."""
    train_fn = _make(num_seeds=2, seed_reduce="max")
    result = lrjax.search(train_fn, SPACE, num_trials=4, key=1, objective="eval_loss")
    single = jax.jit(_make())
    for trial in result.trials:
        h = {k: jnp.float32(v) for k, v in trial["params"].items()}
        seeds = jax.random.split(lrjax.tuning.trial_key(1, trial["number"]), 2)
        np.testing.assert_allclose(
            trial["value"], max(float(single(h, k)["eval_loss"]) for k in seeds), rtol=1e-5)
    # One seed's NaN makes the trial's metric NaN under every reduction (a failed trial).
    for reduce, fn in SEED_REDUCTIONS.items():
        assert np.isnan(float(fn(jnp.array([0.5, jnp.nan, 2.0]), axis=0))), reduce
    # A rate at which plain gradient steps blow up: every seed's loss is inf or NaN.
    for reduce in ("mean", "max", "min"):
        out = jax.jit(_make(num_seeds=2, seed_reduce=reduce))(
            {"lr": jnp.float32(1e30), "wd": jnp.float32(0.0)}, jax.random.key(0))
        assert not np.isfinite(float(out["eval_loss"]))


@pytest.mark.parametrize("bad", ["median", "MAX", "", None, 1])
def test_bad_seed_reduce(bad):
    with pytest.raises(ValueError, match="seed_reduce must be one of"):
        _make(num_seeds=2, seed_reduce=bad)
