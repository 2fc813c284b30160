"""optax.contrib optimizers through lrjax's engine: range test, search, snapshots, SWA.

* ``reduce_on_plateau`` (an ``optax.GradientTransformationExtraArgs``) gets ``value=loss``
  at every step (before issue 23 a range test of it failed: "update_fn() missing 1
  required keyword-only argument: 'value'").
* Schedule-free optimizers (``schedule_free_sgd``/``_adamw``/``schedule_free``) train at
  ``y`` and are evaluated at ``x = optax.contrib.schedule_free_eval_params(state, y)``
  wherever lrjax evaluates or keeps a model: the range test's ``val_data``,
  ``make_train_fn``'s ``eval_fn``, snapshot members and SWA's average.
* ``prodigy`` and ``dadapt_adamw`` (learning-rate free: ``learning_rate`` is a multiplier
  of the rate they estimate) run in search and in the range test (which scans the
  multiplier).

Reference for every number: the same optimizer stepped by hand in a plain Python loop over
a jitted step (``tx.update(grads, state, params, value=loss)``), with optax's own
``schedule_free_eval_params``; lrjax's compiled programs must agree with it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lrjax
from lrjax._engine.eval_params import evaluation_params


def contrib(name: str):
    """``optax.contrib.<name>``, or a skip where this optax lacks it."""
    found = getattr(optax.contrib, name, None)
    if found is None:
        pytest.skip(f"optax {optax.__version__} has no optax.contrib.{name}")
    return found


# --------------------------------------------------------------------------------------
# A small regression problem and a hand-written training loop (the reference)
# --------------------------------------------------------------------------------------
NUM_BATCHES, BATCH = 24, 16
_rng = np.random.default_rng(0)
X = _rng.normal(size=(NUM_BATCHES, BATCH, 3)).astype(np.float32)
Y = (X @ np.array([1.5, -2.0, 0.5], np.float32) + 0.3
     + 0.1 * _rng.normal(size=(NUM_BATCHES, BATCH))).astype(np.float32)
DATA = {"x": X, "y": Y}
VAL = {"x": X[0] * 1.1, "y": Y[0]}
PARAMS = {"w": jnp.zeros(3), "b": jnp.zeros(())}


def loss_fn(params, batch):
    return jnp.mean((batch["x"] @ params["w"] + params["b"] - batch["y"]) ** 2)


def batch_at(t: int):
    return jax.tree.map(lambda x: x[t % NUM_BATCHES], DATA)


def by_hand(tx: optax.GradientTransformation, steps: int, params=PARAMS):
    """``(losses, params_t, states_t)`` after each of ``steps`` updates (lists)."""
    @jax.jit
    def step(params, state, batch):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        extra = {"value": loss} if isinstance(tx, optax.GradientTransformationExtraArgs) else {}
        updates, state = tx.update(grads, state, params, **extra)
        return optax.apply_updates(params, updates), state, loss

    state, losses, trail = tx.init(params), [], []
    for t in range(steps):
        params, state, loss = step(params, state, batch_at(t))
        losses.append(float(loss))
        trail.append((params, state))
    return np.array(losses), trail


def table_schedule(lrs: np.ndarray):
    """The range test's ramp as it runs: ``lrs[clip(count, 0, N - 1)]``."""
    table = jnp.asarray(lrs, jnp.float32)
    return lambda count: table[jnp.clip(jnp.asarray(count, jnp.int32), 0, len(lrs) - 1)]


def plateau_adam(learning_rate):
    return optax.chain(optax.adam(learning_rate),
                       contrib("reduce_on_plateau")(factor=0.5, patience=2, accumulation_size=2))


# --------------------------------------------------------------------------------------
# evaluation_params: where schedule-free states are found
# --------------------------------------------------------------------------------------
def _trained(tx, steps=3):
    _, trail = by_hand(tx, steps)
    return trail[-1]


@pytest.mark.parametrize("wrap", ["bare", "chain", "inject", "multisteps", "swa"])
def test_evaluation_params_finds_the_schedule_free_state(wrap):
    inner = contrib("schedule_free_adamw")(0.05, warmup_steps=2)
    tx = {"bare": lambda: inner,
          "chain": lambda: optax.chain(optax.clip_by_global_norm(1.0), inner),
          "inject": lambda: optax.inject_hyperparams(
              contrib("schedule_free_adamw"), static_args=("warmup_steps",))(
              learning_rate=0.05, warmup_steps=2),
          "multisteps": lambda: optax.MultiSteps(inner, every_k_schedule=1),
          "swa": lambda: lrjax.swa(inner, start_step=0)}[wrap]()
    params, state = _trained(tx)
    found = [node for node in jax.tree.leaves(state, is_leaf=lambda n: isinstance(n, optax.contrib.ScheduleFreeState))
             if isinstance(node, optax.contrib.ScheduleFreeState)]
    assert len(found) == 1
    expected = optax.contrib.schedule_free_eval_params(found[0], params)
    got = jax.jit(evaluation_params)(state, params)
    jax.tree.map(lambda g, e: np.testing.assert_allclose(g, e, rtol=1e-6), got, expected)
    assert not np.allclose(got["w"], params["w"])  # x and y differ after a few steps


def test_evaluation_params_over_part_of_the_params():
    """optax.partition: schedule-free on ``w`` only; ``b`` (sgd) is evaluated as it is."""
    tx = optax.partition({"sf": contrib("schedule_free_sgd")(0.1), "plain": optax.sgd(0.1)},
                         {"w": "sf", "b": "plain"})
    params, state = _trained(tx)
    sf_state = [n for n in jax.tree.leaves(state, is_leaf=lambda n: isinstance(n, optax.contrib.ScheduleFreeState))
                if isinstance(n, optax.contrib.ScheduleFreeState)][0]
    got = evaluation_params(state, params)
    b1 = float(sf_state.b1)
    np.testing.assert_allclose(got["w"], (params["w"] - (1 - b1) * sf_state.z["w"]) / b1, rtol=1e-6)
    assert got["b"] is params["b"]


def test_evaluation_params_of_other_optimizers_are_the_params():
    for tx in (optax.adam(0.1), plateau_adam(0.1), contrib("prodigy")(1.0)):
        params, state = _trained(tx)
        assert evaluation_params(state, params) is params


# --------------------------------------------------------------------------------------
# The range test
# --------------------------------------------------------------------------------------
def test_range_test_of_reduce_on_plateau_gets_the_loss():
    result = lrjax.range_test(loss_fn, PARAMS, plateau_adam, DATA, min_lr=1e-3, max_lr=1.0,
                              num_steps=NUM_BATCHES, diverge_threshold=np.inf)
    losses, trail = by_hand(plateau_adam(table_schedule(result.lrs)), NUM_BATCHES)
    np.testing.assert_allclose(result.losses, losses, rtol=2e-5)
    assert float(trail[-1][1][1].scale) < 1.0  # the plateau fired: it saw the losses


@pytest.mark.parametrize("name", ["schedule_free_sgd", "schedule_free_adamw"])
def test_range_test_validates_schedule_free_at_its_evaluation_params(name):
    # No warmup_steps: optax builds its warmup from a scalar learning rate only; the
    # range test's ramp is a schedule (and a warmup of its own).
    factory = contrib(name)
    result = lrjax.range_test(loss_fn, PARAMS, factory, DATA, min_lr=1e-3, max_lr=3.0,
                              num_steps=NUM_BATCHES, val_data=VAL, diverge_threshold=np.inf)
    losses, trail = by_hand(factory(table_schedule(result.lrs)), NUM_BATCHES)
    at_x = [float(loss_fn(optax.contrib.schedule_free_eval_params(s, p), VAL)) for p, s in trail]
    at_y = [float(loss_fn(p, VAL)) for p, _ in trail]
    np.testing.assert_allclose(result.losses, losses, rtol=2e-5)
    finite = np.isfinite(at_x)
    np.testing.assert_allclose(result.val_losses[finite], np.array(at_x)[finite], rtol=2e-5)
    assert not np.allclose(at_x[:10], at_y[:10], rtol=1e-3)  # the check can tell them apart
    assert np.isfinite(result.suggest())


@pytest.mark.parametrize("name", ["prodigy", "dadapt_adamw"])
def test_range_test_scans_the_multiplier_of_learning_rate_free_optimizers(name):
    factory = contrib(name)
    result = lrjax.range_test(loss_fn, PARAMS, factory, DATA, min_lr=1e-3, max_lr=100.0,
                              num_steps=NUM_BATCHES)
    stop = NUM_BATCHES if result.diverged_at is None else result.diverged_at
    losses, _ = by_hand(factory(table_schedule(result.lrs)), stop)
    np.testing.assert_allclose(result.losses[:stop], losses, rtol=1e-4)
    # Their own step size starts tiny (d0 = 1e-6) and grows, so a short ramp mixes that
    # growth with the multiplier: the curve runs and trains, but is rarely readable.
    assert np.nanmin(result.losses) < result.losses[0]


# --------------------------------------------------------------------------------------
# Search (make_train_fn) and snapshots
# --------------------------------------------------------------------------------------
def _train_fn(optimizer_fn, steps=20, eval_fn=None):
    return lrjax.make_train_fn(loss_fn, lambda key: PARAMS, optimizer_fn, DATA, num_steps=steps,
                               eval_fn=eval_fn, shuffle=False, loss_window=5)


@pytest.mark.parametrize("name", ["schedule_free_sgd", "schedule_free_adamw"])
def test_train_fn_evaluates_schedule_free_at_its_evaluation_params(name):
    factory = contrib(name)
    train_fn = _train_fn(lambda h: factory(h["lr"]), eval_fn=lambda p: loss_fn(p, VAL))
    result = lrjax.search(train_fn, {"lr": lrjax.choice([0.02, 0.2])}, num_trials=2, method="grid")
    for trial in result.trials:
        losses, trail = by_hand(factory(trial["params"]["lr"]), 20)
        params, state = trail[-1]
        expected = float(loss_fn(optax.contrib.schedule_free_eval_params(state, params), VAL))
        np.testing.assert_allclose(trial["metrics"]["eval_loss"], expected, rtol=2e-5)
        np.testing.assert_allclose(trial["metrics"]["train_loss"], losses[-5:].mean(), rtol=2e-5)
        assert abs(expected - float(loss_fn(params, VAL))) > 1e-6 * abs(expected)


@pytest.mark.parametrize("name", ["prodigy", "dadapt_adamw", "reduce_on_plateau"])
def test_search_runs_learning_rate_free_and_plateau_optimizers(name):
    if name == "reduce_on_plateau":
        contrib(name)
        factory = plateau_adam
    else:
        factory = contrib(name)
    # Prodigy and D-Adaptation grow their step size from a tiny d0: 120 steps to learn.
    train_fn = _train_fn(lambda h: factory(h["lr"]), steps=120)
    result = lrjax.search(train_fn, {"lr": lrjax.log_uniform(0.5, 3.0)}, num_trials=3, method="quasirandom")
    for trial in result.trials:
        losses, _ = by_hand(factory(trial["params"]["lr"]), 120)
        np.testing.assert_allclose(trial["value"], losses[-5:].mean(), rtol=1e-3, atol=1e-5)
    assert result.best_value < 0.25 * float(loss_fn(PARAMS, batch_at(0)))


@pytest.mark.parametrize("name", ["schedule_free_sgd", "reduce_on_plateau"])
def test_snapshots_keep_evaluation_params(name):
    factory = plateau_adam if name == "reduce_on_plateau" else contrib(name)
    if name == "reduce_on_plateau":
        contrib(name)
    steps, cycles = NUM_BATCHES, 3
    result = lrjax.train_snapshots(loss_fn, PARAMS, factory, DATA, num_steps=steps,
                                   num_cycles=cycles, init_value=0.1)
    losses, trail = by_hand(factory(lrjax.snapshot_schedule(0.1, steps, cycles)), steps)
    np.testing.assert_allclose(result.losses, losses, rtol=2e-5)
    for row, end in enumerate(lrjax.snapshot_cycle_ends(steps, cycles)):
        params, state = trail[end]
        expected = evaluation_params(state, params)
        if name == "schedule_free_sgd":
            expected = optax.contrib.schedule_free_eval_params(state, params)
        jax.tree.map(lambda s, e: np.testing.assert_allclose(s[row], e, rtol=2e-5, atol=1e-7),
                     result.params, expected)


def test_swa_averages_schedule_free_evaluation_params():
    tx = lrjax.swa(contrib("schedule_free_sgd")(0.1), start_step=2)
    _, trail = by_hand(tx, 6)
    iterates = [optax.contrib.schedule_free_eval_params(lrjax.swa_state(s).inner_state, p)
                for p, s in trail[2:]]
    mean = jax.tree.map(lambda *xs: np.mean(np.stack(xs), axis=0), *iterates)
    jax.tree.map(lambda g, e: np.testing.assert_allclose(g, e, rtol=1e-5),
                 lrjax.swa_params(trail[-1][1]), mean)
