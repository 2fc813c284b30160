"""examples/colab_tpu.ipynb: paired with its jupytext script, stored without outputs, and run.

The notebook is executed end to end on the CPU in its small mode (LRJAX_NOTEBOOK_SMALL=1),
in a fresh kernel that inherits this process's 8 simulated devices, so its sharded paths
run too. Any cell error fails the test.
"""

import os
import pathlib

import pytest

nbformat = pytest.importorskip("nbformat", reason="needs the notebook extra")
jupytext = pytest.importorskip("jupytext", reason="needs the notebook extra")
nbclient = pytest.importorskip("nbclient", reason="needs the notebook extra")

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"
NOTEBOOK = EXAMPLES / "colab_tpu.ipynb"
SCRIPT = EXAMPLES / "colab_tpu.py"


def _cells(notebook):
    return [(cell.cell_type, cell.source.strip()) for cell in notebook.cells]


def test_notebook_is_paired_with_its_script():
    stored = nbformat.read(NOTEBOOK, as_version=4)
    from_script = jupytext.read(SCRIPT)
    assert _cells(stored) == _cells(from_script), (
        "examples/colab_tpu.ipynb and colab_tpu.py differ: run "
        "`jupytext --sync examples/colab_tpu.py` (or --to ipynb) after editing the script"
    )


def test_notebook_is_stored_without_outputs():
    stored = nbformat.read(NOTEBOOK, as_version=4)
    for cell in stored.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def test_notebook_opens_with_the_version_cell_then_install():
    code = [c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells if c.cell_type == "code"]
    assert "jax.__version__" in code[0] and "jax.devices()" in code[0]
    assert "pip" in code[1] and "setup_tpu" not in "".join(code)


def test_notebook_runs_in_small_mode(monkeypatch):
    monkeypatch.setenv("LRJAX_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(EXAMPLES)}}
    )
    client.execute()  # raises CellExecutionError on any failing cell
    printed = "".join(
        out.get("text", "") for cell in notebook.cells for out in cell.get("outputs", [])
    )
    assert "suggested learning rate" in printed
    assert "ensemble of 3" in printed
