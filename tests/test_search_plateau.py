"""``SearchResult.plateau_trial``: the middle of the best trials' plateau.

The rule (a trial is on the plateau when its objective is within ``tolerance`` of the way
from the best to an untrained model's; the pick is the plateau trial at the lower median
of the hyperparameter) is checked against a loop reference written from its docstring,
for both directions, with failed and pruned trials; then its argument checks; then what
the suggestions guide runs: a real range test with ``val_data``, a jitted, vmapped search
in ``search_space()`` with ``seed_reduce="max"``, and the plateau pick with the range
test's first validation loss as the reference. The tolerance (0.01) was chosen on
``benchmarks/finder_quality.py``'s development half (``--search 8 --pick plateau``).
"""

import math

import jax
import numpy as np
import optax
import pytest

from regression_problem import tiny_regression

import lrjax
from lrjax.tuning.result import PLATEAU_TOLERANCE, SearchResult


def trials_of(params, values, states=None):
    states = states or ["complete"] * len(values)
    return [{"number": i, "params": dict(p), "value": v, "metrics": {}, "state": s}
            for i, (p, v, s) in enumerate(zip(params, values, states))]


def result_of(params, values, direction="minimize", states=None):
    return SearchResult(trials_of(params, values, states), {}, "val_loss", direction, "random")


def ref_plateau(rates, values, reference, tolerance, direction="minimize"):
    """A loop over the trials, as the docstring states the rule (completed trials only)."""
    done = [(r, v, i) for i, (r, v) in enumerate(zip(rates, values)) if v is not None]
    if direction == "minimize":
        best = min(v for _, v, _ in done)
        edge = best + tolerance * (reference - best)
        plateau = [(r, i) for r, v, i in done if v <= edge]
    else:
        best = max(v for _, v, _ in done)
        edge = best - tolerance * (best - reference)
        plateau = [(r, i) for r, v, i in done if v >= edge]
    plateau.sort()
    return plateau[(len(plateau) - 1) // 2][1]


def test_default_tolerance():
    assert PLATEAU_TOLERANCE == 0.01


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_matches_the_loop_reference(seed, direction):
    rng = np.random.default_rng(seed)
    rates = np.exp(rng.uniform(np.log(1e-4), np.log(1.0), 12))
    # A plateau with a cliff at its right end: values near the best over a wide range.
    bowl = 0.1 + 0.05 * (np.log10(rates) + 2.0) ** 2 + rng.normal(0, 0.003, 12)
    values = [float(v) for v in (bowl if direction == "minimize" else 1.0 - bowl)]
    values[3] = None  # a failed trial never counts
    states = ["complete"] * 12
    states[3] = "fail"
    reference = 2.5 if direction == "minimize" else -1.5
    result = result_of([{"lr": float(r)} for r in rates], values, direction, states)
    for tolerance in (0.005, 0.01, 0.05, 1.0):
        got = result.plateau_trial(reference, tolerance=tolerance)
        assert got["number"] == ref_plateau(rates, values, reference, tolerance, direction)
        assert result.plateau_params(reference, tolerance=tolerance) == got["params"]
    # tolerance 1 takes every trial better than the reference: the median of all of them
    all_rates = sorted(float(r) for r, v in zip(rates, values) if v is not None)
    assert result.plateau_params(reference, tolerance=1.0)["lr"] == all_rates[(len(all_rates) - 1) // 2]


def test_keeps_away_from_a_cliff_where_the_best_trial_sits():
    """Flat validation loss from 1e-3 to 0.2, the best value at its edge (two seeds that
    survived), a cliff past it: the plateau's middle, not the edge."""
    rates = [1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.2, 0.6]
    values = [0.9, 0.0104, 0.0102, 0.0101, 0.0103, 0.0102, 0.0100, 2.4]
    result = result_of([{"lr": r} for r in rates], values)
    assert result.best_params == {"lr": 0.2}
    assert result.plateau_params(2.3) == {"lr": 1e-2}  # 6 on the plateau: the 3rd smallest
    # a plateau of one trial is the best trial
    assert result.plateau_params(2.3, tolerance=1e-6) == {"lr": 0.2}


def test_pruned_and_failed_trials_are_not_on_the_plateau():
    rates = [1e-3, 1e-2, 1e-1, 1.0]
    result = result_of([{"lr": r} for r in rates], [0.10, 0.10, 0.10, None],
                       states=["pruned", "complete", "complete", "fail"])
    assert result.plateau_params(1.0) == {"lr": 1e-2}  # the pruned 1e-3 does not count


def test_no_completed_trial_gives_none():
    result = result_of([{"lr": 0.1}], [None], states=["fail"])
    assert result.plateau_trial(1.0) is None and result.plateau_params(1.0) is None


@pytest.mark.parametrize("reference", [math.nan, math.inf, "1.0", None, True, [1.0],
                                       np.array([1.0, 2.0]), 1 + 2j])
def test_reference_must_be_a_finite_number(reference):
    result = result_of([{"lr": 0.1}], [0.2])
    with pytest.raises(ValueError, match="reference must be a finite number"):
        result.plateau_trial(reference)


def test_reference_may_be_a_numpy_or_concrete_jax_scalar():
    result = result_of([{"lr": 0.1}, {"lr": 0.3}], [0.2, 0.2001])
    for reference in (1, np.float32(1.0), jax.numpy.float32(1.0), np.asarray(1.0)):
        assert result.plateau_params(reference) == {"lr": 0.1}


def test_a_traced_reference_is_refused():
    result = result_of([{"lr": 0.1}], [0.2])
    with pytest.raises(ValueError, match="reference must be a finite number"):
        jax.jit(lambda r: result.plateau_trial(r)["number"])(1.0)


@pytest.mark.parametrize("direction, reference", [("minimize", 0.1), ("minimize", 0.2),
                                                  ("maximize", 0.3)])
def test_reference_must_be_worse_than_the_best(direction, reference):
    result = result_of([{"lr": 0.1}, {"lr": 0.2}], [0.2, 0.25], direction)
    with pytest.raises(ValueError, match="reference must be worse than the best"):
        result.plateau_trial(reference)


@pytest.mark.parametrize("tolerance, error", [(0.0, ValueError), (1.5, ValueError),
                                              (math.nan, ValueError), (True, TypeError),
                                              ("0.01", TypeError)])
def test_tolerance_is_checked(tolerance, error):
    result = result_of([{"lr": 0.1}], [0.2])
    with pytest.raises(error, match="tolerance"):
        result.plateau_trial(1.0, tolerance=tolerance)


def test_param_is_checked():
    two = result_of([{"lr": 0.1, "wd": 1e-4}, {"lr": 0.2, "wd": 1e-3}], [0.2, 0.3])
    with pytest.raises(ValueError, match=r"param must name .* one of \['lr', 'wd'\]"):
        two.plateau_trial(1.0)
    with pytest.raises(ValueError, match="param must be one of"):
        two.plateau_trial(1.0, param="momentum")
    assert two.plateau_params(1.0, param="wd", tolerance=1.0) == {"lr": 0.1, "wd": 1e-4}
    words = result_of([{"act": "relu"}, {"act": "gelu"}], [0.2, 0.2])
    with pytest.raises(ValueError, match="numeric values"):
        words.plateau_trial(1.0)


def test_the_guides_recipe_on_a_real_search():
    """Range test with val_data, then 8 quasi-random full trainings (2 seeds, worse seed)
    in search_space(), one compiled program; the plateau pick with the range test's first
    validation loss as the untrained reference is one of the trials, as the loop
    reference picks it."""
    loss_fn, init_fn, data = tiny_regression(key=5, num_batches=40)
    val = {"x": data["x"][-1], "y": data["y"][-1]}
    result = lrjax.range_test(loss_fn, None, optax.adam, data, init_fn=init_fn, num_seeds=2,
                              val_data=val, num_steps=40, min_lr=1e-3, max_lr=3.0)
    untrained = float(np.median(np.asarray(result.val_losses)[..., 0]))
    space = result.search_space(result.suggest(train_steps=30), name="lr")
    train_fn = lrjax.make_train_fn(loss_fn, init_fn, lambda h: optax.adam(h["lr"]), data,
                                   num_steps=30, eval_fn=lambda w: loss_fn(w, val),
                                   num_seeds=2, seed_reduce="max")
    found = lrjax.search(train_fn, space, num_trials=8, method="quasirandom", key=0,
                         objective="eval_loss")
    rates = [t["params"]["lr"] for t in found.trials]
    values = [t["value"] for t in found.trials]
    assert untrained > found.best_value
    pick = found.plateau_trial(untrained)
    assert pick["number"] == ref_plateau(rates, values, untrained, PLATEAU_TOLERANCE)
    assert found.plateau_params(untrained)["lr"] in rates
    # A trial's value is the worse seed's validation loss: the plateau trial's is within
    # the tolerance of the best.
    assert pick["value"] <= found.best_value + PLATEAU_TOLERANCE * (untrained - found.best_value)
