"""``lrjax search``: the table, the files, and one-line errors for bad input."""

import json
import sys

import pytest

import lrjax
from lrjax.cli import main

pytest.importorskip("sklearn")
pytest.importorskip("flax")

FAST = ["search", "--trials", "4", "--steps", "20", "--hidden", "8", "--images", "32"]


def test_search_prints_the_best_trials_and_writes_files(tmp_path, capsys):
    out_json, out_png = tmp_path / "s.json", tmp_path / "s.png"
    assert main([*FAST, "--json", str(out_json), "--plot", str(out_png), "--top", "3"]) == 0
    out, err = capsys.readouterr()
    assert "4 trials (random), 20 AdamW steps" in out
    table = out.split("\n\n")[1].splitlines()
    assert table[0].split() == ["rank", "trial", "lr", "weight_decay", "b1", "val_loss",
                                "val_accuracy", "train_loss"]
    assert len(table) == 4  # header + --top 3
    result = lrjax.SearchResult.from_json(out_json)
    best = result.best_trial
    assert table[1].split()[1] == str(best["number"])
    assert float(table[1].split()[5]) == pytest.approx(best["value"], abs=1e-4)
    assert [float(r.split()[5]) for r in table[1:]] == sorted(float(r.split()[5])
                                                              for r in table[1:])
    assert f"best: lr={best['params']['lr']:.4g}" in out
    assert out_png.stat().st_size > 10_000
    assert "4/4 trials" in err  # progress


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--min-lr", "0.1", "--max-lr", "0.01"], "low must be < high"),
        (["--min-wd", "0"], "low must be > 0"),
        (["--max-b1", "1.0"], "--max-b1 < 1"),
        (["--method", "bayes"], "invalid choice"),
        (["--trials", "0"], "must be an integer >= 1"),
        (["--images", "5000"], "--images must be at most 1438"),
        (["--plot", "same.json", "--json", "same.json"], "name the same file"),
        (["--json", "/no/such/folder/s.json"], "--json"),
    ],
)
def test_bad_input_is_one_line(argv, message, capsys):
    assert main([*FAST, *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lrjax: error:") and message in err and err.count("\n") == 1


def test_tpe_without_optuna_names_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "optuna", None)
    assert main([*FAST, "--method", "tpe"]) == 2
    assert "pip install 'lrjax[search]'" in capsys.readouterr().err
