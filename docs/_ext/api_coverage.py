"""Sphinx extension: fail the build when a public lrjax name has no API entry.

Every name in ``lrjax.__all__`` must be documented at its home path: the public subpackage
that exports it, such as ``lrjax.schedules.cosine_annealing`` (the flat
``lrjax.cosine_annealing`` alias is noted on that page), and that subpackage's name must be
the object ``lrjax`` exports. Only a name that no public subpackage exports is documented as
``lrjax.X``. A missing name is a Sphinx
warning, so the strict build (``-W``) fails, as optax's coverage check fails its build.
``tests/test_docs_coverage.py`` runs the same rules on the API pages' source without
building the site.
"""

from __future__ import annotations

import importlib
import pathlib
import re
import types
from collections.abc import Iterable

_CURRENT = re.compile(r"^\s*\.\. (?:py:)?currentmodule:: (\S+)\s*$")
_AUTOSUMMARY = re.compile(r"^(\s*)\.\. autosummary::\s*$")


def public_names() -> list[str]:
    """The names a user may import from ``lrjax`` (``__version__`` is data, not API)."""
    lrjax = importlib.import_module("lrjax")
    return sorted(name for name in lrjax.__all__ if not name.startswith("__"))


def public_packages() -> list[str]:
    """lrjax's public (sub)packages and modules reachable from it, ``lrjax`` first."""
    lrjax = importlib.import_module("lrjax")
    seen, todo = {"lrjax": lrjax}, [lrjax]
    while todo:
        module = todo.pop()
        for value in vars(module).values():
            name = getattr(value, "__name__", "")
            if (isinstance(value, types.ModuleType) and name.startswith("lrjax.")
                    and name not in seen
                    and not any(part.startswith("_") for part in name.split("."))):
                seen[name] = value
                todo.append(value)
    return list(seen)


def homes(name: str) -> list[str]:
    """Where ``lrjax.<name>`` lives: the public subpackages that export the same object
    (in their ``__all__``), or ``["lrjax"]`` when none does (a name whose code is private)."""
    lrjax = importlib.import_module("lrjax")
    obj = getattr(lrjax, name)
    found = []
    for module_name in public_packages()[1:]:
        module = importlib.import_module(module_name)
        if name in getattr(module, "__all__", ()) and getattr(module, name, None) is obj:
            found.append(module_name)
    return found or ["lrjax"]


def home_problem(fullname: str) -> str | None:
    """Why ``fullname`` (``lrjax.pkg.Name``) is not a valid home for ``lrjax.Name``, or None."""
    module_name, _, name = fullname.rpartition(".")
    expected = homes(name)
    if module_name in expected:
        return None
    if module_name == "lrjax":
        return f"documented only at the flat alias lrjax.{name}; its home is {expected[0]}"
    return f"{fullname} is not its home ({' or '.join(expected)})"


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


def _resolve_alias(app, env, node, contnode):
    """Links ``lrjax.X`` (the flat alias, as docstrings and pages write it) to X's home page."""
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py" or not target.startswith("lrjax."):
        return None
    name = target.rpartition(".")[2]
    lrjax = importlib.import_module("lrjax")
    if name not in getattr(lrjax, "__all__", ()):
        return None
    domain = env.get_domain("py")
    for home in homes(name):
        if home == target.rpartition(".")[0]:
            continue
        found = domain.resolve_xref(env, node.get("refdoc", ""), app.builder, node["reftype"],
                                    f"{home}.{name}", node, contnode)
        if found is not None:
            return found
    return None


def setup(app):
    app.connect("env-check-consistency", _check)
    app.connect("missing-reference", _resolve_alias)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
