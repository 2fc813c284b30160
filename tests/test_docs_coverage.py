"""The documentation site covers the public API and lists every page it builds.

The same rules as the strict Sphinx build's check (docs/_ext/api_coverage.py), read from
the API pages' source so they run in the test suite without building the site: every name
of ``lrjax.__all__`` is listed in an ``autosummary`` block of a page under docs/api/, at its
home subpackage (``lrjax.schedules.wsd``, not only the flat ``lrjax.wsd`` alias), where the
object is the one ``lrjax`` exports.
"""

import pathlib
import re
import sys

import pytest

import lrjax

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"
sys.path.insert(0, str(DOCS / "_ext"))
import api_coverage  # noqa: E402  (docs/_ext, put on the path above)


def test_every_public_name_has_an_api_entry_at_its_home():
    documented = api_coverage.documented_in_sources(DOCS / "api")
    problems = api_coverage.coverage_problems(documented)
    assert not problems, "\n".join(f"lrjax.{name}: {why}" for name, why in problems.items())


def test_api_entries_name_real_objects():
    """An entry that no longer imports would be an empty page (and a build warning)."""
    for fullname in api_coverage.documented_in_sources(DOCS / "api"):
        module_name, _, name = fullname.rpartition(".")
        module = __import__(module_name, fromlist=[name])
        assert hasattr(module, name), fullname


def test_the_check_catches_a_missing_or_misplaced_name():
    documented = set(api_coverage.documented_in_sources(DOCS / "api"))
    some_name = api_coverage.public_names()[0]
    homes = {d for d in documented if d.rpartition(".")[2] == some_name}
    assert api_coverage.coverage_problems(documented - homes).get(some_name)
    flat_only = (documented - homes) | {f"lrjax.{some_name}"}
    assert "flat alias" in api_coverage.coverage_problems(flat_only)[some_name]


@pytest.mark.parametrize(
    "source, expected",
    [
        (".. currentmodule:: lrjax.schedules\n\n.. autosummary::\n   :toctree: generated\n\n"
         "   wsd\n   ~cosine_annealing\n\nAfter the block.\n   indented prose\n",
         ["lrjax.schedules.wsd", "lrjax.schedules.cosine_annealing"]),
        ("```{eval-rst}\n.. currentmodule:: lrjax.optim\n\n.. autosummary::\n   :nosignatures:\n"
         "\n   adamw\n```\n", ["lrjax.optim.adamw"]),
    ],
)
def test_autosummary_parsing(source, expected):
    assert api_coverage.autosummary_entries(source) == expected


def test_every_page_is_in_a_toctree_of_the_index():
    """Tutorials are listed by name (their order is the reading order); guides, how-tos and
    benchmarks join through glob toctrees. Sphinx warns about orphans too; this says which."""
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    entries = set(re.findall(r"^([a-z_]+/[a-z_*]+|[a-z_]+)$", index, flags=re.M))
    for page in DOCS.glob("*/*.md"):
        folder = page.parent.name
        if folder.startswith("_") or folder == "api":
            continue
        name = f"{folder}/{page.stem}"
        assert name in entries or f"{folder}/*" in entries, f"{name} is in no toctree"
    api = {f"api/{p.stem}" for p in (DOCS / "api").glob("*.md")}
    assert api <= entries, api - entries
