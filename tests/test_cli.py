"""Tests of the ``lrjax`` command, run in-process through ``lrjax.cli.main``."""

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
    for option in ("--optimizer", "--min-lr", "--max-lr", "--steps", "--seeds", "--mode",
                   "--batch-size", "--suggest", "--smoothing", "--plot", "--json", "--quiet"):
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


def test_missing_lrjax_optimizer_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.delattr(lrjax, "amsgrad")
    status, _, err = run(["find", "--optimizer", "amsgrad", *FAST], capsys)
    assert status == 2 and err.count("\n") == 1 and "'amsgrad'" in err


def test_python_dash_m_lrjax_help():
    completed = subprocess.run([sys.executable, "-m", "lrjax", "--help"], capture_output=True,
                               text=True, timeout=120, check=False)
    assert completed.returncode == 0
    assert "usage: lrjax" in completed.stdout and "find" in completed.stdout
