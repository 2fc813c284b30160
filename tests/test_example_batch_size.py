"""examples/batch_size.py in its small (CI) mode: the table it prints is consistent.

The update counts are checked against lrjax.batch_size_plan run here on the same schedule,
and the example itself asserts that optax.MultiSteps made exactly the plan's updates.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import lrjax

ROOT = Path(__file__).resolve().parent.parent


def test_batch_size_example_small_mode():
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="", PYTHONPATH=str(ROOT))
    completed = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "batch_size.py"), "--small"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    rows = {
        cells[0]: cells[1:]
        for line in completed.stdout.splitlines()
        if line.startswith("| ") and not line.startswith("| run")
        for cells in [[c.strip() for c in line.strip("|").split("|")]]
    }
    assert list(rows) == ["step decay", "batch growth", "growth, capped"], completed.stdout
    num_steps = (1438 // 16) * 4  # 4 epochs of 89 micro-batches of 16
    decay = lrjax.multistep_decay(0.05, [num_steps // 2, 3 * num_steps // 4], gamma=0.2)
    expected_updates = [num_steps] + [
        lrjax.batch_size_plan(decay, 16, top, num_steps).num_updates for top in (400, 80)
    ]
    assert [int(r[2]) for r in rows.values()] == expected_updates
    assert expected_updates[1] < expected_updates[2] < 0.7 * num_steps
    assert rows["step decay"][0] == "16 / 16 / 16" and rows["batch growth"][0] == "16 / 80 / 400"
    assert (
        rows["growth, capped"][0] == "16 / 80 / 80"
        and rows["growth, capped"][1] == "0.05 / 0.05 / 0.01"
    )
    for cells in rows.values():
        b_first_epoch = float(cells[4].split(" / ")[0])
        assert 16 < b_first_epoch < 1e5  # a batch of 16 is well below digits' noise scale
        accuracy = float(re.match(r"([\d.]+) ± ", cells[6])[1])
        assert accuracy > 0.9, completed.stdout
