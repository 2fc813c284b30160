"""lrjax's peer-named rules against fastai's and torch-lr-finder's own outputs.

tests/fixtures/peer_suggestions.json holds range-test curves recorded by lrjax (the
digits MLP that ``lrjax find`` trains, benchmark problems, and hand-made raw losses
replayed through ``lrjax.range_test``) and what the peers computed on them, recorded
by tests/fixtures/record_peer_suggestions.py with fastai and torch-lr-finder installed:

* ``fastai_lr_find``: fastai's real ``Learner.lr_find`` replaying the raw losses (its own
  smoothing, divergence stop, trimming and rule functions, on its own lr ramp);
* ``fastai_rules``: fastai's rule functions on lrjax's recorded curve, trimmed as
  ``lr_find`` trims it;
* ``torch_lr_finder``: torch-lr-finder's ``plot(suggest_lr=True)`` on that curve.

The fixture tests always run; the live tests rerun the peers when they import (skipped
otherwise, as in lrjax's own venv, which has no torch).
"""

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

import lrjax
from lrjax.finder.suggest import rules as sg
from lrjax.finder.suggest.curve import recorded_curve

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "peer_suggestions.json").read_text())
CURVES = FIXTURE["curves"]
FASTAI_METHODS = ("valley", "slide", "steep", "minimum")


def floats(values):
    return np.asarray([float(v) for v in values], np.float64)


def result_of(record):
    """The RangeTestResult lrjax returned for this curve (arrays as recorded)."""
    return lrjax.RangeTestResult(
        lrs=floats(record["lrs"]).astype(np.float32),
        losses=floats(record["losses"]).astype(np.float32),
        smoothed_losses=floats(record["smoothed_losses"]).astype(np.float32),
        diverged_at=record["diverged_at"],
        settings={"num_steps": record["num_steps"]},
    )


def nan_diverged(record):
    step = record["diverged_at"]
    return step is not None and not math.isfinite(float(record["smoothed_losses"][step]))


def index_of(lrs, value):
    """Index of the grid point nearest ``value`` (in log space), and its distance."""
    gaps = np.abs(np.log(lrs) - math.log(value))
    return int(np.argmin(gaps)), float(gaps.min())


def test_fixture_covers_the_required_curves():
    assert "digits-mlp-adam-find" in CURVES and FIXTURE["peers"]["fastai"].startswith("2.")
    kinds = {r["diverged_at"] is None for r in CURVES.values()}
    assert kinds == {True, False}  # curves that diverge and curves that do not
    # A NaN divergence (fastai records NaN to the end) and a finite blow-up.
    nan_curve = CURVES["nan-at-70"]
    assert len(nan_curve["fastai_lr_find"]["recorder_lrs"]) == nan_curve["num_steps"]
    finite = CURVES["digits-mlp-adam-find"]
    assert len(finite["fastai_lr_find"]["recorder_lrs"]) == finite["diverged_at"] + 1


@pytest.mark.parametrize("name", sorted(CURVES))
@pytest.mark.parametrize("method", FASTAI_METHODS)
def test_rules_equal_fastai_on_the_same_curve(name, method):
    record = CURVES[name]
    want = record["fastai_rules"][method]
    result = result_of(record)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # none of these curves is a fallback case
        got = result.suggest(method)
    if isinstance(want, str):
        # fastai raises (slide on a curve shorter than lr_diff + 1); lrjax shortens the window.
        assert want.startswith("error") and method == "slide"
        return
    if method == "minimum":
        want = max(want, float(result.lrs[0]))  # lrjax never goes below min_lr
    assert got == pytest.approx(want, rel=1e-6)
    # The standalone rule on fastai's trimmed arrays, untrimmed again, gives the same.
    x, y = floats(record["fastai_rules"]["trimmed_lrs"]), floats(record["fastai_rules"]["trimmed_losses"])
    rule = getattr(lrjax.finder.suggest.rules, f"suggest_{method}")
    assert rule(x, y, skip_start=0, skip_end=0) == pytest.approx(max(want, x[0]), rel=1e-6)


@pytest.mark.parametrize("name", sorted(CURVES))
@pytest.mark.parametrize("method", FASTAI_METHODS)
def test_rules_pick_the_step_fastai_lr_find_picks(name, method):
    """fastai's whole lr_find (its smoothing, stop, trim) picks the same step as lrjax.

    fastai's ramp is ``start * (end/start) ** (t / num_it)``, lrjax's ``t / (num_it - 1)``,
    so the rates differ; the step index must not.
    """
    record = CURVES[name]
    found = record["fastai_lr_find"]
    want = found["suggestions"][method]
    if isinstance(want, str):
        assert method == "slide"
        return
    fastai_lrs = floats(found["recorder_lrs"])
    # fastai's recorder holds the same smoothed losses lrjax recorded, as long as each ran.
    recorded = floats(found["recorder_losses"])
    ours = floats(record["smoothed_losses"])[: recorded.size]
    both = np.isfinite(recorded) & np.isfinite(ours)
    np.testing.assert_allclose(recorded[both], ours[both], rtol=1e-5)
    scale = 10.0 if method == "minimum" else 1.0
    want_index, gap = index_of(fastai_lrs, want * scale)
    assert gap < 1e-5
    result = result_of(record)
    got_index, gap = index_of(result.lrs.astype(np.float64), result.suggest(method) * scale)
    assert gap < 1e-5 and got_index == want_index


@pytest.mark.parametrize("name", sorted(CURVES))
def test_steepest_equals_torch_lr_finder(name):
    record = CURVES[name]
    if nan_diverged(record):
        pytest.skip("torch-lr-finder keeps a NaN in its history (np.argmin then returns the "
                    "NaN's step); lrjax cuts the curve at the NaN instead")
    want = record.get("torch_lr_finder", {}).get("steepest")
    assert want is not None, "recorded with torch-lr-finder installed"
    assert result_of(record).suggest("steepest") == pytest.approx(want, rel=1e-6)


def test_the_issue_curve_gives_fastais_number():
    # The curve `lrjax find` records (digits MLP, Adam): fastai's valley is 4.9e-3.
    record = CURVES["digits-mlp-adam-find"]
    assert result_of(record).suggest("valley") == pytest.approx(4.86e-3, rel=1e-2)


# --- live: the peers themselves, when they import -------------------------------------------
def _live_trimmed(record):
    lrs, smoothed = floats(record["lrs"]), floats(record["smoothed_losses"])
    x, y = recorded_curve(lrs.astype(np.float32), smoothed.astype(np.float32),
                             record["diverged_at"])
    return x, y


@pytest.mark.parametrize("name", sorted(CURVES))
def test_live_fastai_rules(name):
    torch = pytest.importorskip("torch")
    schedule = pytest.importorskip("fastai.callback.schedule")
    record = CURVES[name]
    x, y = _live_trimmed(record)
    n = record["num_steps"]
    # lr_find's own trimming lines, on the curve as fastai's recorder holds it.
    t_lrs, t_losses = torch.tensor(x[n // 10 : -5].tolist()), torch.tensor(y[n // 10 : -5].tolist())
    nan = torch.nonzero(torch.isnan(t_losses))
    if len(nan):
        t_lrs, t_losses = t_lrs[: int(nan.min())], t_losses[: int(nan.min())]
    result = result_of(record)
    for method in FASTAI_METHODS:
        try:
            want = float(getattr(schedule, method)(t_lrs, t_losses, n)[0])
        except IndexError:
            assert method == "slide"
            continue
        if method == "minimum":
            want = max(want, float(result.lrs[0]))
        assert result.suggest(method) == pytest.approx(want, rel=1e-6), method


@pytest.mark.parametrize("name", sorted(CURVES))
def test_live_torch_lr_finder(name):
    torch = pytest.importorskip("torch")
    finder_module = pytest.importorskip("torch_lr_finder")
    pytest.importorskip("matplotlib").use("Agg")
    record = CURVES[name]
    if nan_diverged(record):
        pytest.skip("NaN curves: see test_steepest_equals_torch_lr_finder")
    x, y = _live_trimmed(record)
    model = torch.nn.Linear(1, 1)
    finder = finder_module.LRFinder(model, torch.optim.SGD(model.parameters(), lr=1e-3),
                                    torch.nn.MSELoss())
    finder.history = {"lr": x.tolist(), "loss": y.tolist()}
    _, want = finder.plot(skip_start=10, skip_end=5, suggest_lr=True)
    assert result_of(record).suggest("steepest") == pytest.approx(want, rel=1e-6)
