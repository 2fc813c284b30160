"""The README tells the truth: its Python examples run, its links resolve, and CI runs its
test command. The README is the landing page; the documentation lives in docs/ (its pages'
code runs when the site is built, .ci/build-docs)."""

import pathlib
import re

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)


def test_readme_has_python_examples():
    assert len(PYTHON_BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_readme_python_block_runs(index, capsys):
    exec(compile(PYTHON_BLOCKS[index], f"README.md[python block {index}]", "exec"), {})
    printed = capsys.readouterr().out
    if "schedule_values(lrjax.cyclic(0.01, 0.1, step_size_up=2), 5)" in PYTHON_BLOCKS[index]:
        # The comment in the README claims the triangle 0.01 -> 0.1 -> 0.01 over 4 steps.
        values = np.array(printed.strip().splitlines()[-1].strip("[]").split(), float)
        np.testing.assert_allclose(values, [0.01, 0.055, 0.1, 0.055, 0.01], rtol=1e-6)


def test_ci_runs_the_readme_test_command():
    bash_blocks = re.findall(r"```bash\n(.*?)```", README, flags=re.DOTALL)
    test_commands = [
        line.strip() for block in bash_blocks for line in block.splitlines() if "pytest" in line
    ]
    assert len(test_commands) == 1, test_commands
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_commands[0] in ci_lines


def test_readme_is_a_landing_page():
    """At most ~250 lines: the rest lives in the documentation site."""
    assert len(README.splitlines()) <= 250


def test_readme_links_resolve():
    """Every link into the checkout (docs pages, LICENSE, examples) names a file that exists."""
    targets = re.findall(r"\]\(([^)\s]+)\)", README)
    local = [t.split("#")[0] for t in targets if not re.match(r"[a-z]+://", t) and t[0] != "#"]
    assert local, "the README links into the docs"
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, missing
