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
from lrjax.cli import find_command

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


# --- 17: --method grid --trials 9: an honest count, in one clean warning line ---------

SEARCH = ["search", "--steps", "3", "--hidden", "4", "--images", "8", "--quiet"]


def warning_lines(err):
    lines = [line for line in err.splitlines() if line]
    for line in lines:  # one line each: no file name, no source line of the library
        assert line.startswith("lrjax: warning: "), err
        assert ".py:" not in line and "warnings.warn" not in line, err
    return lines


def test_search_grid_says_how_many_trials_it_runs_and_why(capsys):
    status, out, err = run([*SEARCH, "--method", "grid", "--trials", "9"], capsys)
    assert status == 0, err
    lines = warning_lines(err)
    assert len(lines) == 1, err
    assert "runs 8 trials, not --trials 9" in lines[0]
    assert "3 axes (lr, weight_decay, b1)" in lines[0] and "2**3 = 8" in lines[0]
    assert "needs --trials 27" in lines[0]
    assert "8 trials (grid)" in out
    status, out, err = run([*SEARCH, "--method", "grid", "--trials", "8"], capsys)
    assert status == 0 and err == "" and "8 trials (grid)" in out  # a full grid: no note


def test_warnings_the_command_shows_are_one_clean_line(monkeypatch, capsys):
    import lrjax.cli.search_command

    def warn_and_fail(*args, **kwargs):
        warnings.warn("first line\n   second line", UserWarning, stacklevel=2)
        raise ValueError("stop here")

    monkeypatch.setattr(lrjax, "search", warn_and_fail)
    monkeypatch.setattr(lrjax.cli.search_command, "digits_train_fn", lambda *args: None)
    status, out, err = run([*SEARCH, "--trials", "2"], capsys)
    assert status == 2 and out == ""
    assert err.splitlines() == ["lrjax: warning: first line second line",
                                "lrjax: error: stop here"]


# --- 18: search's trials per program are --trials-per-program, not --batch-size -------


def test_search_trials_per_program_and_the_deprecated_batch_size(monkeypatch, capsys):
    import lrjax.cli.search_command

    seen = []

    def record(train_fn, space, **kwargs):
        seen.append(kwargs["batch_size"])
        raise ValueError("recorded")

    monkeypatch.setattr(lrjax, "search", record)
    monkeypatch.setattr(lrjax.cli.search_command, "digits_train_fn", lambda *args: None)
    status, _, err = run([*SEARCH, "--trials-per-program", "3"], capsys)
    assert status == 2 and err == "lrjax: error: recorded\n" and seen == [3]
    status, _, err = run([*SEARCH, "--batch-size", "5"], capsys)  # the old name still works
    lines = err.splitlines()
    assert seen == [3, 5] and len(lines) == 2 and lines[1] == "lrjax: error: recorded"
    assert lines[0].startswith("lrjax: warning: ") and "--batch-size is deprecated" in lines[0]
    assert "--trials-per-program" in lines[0]
    status, _, err = run([*SEARCH, "--batch-size", "5", "--trials-per-program", "3"], capsys)
    assert status == 2 and err.count("\n") == 1 and seen == [3, 5]
    assert "--batch-size" in err and "--trials-per-program" in err
    status, out, _ = run(["search", "--help"], capsys)
    assert "--trials-per-program" in out and "--batch-size" not in out
    status, out, _ = run(["find", "--help"], capsys)
    assert "--batch-size" in out and "images per step" in out


# --- 20: --plot DIR is refused; --json through a symbolic link keeps the link ---------


def synthetic_result(steps=30):
    lrs = np.logspace(-6, 0, steps)
    curve = 2 - np.tanh(np.log10(lrs) + 3)
    settings = {"mode": "exp", "num_steps": steps, "min_lr": 1e-6, "max_lr": 1.0}
    return lrjax.RangeTestResult(lrs=lrs.astype(np.float32), losses=curve.astype(np.float32),
                                 smoothed_losses=curve.astype(np.float32), diverged_at=None,
                                 settings=settings)


@pytest.fixture
def fake_run(monkeypatch):
    monkeypatch.setattr(find_command, "_run_range_test", lambda *args: synthetic_result())


@pytest.mark.parametrize("command", ["find", "search"])
def test_plot_naming_a_folder_is_refused(command, tmp_path, monkeypatch, capsys):
    # It wrote DIR.png beside the folder.
    folder = tmp_path / "plots"
    folder.mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(find_command, "_run_range_test", None)  # refused before any run
    monkeypatch.setattr(lrjax, "search", None)
    status, out, err = run([command, "--plot", "plots", "--quiet"], capsys)
    assert status == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("lrjax: error: --plot: 'plots' is a folder")
    assert os.path.join("plots", "range_test.png") in err
    assert sorted(os.listdir(tmp_path)) == ["plots"] and os.listdir(folder) == []


def test_json_through_a_symbolic_link_writes_its_target(fake_run, tmp_path, capsys):
    target = tmp_path / "data" / "lr.json"
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    plot_target = tmp_path / "data" / "lr.png"
    plot_link = tmp_path / "link.png"
    plot_link.symlink_to(plot_target)  # dangling: the plot creates its target
    status, out, err = run(["find", *QUIET, "--json", str(link), "--plot", str(plot_link)],
                           capsys)
    assert status == 0, err
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert json.loads(target.read_text())["method"] == "fall"
    assert plot_link.is_symlink() and plot_target.read_bytes()[:4] == b"\x89PNG"
    assert sorted(os.listdir(tmp_path)) == ["data", "link.json", "link.png"]
    assert sorted(os.listdir(target.parent)) == ["lr.json", "lr.png"]  # no temporary left


# --- 21: the licence pyproject.toml names is shipped; tests cite real sources ---------

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_license_file_is_the_apache_2_text_pyproject_names():
    import hashlib

    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as file:
        assert 'license = "Apache-2.0"' in file.read()
    with open(os.path.join(ROOT, "LICENSE"), encoding="utf-8") as file:
        text = file.read()
    first, blank, official = text.split("\n", 2)
    assert first == "Copyright 2026 The lrjax authors" and blank == ""
    # The official text, unmodified: https://www.apache.org/licenses/LICENSE-2.0.txt
    assert hashlib.md5(official.encode()).hexdigest() == "3b83ef96387f14655fc854ddc3c6bd57"
    assert "Apache License\n                           Version 2.0, January 2004" in official


def test_sources_cite_no_document_outside_the_project():
    cited = []
    for folder in ("tests", "lrjax", "examples", "benchmarks"):
        for base, _, names in os.walk(os.path.join(ROOT, folder)):
            for name in names:
                if name.endswith((".py", ".md", ".ipynb")) and name != "test_cli_hostile.py":
                    with open(os.path.join(base, name), encoding="utf-8") as file:
                        if "DESIGN.md" in file.read():
                            cited.append(os.path.join(base, name))
    assert cited == []
