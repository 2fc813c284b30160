"""lrjax.search: batched trials == trials alone, one compile, known optima, failures, results."""

import itertools
import json
import math
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from regression_problem import tiny_regression

import lrjax
from lrjax.tuning.batches import BatchRunner

A = 4.0  # curvature of the quadratic below: gradient descent is exact at lr = 1 / A
STEPS = 6


def quadratic_train_fn(hparams, key):
    """STEPS gradient-descent steps on A/2 (w - 3)^2 from w = 0 (the key is unused)."""
    del key

    def step(_, w):
        return w - hparams["lr"] * A * (w - 3.0)

    w = jax.lax.fori_loop(0, STEPS, step, jnp.float32(0.0))
    return {"loss": A / 2 * (w - 3.0) ** 2, "w": w}


def quadratic_loss(lr):
    """The closed form of quadratic_train_fn's loss: w_t - 3 = (1 - lr A)^t (0 - 3)."""
    return A / 2 * ((1 - lr * A) ** STEPS * 3.0) ** 2


@pytest.fixture(scope="module")
def regression():
    """A tiny linear regression, its data as 6 stacked batches."""
    loss_fn, init_fn, data = tiny_regression(key=1, num_batches=6)

    def optimizer_fn(h):  # a schedule and an optimizer built from traced hyperparameters
        schedule = optax.cosine_decay_schedule(h["lr"], decay_steps=12)
        return optax.adamw(schedule, weight_decay=h["wd"])

    return lrjax.make_train_fn(loss_fn, init_fn, optimizer_fn, data, num_steps=12,
                               eval_fn=lambda w: loss_fn(w, jax.tree.map(lambda a: a[0], data)))


SPACE = {"lr": lrjax.log_uniform(1e-3, 3e-1), "wd": lrjax.log_uniform(1e-5, 1e-1)}


@pytest.fixture(scope="module")
def alone(regression):
    return jax.jit(regression)


@pytest.mark.parametrize("vectorize", ["vmap", "map", "loop"])
def test_batched_trials_equal_each_trial_alone_and_compile_once(regression, alone, vectorize):
    traces = []

    def counted(hparams, key):
        traces.append(1)  # runs only while JAX traces the function
        return regression(hparams, key)

    result = lrjax.search(counted, SPACE, num_trials=10, batch_size=4, key=7,
                          objective="eval_loss", vectorize=vectorize)
    assert len(traces) == 1  # one trace for 3 batches, the short last one padded
    again = lrjax.search(counted, SPACE, num_trials=6, batch_size=4, key=8,
                         objective="eval_loss", vectorize=vectorize)
    assert len(traces) == 1 and len(again.trials) == 6  # same batch shape: same executable
    assert [t["number"] for t in result.trials] == list(range(10))
    for trial in result.trials[::3]:
        hparams = {k: jnp.float32(v) for k, v in trial["params"].items()}
        metrics = alone(hparams, lrjax.tuning.trial_key(7, trial["number"]))
        for name, value in metrics.items():
            np.testing.assert_allclose(trial["metrics"][name], float(value), rtol=2e-5)
    # make_train_fn's default objective is the eval_fn's metric.
    assert regression.default_objective == "eval_loss"
    assert result.best_value == min(t["value"] for t in result.trials)
    # Each trial its own key: different initialisations give different results at equal hparams.
    same = {"lr": jnp.float32(0.01), "wd": jnp.float32(1e-3)}
    assert float(alone(same, lrjax.tuning.trial_key(7, 0))["train_loss"]) != pytest.approx(
        float(alone(same, lrjax.tuning.trial_key(7, 1))["train_loss"]), rel=1e-4)


def test_runner_reuses_one_executable():
    runner = BatchRunner(lambda h, k: h["lr"] * 2.0, (), 4, jax.random.key(0), None,
                         vectorize="vmap")
    for n in (4, 1, 3):
        out = runner({"lr": np.arange(n, dtype=np.float32)}, np.arange(n))
        np.testing.assert_array_equal(out["value"], 2.0 * np.arange(n))
    assert runner.recorder.traces == 1


@pytest.mark.parametrize("method", ["random", "quasirandom", "tpe", "grid"])
def test_finds_the_known_optimum(method):
    # 32 trials of lr in [0.05, 1]: the optimum is lr = 1/A = 0.25 (loss 0); the reported
    # loss of every trial equals the closed form at its lr.
    result = lrjax.search(quadratic_train_fn, {"lr": lrjax.log_uniform(0.05, 1.0)},
                          num_trials=32, batch_size=8, method=method, objective="loss", key=1)
    assert len(result.trials) == 32
    # Grid and Sobol points are 0.04 decades apart (within 5% of any lr); 32 random draws
    # land within 20% with probability 99%, within 10% only with 89%.
    tolerance = 0.2 if method == "random" else 0.1
    assert result.best_params["lr"] == pytest.approx(1 / A, rel=tolerance)
    for trial in result.trials:
        np.testing.assert_allclose(trial["value"], quadratic_loss(trial["params"]["lr"]),
                                   rtol=1e-3, atol=1e-6)
    if method == "tpe":
        assert result.study is not None and len(result.study.trials) == 32


T = 6
SCHEDULES = {  # lrjax factories of traced hyperparameters, and numpy's formula for them
    "cosine_annealing": (lambda h: lrjax.cosine_annealing(h["lr"], T),
                         lambda h, t: h["lr"] * 0.5 * (1 + np.cos(np.pi * t / T))),
    "exponential_decay": (lambda h: lrjax.exponential_decay(h["lr"], h["rate"]),
                          lambda h, t: h["lr"] * h["rate"] ** t),
    "sgdr": (lambda h: lrjax.sgdr(h["lr"], 3, decay=h["rate"]),
             lambda h, t: h["lr"] * h["rate"] ** (t // 3) * 0.5 * (1 + np.cos(np.pi * (t % 3) / 3))),
}


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_lrjax_schedules_built_from_traced_hyperparameters(name):
    make, formula = SCHEDULES[name]

    def train_fn(h, key):  # T steps of gradient descent on A/2 (w - 3)^2 at lr_t
        schedule = make(h)
        w = jax.lax.fori_loop(0, T, lambda t, w: w - schedule(t) * A * (w - 3.0), 0.0)
        return A / 2 * (w - 3.0) ** 2

    space = {"lr": lrjax.log_uniform(0.01, 0.4), "rate": lrjax.uniform(0.5, 0.99)}
    result = lrjax.search(train_fn, space, num_trials=8, method="quasirandom")
    for trial in result.trials:
        h = trial["params"]
        factor = np.prod([1 - formula(h, t) * A for t in range(T)])
        np.testing.assert_allclose(trial["value"], A / 2 * (3 * factor) ** 2, rtol=2e-4,
                                   atol=1e-7)


def test_gp_sampler_finds_the_optimum():
    pytest.importorskip("torch")
    result = lrjax.search(quadratic_train_fn, {"lr": lrjax.log_uniform(0.05, 1.0)},
                          num_trials=16, batch_size=4, method="gp", objective="loss")
    assert result.best_params["lr"] == pytest.approx(1 / A, rel=0.2)


@pytest.mark.parametrize("vectorize, batches", [("loop", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
                                                 ("vmap", [8, 10])])
def test_bayesian_default_batch_learns_after_every_trial_when_trials_run_one_by_one(
        vectorize, batches):
    # With "loop" (the CPU default) trials run one after another anyway, so TPE is told each
    # trial before the next is asked (batch 1); a vmapped program runs 8 at a time.
    pytest.importorskip("optuna")
    done = []
    result = lrjax.search(quadratic_train_fn, {"lr": lrjax.log_uniform(0.05, 1.0)},
                          num_trials=10, method="tpe", objective="loss", vectorize=vectorize,
                          progress=lambda finished, total: done.append(finished))
    assert done == batches and len(result.trials) == 10
    # Each later trial was asked with every earlier one finished: none ran beside another.
    study_trials = sorted(result.study.trials, key=lambda t: t.number)
    if vectorize == "loop":
        for earlier, later in itertools.pairwise(study_trials):
            assert earlier.datetime_complete <= later.datetime_start


def test_any_optuna_sampler_and_maximize():
    optuna = pytest.importorskip("optuna")
    result = lrjax.search(lambda h, k: -quadratic_train_fn(h, k)["loss"],
                          {"lr": lrjax.log_uniform(0.05, 1.0)}, num_trials=12, batch_size=6,
                          method=optuna.samplers.RandomSampler(seed=3), direction="maximize")
    assert result.method == "RandomSampler" and result.objective == "value"
    assert result.best_value == max(t["value"] for t in result.trials)
    assert result.study.best_value == pytest.approx(result.best_value)


def test_nan_trials_fail_and_are_never_best(tmp_path):
    optuna = pytest.importorskip("optuna")

    def train_fn(h, key):  # diverges (NaN) past lr = 0.5, as a too-large learning rate does
        return jnp.where(h["lr"] > 0.5, jnp.nan, (h["lr"] - 0.7) ** 2)

    for method in ("grid", "tpe"):
        result = lrjax.search(train_fn, {"lr": lrjax.uniform(0.0, 1.0)}, num_trials=11,
                              method=method, batch_size=4)
        failed = [t for t in result.trials if t["params"]["lr"] > 0.5]
        assert failed and all(t["state"] == "fail" and t["value"] is None for t in failed)
        assert result.best_params["lr"] <= 0.5
        if method == "tpe":
            states = {t.number: t.state for t in result.study.trials}
            assert all(states[t["number"]] == optuna.trial.TrialState.FAIL for t in failed)
    # JSON: NaN is null, the round trip keeps everything.
    text = result.to_json(tmp_path / "r.json")
    assert "NaN" not in text
    back = lrjax.SearchResult.from_json(tmp_path / "r.json")
    assert back.trials == json.loads(text)["trials"] and back.best_params == result.best_params
    assert back.space == result.space and back.study is None
    with pytest.warns(UserWarning, match="every trial failed"):
        all_failed = lrjax.search(lambda h, k: h["lr"] * jnp.inf, {"lr": lrjax.uniform(1, 2)},
                                  num_trials=2)
    assert all_failed.best_params is None and math.isnan(all_failed.best_value)


def test_plot_has_log_axes_for_log_dimensions(tmp_path):
    result = lrjax.search(quadratic_train_fn, {"lr": lrjax.log_uniform(0.05, 1.0),
                                               "unused": lrjax.uniform(0.0, 1.0)},
                          num_trials=16, objective="loss")
    figure = result.plot(tmp_path / "search.png")
    lr_ax, unused_ax, progress_ax = figure.axes[:3]
    assert lr_ax.get_xscale() == "log" and unused_ax.get_xscale() == "linear"
    assert progress_ax.get_xlabel() == "trial number"
    assert (tmp_path / "search.png").stat().st_size > 10_000


def test_trial_axis_sharded_over_the_mesh(num_devices):
    if num_devices < 8:
        pytest.skip("needs 8 (simulated) devices")
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:8]), ("trials",))
    runner = BatchRunner(lambda h, k: h["lr"] + jax.random.uniform(k), (), 8,
                         jax.random.key(0), mesh)
    out = runner({"lr": np.arange(8, dtype=np.float32)}, np.arange(8))
    sharding = runner._compiled.input_shardings[0][0]["lr"]
    assert len(sharding.device_set) == 8 and not sharding.is_fully_replicated
    keys = jax.vmap(lambda n: jax.random.fold_in(jax.random.key(0), n))(jnp.arange(8))
    expected = np.arange(8) + np.asarray(jax.vmap(jax.random.uniform)(keys))
    np.testing.assert_allclose(out["value"], expected, rtol=1e-6)
    sharded = lrjax.search(quadratic_train_fn, {"lr": lrjax.log_uniform(0.05, 1.0)},
                           num_trials=12, mesh=mesh, objective="loss")
    single = lrjax.search(quadratic_train_fn, {"lr": lrjax.log_uniform(0.05, 1.0)},
                          num_trials=12, batch_size=8, objective="loss")
    for a, b in zip(sharded.trials, single.trials):
        assert a["params"] == b["params"]
        np.testing.assert_allclose(a["value"], b["value"], rtol=1e-6, atol=1e-12)
    with pytest.raises(ValueError, match="cannot shard them"):
        lrjax.search(quadratic_train_fn, SPACE, num_trials=8, mesh=mesh, vectorize="map")
    with pytest.raises(ValueError, match="multiple of the mesh's 8 devices"):
        lrjax.search(quadratic_train_fn, SPACE, num_trials=12, batch_size=4, mesh=mesh)


def _nonscalar(h, k):
    return {"loss": jnp.ones(3) * h["lr"]}


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(space={}), ValueError, "space is empty"),
        (dict(space={"lr": (0.1, 1.0)}), TypeError, r"space\['lr'\] must be uniform"),
        (dict(num_trials=0), ValueError, "num_trials must be an integer >= 1"),
        (dict(num_trials=2.5), ValueError, "num_trials must be an integer >= 1"),
        (dict(method="bayes"), ValueError, "method must be one of"),
        (dict(direction="down"), ValueError, "direction must be"),
        (dict(objective="accuracy"), ValueError, r"objective='accuracy' is not a metric"),
        (dict(objective=None), ValueError, "name the one to optimize with objective="),
        (dict(train_fn=_nonscalar), ValueError, r"metric 'loss' has shape \(3,\)"),
        (dict(train_fn=lambda h, k: [h["lr"]]), TypeError, "scalar or a dict of scalars"),
        (dict(train_fn="train"), TypeError, "train_fn must be a function"),
        (dict(key="seed"), TypeError, "key must be an int seed"),
        (dict(batch_size=0), ValueError, "batch_size must be an integer >= 1"),
        (dict(progress="yes"), TypeError, "progress must be"),
        (dict(grid_points=3), ValueError, "grid_points is only for method='grid'"),
        (dict(vectorize="pmap"), ValueError, "vectorize must be"),
    ],
)
def test_bad_input(kwargs, error, message):
    call = dict(train_fn=quadratic_train_fn, space={"lr": lrjax.uniform(0.1, 1.0)},
                num_trials=4, objective="loss")
    call.update(kwargs)
    with pytest.raises(error, match=message):
        lrjax.search(call.pop("train_fn"), call.pop("space"), **call)


def test_different_structure_per_call():
    calls = []

    def flipping(h, k):  # Python state: another metric name when traced again
        calls.append(1)
        return {"a": h["lr"]} if len(calls) == 1 else {"b": h["lr"]}

    space = {"lr": lrjax.uniform(0.1, 1.0)}
    lrjax.search(flipping, space, num_trials=2, batch_size=2)
    with pytest.raises(ValueError, match="different structure"):
        lrjax.search(flipping, space, num_trials=3, batch_size=3)  # a new batch shape: traced


def test_optuna_methods_without_optuna_name_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna now raises ImportError
    for kwargs in (dict(method="tpe"), dict(storage="search.log")):
        with pytest.raises(ImportError, match=r"lrjax\[search\]"):
            lrjax.search(quadratic_train_fn, {"lr": lrjax.uniform(0.1, 1.0)}, num_trials=2,
                         objective="loss", **kwargs)
    # The core methods need no Optuna.
    result = lrjax.search(quadratic_train_fn, {"lr": lrjax.uniform(0.1, 1.0)}, num_trials=2,
                          objective="loss", method="grid")
    assert len(result.trials) == 2 and result.study is None


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(data={}), ValueError, "data is empty"),
        (dict(data={"x": jnp.ones((3, 2)), "y": jnp.ones((4,))}), ValueError,
         "same leading"),
        (dict(data={"x": jnp.ones(())}), ValueError, "same leading"),
        (dict(num_steps=0), ValueError, "num_steps must be an integer >= 1"),
        (dict(loss_window=0), ValueError, "loss_window must be an integer >= 1"),
        (dict(loss_fn=None), TypeError, "loss_fn must be callable"),
        (dict(eval_fn=3), TypeError, "eval_fn must be callable"),
        (dict(shuffle="yes"), TypeError, "shuffle must be a bool"),
    ],
)
def test_make_train_fn_bad_input(kwargs, error, message):
    call = dict(loss_fn=lambda w, b: jnp.sum(w), init_fn=lambda k: jnp.ones(2),
                optimizer_fn=lambda h: optax.sgd(h["lr"]), data={"x": jnp.ones((3, 2))},
                num_steps=4)
    call.update(kwargs)
    with pytest.raises(error, match=message):
        lrjax.make_train_fn(call.pop("loss_fn"), call.pop("init_fn"), call.pop("optimizer_fn"),
                            call.pop("data"), **call)
