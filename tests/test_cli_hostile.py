"""Regression tests of a hostile review / new-user trial of the ``lrjax`` command.

Each test names the finding it guards; the CLI ones run the real command in-process
through ``lrjax.cli.main`` (few steps, the embedded digits problem).
"""

import json
import os
import warnings

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lrjax
from lrjax import cli

QUIET = ["--quiet", "--no-terminal-plot"]


def run(argv, capsys):
    status = cli.main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# --- 15: a linear ramp whose loss clearly falls is read (the fall rule assumed a log ramp)


def quadratic_linear_ramp():
    """SGD on a least-squares problem, lr ramped linearly 1e-7 -> 10 over 100 steps: the
    loss falls within the first few steps (rates 0.1 .. 0.5), inside the first tenth of
    the steps that the fall rule took as its flat start."""

    def loss_fn(w, batch):
        return jnp.mean((batch["x"] @ w - batch["y"]) ** 2)

    x = np.random.default_rng(0).normal(size=(100, 32, 4)).astype(np.float32)
    y = x @ np.array([1.0, -2.0, 0.5, 3.0], np.float32)
    return lrjax.range_test(loss_fn, jnp.zeros(4), optax.sgd, {"x": x, "y": y}, min_lr=1e-7,
                            max_lr=10.0, num_steps=100, mode="linear")


def test_linear_ramp_range_test_suggest_reads_the_fall():
    result = quadratic_linear_ramp()
    raw = np.asarray(result.losses, np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "never falls below its start" fallback
        lr = result.suggest()
    index = int(np.searchsorted(result.lrs, lr * (1 - 1e-6)))
    start = raw[0]
    # A quarter of the way down the fall: on it, not at its bottom (where the log-ramp
    # windows put it: lr 0.81, the loss already ~0), and not the smallest rate.
    assert result.lrs[0] < lr < 0.5
    assert 0.2 * start < raw[index] < start, (lr, raw[:12])


def test_find_linear_mode_reads_a_falling_curve(tmp_path, capsys):
    # The trial's command: the table shows the smoothed loss falling 2.56 -> 1.31, and the
    # fall rule said it never falls and fell back to --min-lr.
    path = tmp_path / "linear.json"
    status, out, err = run(["find", "--mode", "linear", "--optimizer", "sgd", *QUIET, "--json",
                            str(path)], capsys)
    assert status == 0, err
    assert "never falls below its start" not in err
    payload = json.loads(path.read_text())
    fall = payload["suggestions"]["fall"]
    assert payload["method"] == "fall" and payload["suggestion"] == fall
    assert 0.05 < fall < 1.0, (fall, err)
    lrs = np.asarray(payload["lrs"]["data"])
    raw = np.asarray(payload["losses"]["data"], np.float64)
    index = int(np.searchsorted(lrs, fall * (1 - 1e-6)))
    assert np.nanmin(raw) < raw[index] < raw[0]  # on the fall
