"""Tests of the ``lrjax`` command, run in-process through ``lrjax.cli.main``."""

import io
import json
import subprocess
import sys

import numpy as np
import pytest

import lrjax
from lrjax import cli
from lrjax.digits import digits_problem

FAST = ["--steps", "12", "--quiet", "--no-terminal-plot"]


def run(argv, capsys):
    status = cli.main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_version(capsys):
    status, out, _ = run(["--version"], capsys)
    assert status == 0 and out.strip() == f"lrjax {lrjax.__version__}"


def test_help_documents_find_and_its_options(capsys):
    status, out, _ = run(["--help"], capsys)
    assert status == 0 and "find" in out
    status, out, _ = run(["find", "--help"], capsys)
    assert status == 0
    for option in (
        "--optimizer",
        "--min-lr",
        "--max-lr",
        "--steps",
        "--seeds",
        "--mode",
        "--batch-size",
        "--suggest",
        "--smoothing",
        "--plot",
        "--json",
        "--quiet",
    ):
        assert option in out
    for name in ("adam", "adamw", "sgd", "amsgrad", "powersign", "addsign"):
        assert name in out


def test_no_command_prints_help_and_fails(capsys):
    status, out, _ = run([], capsys)
    assert status == 2 and "find" in out


@pytest.mark.parametrize(
    "argv, names",
    [
        (["--min-lr", "1", "--max-lr", "0.1"], "--max-lr"),
        (["--min-lr", "0.1", "--max-lr", "0.1"], "--max-lr"),
        (["--optimizer", "nadam"], "--optimizer"),
        (["--steps", "0"], "--steps"),
        (["--steps", "-5"], "--steps"),
        (["--steps", "ten"], "--steps"),
        (["--max-lr", "inf"], "--max-lr"),
        (["--min-lr", "nan"], "--min-lr"),
        (["--min-lr", "0"], "--min-lr"),
        (["--min-lr", "-1", "--mode", "linear"], "--min-lr"),
        (["--mode", "cosine"], "--mode"),
        (["--seeds", "0"], "--seeds"),
        (["--batch-size", "5000"], "--batch-size"),
        (["--smoothing", "1"], "--smoothing"),
        (["--diverge-threshold", "1"], "--diverge-threshold"),
        (["--suggest", "best"], "--suggest"),
        (["--json", "/no/such/folder/out.json"], "--json"),
        (["--bogus"], "--bogus"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, names, capsys):
    status, out, err = run(["find", *argv], capsys)
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("lrjax: error: ")
    assert names in err


@pytest.mark.parametrize("module, package", [("sklearn", "scikit-learn"), ("flax", "flax")])
def test_missing_optional_dependency_names_the_extra(module, package, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, module, None)  # makes the import fail
    status, _, err = run(["find", *FAST], capsys)
    assert status == 2 and err.count("\n") == 1
    assert package in err and "lrjax[examples]" in err


def test_folder_as_output_file_and_missing_matplotlib(tmp_path, monkeypatch, capsys):
    status, _, err = run(["find", "--json", str(tmp_path)], capsys)
    assert status == 2 and err.count("\n") == 1 and "--json" in err and "folder" in err
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    status, _, err = run(["find", "--plot", str(tmp_path / "x.png")], capsys)
    assert status == 2 and err.count("\n") == 1 and "lrjax[plot]" in err


class FakeTerminal:
    def __init__(self):
        self.text = ""

    def isatty(self):
        return True

    def write(self, text):
        self.text += text

    def flush(self):
        pass


def test_progress_bar_redraws_in_place_on_a_terminal():
    terminal = FakeTerminal()
    report = cli._progress_reporter(terminal)
    for done in (0, 5, 10):
        report(done, 10)
    redraws = terminal.text.split("\r")[1:]
    assert len(redraws) == 3 and terminal.text.count("\n") == 1  # newline only at the end
    assert redraws[1].startswith("range test [" + "#" * 15 + "-" * 15 + "] 5/10")
    assert redraws[2].endswith("10/10 steps\n")


def test_unicode_plot_only_where_the_output_encoding_has_it():
    assert cli._can_draw_unicode(io.TextIOWrapper(io.BytesIO(), encoding="utf-8"))
    assert not cli._can_draw_unicode(io.TextIOWrapper(io.BytesIO(), encoding="cp1252"))
    assert not cli._can_draw_unicode(io.TextIOWrapper(io.BytesIO(), encoding="ascii"))


def test_missing_lrjax_optimizer_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.delattr(lrjax, "amsgrad")
    status, _, err = run(["find", "--optimizer", "amsgrad", *FAST], capsys)
    assert status == 2 and err.count("\n") == 1 and "'amsgrad'" in err


def test_python_dash_m_lrjax_help():
    completed = subprocess.run(
        [sys.executable, "-m", "lrjax", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0
    assert "usage: lrjax" in completed.stdout and "find" in completed.stdout


# --- full runs (each compiles one small range test) ----------------------------------


def load(path):
    payload = json.loads(path.read_text())
    return payload, lrjax.RangeTestResult.from_dict(payload)


def test_find_prints_report_and_writes_json(tmp_path, capsys):
    out_json = tmp_path / "lr.json"
    status, out, err = run(
        ["find", "--steps", "30", "--quiet", "--ascii", "--json", str(out_json)], capsys
    )
    assert status == 0, err
    assert "range test [" not in err  # --quiet: no progress
    assert all(ord(ch) < 128 for ch in out)  # --ascii
    for word in ("smoothed loss", "valley", "steepest", "minimum", "slide", "cyclic bounds"):
        assert word in out
    payload, result = load(out_json)
    # The file holds the suggestion of --suggest (valley), every rule and the curve.
    assert payload["method"] == "valley"
    assert set(payload["suggestions"]) == {"valley", "steepest", "minimum", "slide"}
    assert payload["suggestion"] == payload["suggestions"]["valley"]
    assert all(1e-7 <= v <= 10.0 for v in payload["suggestions"].values())
    base_lr, max_lr = payload["cyclical_bounds"]
    assert 0 < base_lr <= max_lr
    # Closed form of the exponential ramp from --min-lr to --max-lr over --steps.
    t = np.arange(30)
    np.testing.assert_allclose(result.lrs, 1e-7 * (10.0 / 1e-7) ** (t / 29), rtol=1e-5)
    # Step 0 is the untrained model on the first batch of the default problem, seed 0
    # (its loss_fn is checked against numpy in test_examples.py).
    loss_fn, params, data, _ = digits_problem(num_steps=30)
    expected = float(loss_fn(params, {"x": data["x"][0], "y": data["y"][0]}))
    np.testing.assert_allclose(result.losses[0], expected, rtol=1e-5)
    np.testing.assert_allclose(result.smoothed_losses[0], expected, rtol=1e-5)  # debiased EMA
    assert f"{payload['suggestion']:.3e}" in out


def test_find_shows_progress_on_stderr(capsys):
    status, out, err = run(["find", "--steps", "20", "--no-terminal-plot"], capsys)
    assert status == 0
    assert "0/20 steps" in err and "20/20 steps" in err
    assert "range test" not in out and "learning rate" in out


def test_every_optimizer_runs_from_the_same_start(tmp_path, capsys):
    first_losses = {}
    second_losses = {}
    for name in cli.OPTIMIZERS:
        path = tmp_path / f"{name}.json"
        status, _, err = run(
            [
                "find",
                "--optimizer",
                name,
                "--steps",
                "6",
                "--quiet",
                "--no-terminal-plot",
                "--json",
                str(path),
            ],
            capsys,
        )
        assert status == 0, (name, err)
        payload, result = load(path)
        assert payload["command"]["optimizer"] == name
        first_losses[name] = float(result.losses[0])
        second_losses[name] = float(result.losses[1])
    # Step 0 evaluates the loss before any update: the same for every optimizer ...
    assert np.ptp(list(first_losses.values())) < 1e-6
    # ... and step 1 comes after one update of each optimizer's own rule (sign methods
    # and Adam move by about lr per weight, SGD by lr * gradient: the losses differ).
    assert abs(second_losses["adam"] - second_losses["sgd"]) > 0
    assert len(set(np.round(list(second_losses.values()), 9))) >= 3


def test_seeds_and_linear_mode(tmp_path, capsys):
    path = tmp_path / "seeds.json"
    status, out, _ = run(
        [
            "find",
            "--seeds",
            "2",
            "--mode",
            "linear",
            "--min-lr",
            "1e-3",
            "--max-lr",
            "0.5",
            "--steps",
            "10",
            "--quiet",
            "--json",
            str(path),
        ],
        capsys,
    )
    assert status == 0
    assert "median of 2 seeds" in out and "decades" in out
    payload, result = load(path)
    assert result.losses.shape == (2, 10) and payload["batch_axes"] == ["seed"]
    np.testing.assert_allclose(result.lrs, 1e-3 + (0.5 - 1e-3) * np.arange(10) / 9, rtol=1e-5)
    assert result.losses[0, 0] != result.losses[1, 0]  # each seed has its own initial weights


def test_plot_file_is_a_png(tmp_path, capsys):
    path = tmp_path / "lr.png"
    status, _, err = run(["find", *FAST, "--plot", str(path)], capsys)
    assert status == 0, err
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
