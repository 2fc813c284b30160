"""examples/snapshot_ensemble.py runs as a new user runs it (a script), in its small mode."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_snapshot_example_small_mode_prints_the_three_way_table():
    pytest.importorskip("flax")
    pytest.importorskip("sklearn")
    env = dict(os.environ, LRJAX_EXAMPLE_SMALL="1")
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "snapshot_ensemble.py"),
                          "--steps", "120", "--cycles", "3"],
                         capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    rows = re.findall(r"^\| (.+?) \| ([\d.]+)% ± [\d.]+ \| ([\d.]+) ± [\d.]+ \|$", out.stdout,
                      re.MULTILINE)
    names = [name for name, _, _ in rows]
    assert names == ["single (cosine)", "snapshot ensemble (M=3)", "snapshot (members, mean)",
                     "swa"], out.stdout
    for _, accuracy, nll in rows:
        # 120 steps of SGD on digits: every method is far above chance (10%, NLL ln 10 = 2.3)
        assert 80.0 < float(accuracy) <= 100.0 and 0.0 < float(nll) < 1.0, out.stdout
    assert "1 seed(s)" in out.stdout  # the small mode took effect

