"""The ``lrjax`` console script's entry (lrjax_entry.py): Ctrl-C while lrjax loads is clean."""

import importlib.abc
import os
import signal
import subprocess
import sys
import time

import pytest

import lrjax_entry


class _InterruptingFinder(importlib.abc.MetaPathFinder):
    """Raises KeyboardInterrupt on importing lrjax.cli: a Ctrl-C while jax loads."""

    def find_spec(self, name, path=None, target=None):
        if name == "lrjax.cli":
            raise KeyboardInterrupt


def test_ctrl_c_during_the_import_is_one_line_and_status_130(monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, "lrjax.cli", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_InterruptingFinder(), *sys.meta_path])
    assert lrjax_entry.main(["find"]) == 130
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "lrjax: interrupted\n")


class _NumpyLikeFinder(importlib.abc.MetaPathFinder):
    """An ImportError raised from a KeyboardInterrupt, as numpy's C import turns a Ctrl-C."""

    def find_spec(self, name, path=None, target=None):
        if name == "lrjax.cli":
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt as ctrl_c:
                raise ImportError("numpy._core.multiarray failed to import") from ctrl_c


class _BrokenFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "lrjax.cli":
            raise ImportError("a real import problem")


def test_an_import_error_from_ctrl_c_is_an_interruption_and_others_propagate(
        monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, "lrjax.cli", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_NumpyLikeFinder(), *sys.meta_path])
    assert lrjax_entry.main(["find"]) == 130
    assert capsys.readouterr().err == "lrjax: interrupted\n"
    monkeypatch.setattr(sys, "meta_path", [_BrokenFinder(), *sys.meta_path[1:]])
    with pytest.raises(ImportError, match="a real import problem"):
        lrjax_entry.main(["find"])


def test_the_entry_runs_the_cli(capsys):
    assert lrjax_entry.main(["find", "--steps", "1"]) == 2  # the CLI's own usage error
    err = capsys.readouterr().err
    assert err.startswith("lrjax: error:") and "--steps" in err


@pytest.mark.skipif(os.name != "posix", reason="sends a real SIGINT")
def test_a_real_ctrl_c_right_after_start_leaves_no_traceback(tmp_path):
    # The entry is imported and "ready" printed; SIGINT follows 0.1 s later, when the child
    # is inside main() loading jax (about a second), or on a fast machine already running
    # the test, which lrjax.cli handles the same way.
    child = ("import sys, lrjax_entry; print('ready', flush=True); "
             "sys.exit(lrjax_entry.main(['find', '--quiet', '--no-terminal-plot']))")
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
    assert proc.stdout.readline() == "ready\n"
    time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().endswith("lrjax: interrupted")
