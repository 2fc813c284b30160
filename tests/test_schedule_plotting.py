"""plot_schedule with the Agg backend, the ImportError without matplotlib, and the gallery."""

import runpy
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import lrjax  # noqa: E402

GALLERY = Path(__file__).resolve().parents[1] / "examples" / "schedule_gallery.py"


def test_plot_schedule_draws_the_values():
    schedule = lrjax.sgdr(0.5, 1, 2.0)
    ax = lrjax.plot_schedule(schedule, 8)
    (line,) = ax.get_lines()
    np.testing.assert_array_equal(line.get_xdata(), np.arange(8))
    np.testing.assert_allclose(line.get_ydata(), [0.5, 0.5, 0.25, 0.5, 0.4268, 0.25, 0.0732, 0.5], atol=5e-5)
    plt.close(ax.figure)


def test_plot_schedule_uses_the_given_axes():
    figure, ax = plt.subplots()
    assert lrjax.plot_schedule(lrjax.constant(0.1), 5, ax=ax) is ax
    assert len(ax.get_lines()) == 1
    plt.close(figure)


def test_missing_matplotlib_names_the_plot_extra(monkeypatch):
    # A None entry in sys.modules makes `import matplotlib...` raise ImportError.
    for name in [name for name in sys.modules if name.startswith("matplotlib")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install lrjax\[plot\]"):
        lrjax.plot_schedule(lrjax.constant(0.1), 5)


def test_gallery_script_writes_a_png(tmp_path, monkeypatch, capsys):
    output = tmp_path / "gallery" / "schedules.png"
    monkeypatch.setattr(sys, "argv", [str(GALLERY), str(output)])
    runpy.run_path(str(GALLERY), run_name="__main__")
    assert capsys.readouterr().out.strip() == str(output)
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plt.get_fignums() == []  # the script closes its figure
