"""Tests of the ``lrjax`` command, run in-process through ``lrjax.cli.main``."""

import dataclasses
import inspect
import io
import json
import os
import signal
import subprocess
import sys
import tempfile

import jax
import numpy as np
import pytest

import lrjax
from lrjax import cli
from lrjax.cli import find_command
from lrjax.cli.report import can_draw_unicode
from lrjax.data.digits import digits_problem
from lrjax.finder.suggest.rules import SUGGESTERS

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


def refuse_to_run(*args, **kwargs):
    raise AssertionError("the range test ran although the input is bad")


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
        (["--plot", "out.xyz"], "--plot"),
        (["--plot", "same.json", "--json", "same.json"], "--plot and --json"),
        (["--plot", "same.png", "--json", "./same.png"], "--plot and --json"),
        (["--plot", "same", "--json", "same.png"], "--plot and --json"),  # same once .png added
        (["--json", os.devnull], "--json"),  # never replace a device by a rename
        (["--seeds", "1000000"], "--seeds"),
        (["--seeds", str(find_command.MAX_SEEDS + 1)], "--seeds"),
        (["--seeds", str(find_command.MAX_SEEDS), "--hidden", "4096"], "--seeds or --hidden"),
        (["--steps", "100000000"], "--steps or --batch-size"),
        (["--hidden", "100000000"], "--hidden"),
        (["--seed", str(2**70)], "--seed"),
        (["--seed", "-1"], "--seed"),
        (["--seed", "1.5"], "--seed"),
        (["--max-lr", "1e38"], "--max-lr"),  # 1e45 times --min-lr: inf in float32
        (["--max-lr", "1e39"], "--max-lr"),  # not a float32
        (["--min-lr", "1e-40"], "--min-lr"),  # a float32 subnormal
        (["--min-lr", "1", "--max-lr", "1.0000001"], "--max-lr"),  # equal in float32
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, names, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(find_command, "_run_range_test", refuse_to_run)  # refused BEFORE the run
    status, out, err = run(["find", *argv], capsys)
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("lrjax: error: ")
    assert names in err
    assert os.listdir(tmp_path) == []  # no output, no leftover probe file


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


# --- the command's flow on a result made here (no compile): outputs, Ctrl-C, report ----


def synthetic_result(steps=40):
    """A range-test result as range_test returns one: a plateau, a fall whose raw loss goes
    far below the lagging EMA, a blow-up, NaN after the diverging step."""
    lrs = np.logspace(-7, 1, steps)
    x = np.log10(lrs)
    raw = 2.3 - 2.1 / (1 + np.exp(-(x + 3) * 3)) + np.where(x > -1, (x + 1) ** 2 * 30, 0.0)
    smoothed, average = np.empty(steps), 0.0
    for i, value in enumerate(raw):
        average = 0.9 * average + 0.1 * value
        smoothed[i] = average / (1 - 0.9 ** (i + 1))
    step = int(np.flatnonzero(smoothed > 4 * np.minimum.accumulate(smoothed))[0])
    raw[step + 1 :] = smoothed[step + 1 :] = np.nan
    settings = {"mode": "exp", "num_steps": steps, "min_lr": 1e-7, "max_lr": 10.0}
    return lrjax.RangeTestResult(lrs=lrs.astype(np.float32), losses=raw.astype(np.float32),
                                 smoothed_losses=smoothed.astype(np.float32), diverged_at=step,
                                 settings=settings)


@pytest.fixture
def fake_run(monkeypatch):
    """Make ``lrjax find`` skip training and report a synthetic result instead."""
    result = synthetic_result()
    monkeypatch.setattr(find_command, "_run_range_test", lambda *args: result)
    return result


def test_plot_without_extension_writes_png_and_says_so(fake_run, tmp_path, capsys):
    status, out, err = run(["find", *FAST, "--plot", str(tmp_path / "noext")], capsys)
    assert status == 0, err
    assert f"wrote {tmp_path / 'noext.png'}\n" in out
    assert sorted(os.listdir(tmp_path)) == ["noext.png"]
    assert (tmp_path / "noext.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_format_follows_the_extension_and_replaces_an_old_file(fake_run, tmp_path, capsys):
    target = tmp_path / "lr.svg"
    target.write_text("old")
    target.chmod(0o640)
    status, out, err = run(["find", *FAST, "--plot", str(target)], capsys)
    assert status == 0, err
    assert "<svg" in target.read_text()[:500] and f"wrote {target}\n" in out
    assert target.stat().st_mode & 0o777 == 0o640  # the replaced file keeps its permissions
    assert os.listdir(tmp_path) == ["lr.svg"]


def test_ctrl_c_during_the_run_is_one_line_exit_130_and_no_file(monkeypatch, tmp_path, capsys):
    def interrupted(*args):
        raise KeyboardInterrupt  # what a Ctrl-C during tracing or compiling raises

    monkeypatch.setattr(find_command, "_run_range_test", interrupted)
    argv = ["find", *FAST, "--plot", str(tmp_path / "a.png"), "--json", str(tmp_path / "a.json")]
    status, out, err = run(argv, capsys)
    assert (status, out, err) == (130, "", "lrjax: interrupted\n")
    assert os.listdir(tmp_path) == []


def test_ctrl_c_swallowed_inside_the_run_is_still_honoured(monkeypatch, tmp_path, capsys):
    # Python code called back from C++ (JAX tracing, XLA) can lose a KeyboardInterrupt;
    # a real SIGINT is sent here and swallowed the same way.
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("the test runner handles SIGINT itself")
    result = synthetic_result()

    def swallowing(*args):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(10**6):  # the handler runs between bytecodes
                pass
        except KeyboardInterrupt:
            pass
        return result

    monkeypatch.setattr(find_command, "_run_range_test", swallowing)
    status, out, err = run(["find", *FAST, "--json", str(tmp_path / "a.json")], capsys)
    assert status == 130 and err == "lrjax: interrupted\n"
    assert os.listdir(tmp_path) == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_ctrl_c_while_writing_leaves_the_old_file_and_no_partial_one(
    fake_run, monkeypatch, tmp_path, capsys
):
    target = tmp_path / "lr.png"
    target.write_bytes(b"old plot")

    def interrupted_save(result, args, file):
        file.write(b"\x89PNG half a plot")
        raise KeyboardInterrupt

    monkeypatch.setattr(find_command, "_save_plot", interrupted_save)
    status, _, err = run(["find", *FAST, "--plot", str(target)], capsys)
    assert status == 130 and err == "lrjax: interrupted\n"
    assert target.read_bytes() == b"old plot"
    assert os.listdir(tmp_path) == ["lr.png"]


def test_an_error_from_the_range_test_is_one_line(monkeypatch, capsys):
    def bad(*args):
        raise ValueError("max_lr is too large:\n  float32 cannot hold it")

    monkeypatch.setattr(find_command, "_run_range_test", bad)
    status, _, err = run(["find", *FAST], capsys)
    assert status == 2 and err == "lrjax: error: max_lr is too large: float32 cannot hold it\n"


def test_out_of_memory_on_the_device_is_one_line(monkeypatch, capsys):
    def exhausted(*args):  # what XLA raises when an allocation fails
        raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 81920000000 bytes.")

    monkeypatch.setattr(find_command, "_run_range_test", exhausted)
    status, _, err = run(["find", *FAST, "--seeds", "1000"], capsys)
    assert status == 2 and err.count("\n") == 1
    assert "out of memory" in err and "--seeds 1000" in err


def test_unwritable_folder_is_refused_before_the_run(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(find_command, "_run_range_test", refuse_to_run)
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        try:  # root may write anyway: then try a folder nobody may create files in
            tempfile.mkstemp(dir=folder)
            folder = "/sys" if os.path.isdir("/sys") else None
            tempfile.mkstemp(dir=folder)
            pytest.skip("no unwritable folder on this machine (running as root)")
        except OSError:
            pass
        status, out, err = run(["find", *FAST, "--plot", os.path.join(folder, "lr.png")], capsys)
        assert status == 2 and out == "" and err.count("\n") == 1
        assert "--plot" in err and "cannot write" in err
    finally:
        (tmp_path / "locked").chmod(0o700)


def test_report_names_the_axes_and_shows_the_raw_minimum(fake_run, capsys):
    status, out, err = run(["find", "--steps", "40", "--quiet"], capsys)
    assert status == 0, err
    lines = out.split("\n")
    header = lines.index("training loss")  # what the y values are, above the plot
    rows = lines[header + 1 : header + 16]
    bottom = float(rows[-1].split("┤")[0])  # the y axis's lowest label
    assert bottom <= np.nanmin(fake_run.losses_before_divergence())
    assert "learning rate (log scale)" in out and "• smoothed loss   · raw loss" in out
    assert "minimum/10" in out  # the minimum rule says what it suggests


@pytest.mark.parametrize("scaling, mode, says", [(1.0, "exp", True), (0.0, "exp", False),
                                                 (None, "exp", False), (1.0, "linear", False)])
def test_report_says_when_fall_carries_the_sgd_factor(monkeypatch, capsys, scaling, mode, says):
    result = synthetic_result()
    lrs = (result.lrs if mode == "exp" else
           np.linspace(result.lrs[0], result.lrs[-1], result.lrs.size))  # no factor there
    result = dataclasses.replace(result, lrs=lrs, settings={
        **result.settings, "mode": mode, "update_scaling": scaling})
    monkeypatch.setattr(find_command, "_run_range_test", lambda *args: result)
    status, out, err = run(["find", *FAST, "--optimizer", "sgd"], capsys)
    assert status == 0, err
    assert ("(fall includes x4: sgd steps in proportion to the gradient)" in out) == says
    if says:  # the printed fall is the factor times the reading
        assert f"{4 * result.suggest(sgd_factor=1):.3e}" in out


@pytest.mark.parametrize("response, says", [(0.25, True), (1.0, False), (None, False)])
def test_report_says_when_fall_carries_the_noise_factor(monkeypatch, capsys, response, says):
    result = synthetic_result()
    result = dataclasses.replace(result, settings={
        **result.settings, "update_scaling": 0.0, "noise_response": response})
    monkeypatch.setattr(find_command, "_run_range_test", lambda *args: result)
    status, out, err = run(["find", *FAST, "--optimizer", "adam"], capsys)
    assert status == 0, err
    assert ("(fall includes x2: adam's step keeps less of the signal in noise, "
            "noise_response 0.25)" in out) == says
    if says:  # the printed fall is the factor times the reading
        assert f"{2 * result.suggest(noise_exponent=0):.3e}" in out


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
    report = find_command._progress_reporter(terminal)
    for done in (0, 5, 10):
        report(done, 10)
    redraws = terminal.text.split("\r")[1:]
    assert len(redraws) == 3 and terminal.text.count("\n") == 1  # newline only at the end
    assert redraws[1].startswith("range test [" + "#" * 15 + "-" * 15 + "] 5/10")
    assert redraws[2].endswith("10/10 steps\n")


def test_unicode_plot_only_where_the_output_encoding_has_it():
    assert can_draw_unicode(io.TextIOWrapper(io.BytesIO(), encoding="utf-8"))
    assert not can_draw_unicode(io.TextIOWrapper(io.BytesIO(), encoding="cp1252"))
    assert not can_draw_unicode(io.TextIOWrapper(io.BytesIO(), encoding="ascii"))


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


def test_find_prints_report_shows_progress_writes_json_and_plot(tmp_path, capsys):
    out_json, out_png = tmp_path / "lr.json", tmp_path / "lr.png"
    argv = ["find", "--steps", "30", "--ascii", "--json", str(out_json), "--plot", str(out_png)]
    status, out, err = run(argv, capsys)
    assert status == 0, err
    assert "0/30 steps" in err and "30/30 steps" in err  # progress goes to stderr
    assert "range test [" not in out
    assert all(ord(ch) < 128 for ch in out)  # --ascii
    for word in ("smoothed loss", "valley", "steepest", "minimum/10", "slide", "cyclic bounds"):
        assert word in out
    assert f"wrote {out_json}\n" in out and f"wrote {out_png}\n" in out
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path)) == ["lr.json", "lr.png"]  # no temporary file left
    payload, result = load(out_json)
    # The file holds the suggestion of --suggest (the library's default rule), every rule
    # and the curve.
    default = inspect.signature(lrjax.RangeTestResult.suggest).parameters["method"].default
    assert payload["method"] == default == find_command.DEFAULT_RULE
    assert set(payload["suggestions"]) == set(SUGGESTERS)
    assert set(SUGGESTERS) >= {"valley", "steepest", "minimum", "slide"}
    assert payload["suggestion"] == payload["suggestions"][default] == result.suggest()
    assert all(1e-7 <= v <= 10.0 for v in payload["suggestions"].values())
    base_lr, max_lr = payload["cyclical_bounds"]
    assert 0 < base_lr <= max_lr
    # The search range is result.search_space() around the chosen suggestion: /8 .. x30.
    low, high = payload["search_range"]
    np.testing.assert_allclose([low, high], [payload["suggestion"] / 8, payload["suggestion"] * 30],
                               rtol=1e-12)
    assert f"{low:.3e} .. {high:.3e}" in out
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


def test_every_optimizer_choice_is_the_named_rule():
    # Each --optimizer's factory, one step from the digits model, against the closed form
    # of that rule's first step (no compile: the full command is run for adam and sgd).
    loss_fn, params, data, _ = digits_problem(num_steps=2)
    batch = {"x": data["x"][0], "y": data["y"][0]}
    args = cli.build_parser().parse_args(["find", "--weight-decay", "0.01", "--momentum", "0.9"])
    lr, eps = 1e-2, 1e-8
    first_steps = {  # update of the first step, from the papers / TensorFlow's definitions
        "adam": lambda g, p: -lr * g / (np.abs(g) + eps),  # m/sqrt(v) after bias correction
        "amsgrad": lambda g, p: -lr * g / (np.abs(g) + eps),
        "adamw": lambda g, p: -lr * (g / (np.abs(g) + eps) + 0.01 * p),
        "sgd": lambda g, p: -lr * g,  # the momentum buffer starts at the gradient
        "powersign": lambda g, p: -lr * np.e ** (np.sign(g) * np.sign(g)) * g,
        "addsign": lambda g, p: -lr * (1.0 + np.sign(g) * np.sign(g)) * g,
    }
    assert set(first_steps) == set(find_command.OPTIMIZERS)

    @jax.jit  # one compile for all of them (op-by-op dispatch is slower here)
    def first_updates(params, batch):
        grads = jax.grad(loss_fn)(params, batch)
        updates = {}
        for name, (make, _) in find_command.OPTIMIZERS.items():
            transform = make(args)(learning_rate=lr)
            updates[name] = transform.update(grads, transform.init(params), params)[0]
        return grads, updates

    grads, updates = first_updates(params, batch)
    for name, rule in first_steps.items():
        expected = jax.tree.map(lambda g, p: rule(np.asarray(g), np.asarray(p)), grads, params)
        for got, want in zip(jax.tree.leaves(updates[name]), jax.tree.leaves(expected)):
            np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-9, err_msg=name)


def test_seeds_and_linear_mode(tmp_path, capsys):
    path = tmp_path / "seeds.json"
    status, out, _ = run(
        [
            "find",
            "--optimizer",
            "sgd",
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
            "--plot",
            str(tmp_path / "seeds.pdf"),
        ],
        capsys,
    )
    assert status == 0
    assert "median of 2 seeds" in out and "decades" in out
    assert (tmp_path / "seeds.pdf").read_bytes()[:5] == b"%PDF-"
    payload, result = load(path)
    assert payload["command"]["optimizer"] == "sgd"
    assert result.losses.shape == (2, 10) and payload["batch_axes"] == ["seed"]
    np.testing.assert_allclose(result.lrs, 1e-3 + (0.5 - 1e-3) * np.arange(10) / 9, rtol=1e-5)
    assert result.losses[0, 0] != result.losses[1, 0]  # each seed has its own initial weights


def test_ctrl_c_on_a_terminal_ends_the_progress_line_first(monkeypatch):
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)

    def interrupted(args, optimizer, stderr):
        find_command._progress_reporter(stderr)(0, 12)  # the bar, redrawn in place: no newline yet
        raise KeyboardInterrupt

    monkeypatch.setattr(find_command, "_run_range_test", interrupted)
    assert cli.main(["find", "--steps", "12", "--no-terminal-plot"]) == 130
    bar, message = terminal.text.rsplit("\n", 2)[:2]
    assert bar.startswith("\rrange test [") and message == "lrjax: interrupted"
