"""Tests of the embedded digits problem and of examples/find_lr_flax.py (run as a script)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import lrjax
from lrjax.data import digits
from lrjax.finder.suggest.rules import DEFAULT_METHOD

ROOT = Path(__file__).resolve().parent.parent


def numpy_loss(params, x, y):
    """Reference: mean cross-entropy of relu(x W1 + b1) W2 + b2, in float64."""
    p = {layer: {k: np.asarray(v, np.float64) for k, v in d.items()} for layer, d in params.items()}
    hidden = np.maximum(np.asarray(x, np.float64) @ p["hidden"]["kernel"] + p["hidden"]["bias"], 0)
    logits = hidden @ p["output"]["kernel"] + p["output"]["bias"]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -np.mean(log_probs[np.arange(len(y)), np.asarray(y)])


def test_split_is_deterministic_and_standardized_with_train_statistics():
    split = digits.load_digits_split()
    assert split.x_train.shape == (1438, 64) and split.x_test.shape == (359, 64)
    assert split.x_train.dtype == np.float32 and split.y_train.dtype == np.int32
    assert not split.x_train.flags.writeable  # cached and shared: read-only
    from sklearn.datasets import load_digits

    raw = load_digits()
    # Reference from the documented recipe: a seeded permutation, the first 20% for test,
    # each pixel standardized by the train part's mean and std (std 0 -> left unscaled).
    order = np.random.default_rng(0).permutation(1797)
    test, train = order[:359], order[359:]
    mean, std = raw.data[train].mean(axis=0), raw.data[train].std(axis=0)
    std[std == 0] = 1.0
    np.testing.assert_allclose(split.x_train, (raw.data[train] - mean) / std, atol=1e-5)
    np.testing.assert_allclose(split.x_test, (raw.data[test] - mean) / std, atol=1e-5)
    np.testing.assert_array_equal(split.y_train, raw.target[train])
    np.testing.assert_array_equal(split.y_test, raw.target[test])
    np.testing.assert_allclose(split.x_train.mean(axis=0), 0.0, atol=1e-5)
    other = digits.load_digits_split(seed=1)
    assert not np.array_equal(other.y_test, split.y_test)
    with pytest.raises(ValueError, match="test_fraction"):
        digits.load_digits_split(test_fraction=1.0)


def test_stacked_batches_cover_each_epoch_without_repeats():
    x = np.arange(10, dtype=np.float32)[:, None] * np.ones((1, 64), np.float32)
    y = np.arange(10, dtype=np.int32)
    data = digits.stacked_batches(x, y, batch_size=3, num_steps=7, seed=1)
    assert data["x"].shape == (7, 3, 64) and data["y"].shape == (7, 3)
    labels = np.asarray(data["y"])
    # 3 full batches per epoch (9 of 10 images); no image twice within an epoch
    for epoch in range(2):
        seen = labels[3 * epoch : 3 * epoch + 3].ravel()
        assert len(set(seen.tolist())) == 9
    np.testing.assert_array_equal(np.asarray(data["x"])[..., 0], labels)  # images match labels
    for bad in ({"batch_size": 0}, {"batch_size": 11}, {"num_steps": 0}):
        kwargs = {"batch_size": 3, "num_steps": 7} | bad
        with pytest.raises(ValueError, match=next(iter(bad))):
            digits.stacked_batches(x, y, **kwargs)


def test_problem_loss_matches_numpy_and_init_fn_is_reproducible():
    loss_fn, params, data, init_fn = digits.digits_problem(
        hidden=64, batch_size=32, num_steps=5, seed=3
    )
    assert data["x"].shape == (5, 32, 64)
    batch = jax.tree.map(lambda a: a[2], data)
    loss = jax.jit(loss_fn)(params, batch)
    assert loss.dtype == np.float32
    np.testing.assert_allclose(loss, numpy_loss(params, batch["x"], batch["y"]), rtol=1e-5)
    # params are init_fn(key(seed)); vmapped init gives per-key params equal to single calls
    same = init_fn(jax.random.key(3))
    jax.tree.map(np.testing.assert_array_equal, same, params)
    keys = jax.random.split(jax.random.key(0), 2)
    stacked = jax.jit(jax.vmap(init_fn))(keys)  # how range_test runs seeds: one program
    second = init_fn(keys[1])
    jax.tree.map(lambda s, p: np.testing.assert_array_equal(s[1], p), stacked, second)
    with pytest.raises(ValueError, match="hidden"):
        digits.digits_problem(hidden=0)


def test_missing_scikit_learn_names_the_extra(monkeypatch):
    digits._cached_split.cache_clear()
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"scikit-learn \(pip install lrjax\[examples\]\)"):
        digits.load_digits_split(seed=123)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_find_lr_flax_example_trains_to_high_accuracy(optimizer):
    # Both optimizers train well from their own cyclical bounds (SGD with momentum 0.9 blew
    # up when max_lr was read at the lagging EMA's minimum).
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
    completed = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "find_lr_flax.py"),
            "--optimizer",
            optimizer,
            "--range-steps",
            "60",
            "--epochs",
            "6",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=env | {"PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    bounds = re.search(r"cyclical bounds (\S+) \.\. (\S+)", completed.stdout)
    assert bounds and 0 < float(bounds[1]) < float(bounds[2])
    accuracy = float(re.search(r"test accuracy: (\S+)", completed.stdout)[1])
    assert accuracy > 0.9, completed.stdout
    assert f"({DEFAULT_METHOD}); cyclical bounds" in completed.stdout  # the rule used


@pytest.mark.parametrize("example", ["find_lr_linen", "find_lr_nnx", "find_lr_equinox"])
def test_range_test_model_examples_train_to_high_accuracy(example):
    # linen BatchNorm + Dropout (state=, stochastic=True, eval_fn), an nnx module with
    # Dropout, an Equinox module with Dropout keys: each range test, then cyclical training.
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="", PYTHONPATH=str(ROOT))
    completed = subprocess.run(
        [sys.executable, str(ROOT / "examples" / f"{example}.py"), "--range-steps", "40",
         "--epochs", "2"],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=env, check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    bounds = re.search(r"cyclical bounds (\S+) \.\. (\S+)", completed.stdout)
    assert bounds and 0 < float(bounds[1]) < float(bounds[2]) <= 10.0
    accuracy = float(re.search(r"test accuracy: (\S+)", completed.stdout)[1])
    assert accuracy > 0.85, completed.stdout


def test_examples_name_the_rule_their_suggestion_used(capsys, monkeypatch):
    # suggest() without a method uses lrjax's default rule (fall), not valley: the
    # examples print the rule actually used beside the suggestion.
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    from range_example_common import report

    lrs = np.logspace(-6, 0, 61)
    curve = 2 - np.tanh(np.log10(lrs) + 3)
    result = lrjax.RangeTestResult(lrs=lrs.astype(np.float32), losses=curve.astype(np.float32),
                                   smoothed_losses=curve.astype(np.float32), diverged_at=None,
                                   settings={"mode": "exp", "num_steps": 61, "min_lr": 1e-6,
                                             "max_lr": 1.0})
    report(result)
    out = capsys.readouterr().out
    assert f"suggested lr {result.suggest():.3g} ({DEFAULT_METHOD});" in out, out
    source = (ROOT / "examples" / "find_lr_flax.py").read_text()
    assert "(valley)" not in source and "DEFAULT_METHOD" in source
