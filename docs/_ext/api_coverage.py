"""Sphinx extension: fail the build when a public lrjax name has no API entry.

Every name in ``lrjax.__all__`` must be documented at its home path, a public subpackage
such as ``lrjax.schedules.wsd`` (the flat ``lrjax.wsd`` alias is noted on that page), and
the object found there must be the object ``lrjax`` exports. A missing name is a Sphinx
warning, so the strict build (``-W``) fails, as optax's coverage check fails its build.
``tests/test_docs_coverage.py`` runs the same rules on the API pages' source without
building the site.
"""

from __future__ import annotations

import importlib
import pathlib
import re
from collections.abc import Iterable

_CURRENT = re.compile(r"^\s*\.\. (?:py:)?currentmodule:: (\S+)\s*$")
_AUTOSUMMARY = re.compile(r"^(\s*)\.\. autosummary::\s*$")


def public_names() -> list[str]:
    """The names a user may import from ``lrjax`` (``__version__`` is data, not API)."""
    lrjax = importlib.import_module("lrjax")
    return sorted(name for name in lrjax.__all__ if not name.startswith("__"))


def home_problem(fullname: str) -> str | None:
    """Why ``fullname`` (``lrjax.pkg.Name``) is not a valid home for ``lrjax.Name``, or None."""
    module_name, _, name = fullname.rpartition(".")
    if module_name == "lrjax":
        return "documented only at the flat alias lrjax.X, not at its home subpackage"
    if any(part.startswith("_") for part in module_name.split(".")):
        return f"home {module_name} is private"
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        return f"home {module_name} does not import ({err})"
    lrjax = importlib.import_module("lrjax")
    if getattr(module, name, None) is not getattr(lrjax, name):
        return f"{fullname} is not the object lrjax.{name} exports"
    return None


def coverage_problems(documented: Iterable[str]) -> dict[str, str]:
    """``{name: problem}`` for every public name without a valid documented home."""
    by_name: dict[str, list[str]] = {}
    for fullname in documented:
        if fullname.startswith("lrjax."):
            by_name.setdefault(fullname.rpartition(".")[2], []).append(fullname)
    problems = {}
    for name in public_names():
        homes = by_name.get(name, [])
        if not homes:
            problems[name] = "not on any API page"
            continue
        reasons = [home_problem(home) for home in homes]
        if all(reasons):
            problems[name] = "; ".join(r for r in reasons if r)
    return problems


def autosummary_entries(text: str) -> list[str]:
    """Full names listed in the ``autosummary`` blocks of one API page's source."""
    module, names, block_indent = None, [], None
    for line in text.splitlines():
        current = _CURRENT.match(line)
        if current:
            module, block_indent = current.group(1), None
            continue
        start = _AUTOSUMMARY.match(line)
        if start:
            block_indent = len(start.group(1))
            continue
        if block_indent is None or not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent <= block_indent:  # the block ended (its directive's options are indented)
            block_indent = None
            continue
        entry = line.strip()
        if entry.startswith(":"):  # an option such as :toctree:
            continue
        entry = entry.lstrip("~")
        names.append(entry if entry.startswith("lrjax.") else f"{module}.{entry}")
    return names


def documented_in_sources(api_dir: pathlib.Path) -> list[str]:
    """Every name the API pages under ``api_dir`` list in an autosummary block."""
    found = []
    for page in sorted(api_dir.glob("*.md")) + sorted(api_dir.glob("*.rst")):
        found += autosummary_entries(page.read_text(encoding="utf-8"))
    return found


def _check(app, env) -> None:
    from sphinx.util import logging

    documented = env.domaindata["py"]["objects"].keys()
    for name, problem in sorted(coverage_problems(documented).items()):
        logging.getLogger(__name__).warning(
            "API coverage: lrjax.%s: %s (add it to an autosummary block in docs/api/)",
            name,
            problem,
            type="lrjax",
            subtype="api_coverage",
        )


def setup(app):
    app.connect("env-check-consistency", _check)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
