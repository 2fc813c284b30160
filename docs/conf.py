"""Sphinx configuration of the lrjax documentation site.

Build it strictly, as CI does (warnings are errors; every tutorial is executed):

    LRJAX_NOTEBOOK_SMALL=1 python -m sphinx -W --keep-going -b html docs docs/_build/html

The tutorials are MyST notebooks (text files) executed by myst-nb at build time: a cell
that raises fails the build. ``LRJAX_NOTEBOOK_SMALL=1`` is the small-mode switch that the
Colab notebook uses too: fewer steps, same code.
"""

import dataclasses
import os
import pathlib
import sys

DOCS = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))

import lrjax  # noqa: E402  (the installed package: pip install -e ".[docs]")

project = "lrjax"
author = "The lrjax authors"
copyright = "2026, The lrjax authors"  # noqa: A001  (Sphinx's name)
release = lrjax.__version__
version = release

extensions = [
    "myst_nb",  # MyST markdown pages and executed MyST notebooks
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",  # Google-style Args/Returns sections
    "sphinx.ext.viewcode",
    "sphinx.ext.mathjax",
    "sphinx_copybutton",
    "api_coverage",  # docs/_ext/api_coverage.py: every public name must be documented
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**/.ipynb_checkpoints", "README.md"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"

# -- API reference ------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = True


def _documented_fields(cls):
    """A class's fields that its docstring's Attributes section already describes: the class
    template leaves them out of the member list, which would repeat them without a text."""
    doc = cls.__doc__ or ""
    if "Attributes:" not in doc:
        return []
    if dataclasses.is_dataclass(cls):
        fields = [field.name for field in dataclasses.fields(cls)]
    else:
        fields = list(getattr(cls, "_fields", ()))
    return [field for field in fields if field in doc]


# Names that also work as ``lrjax.X``: the page of each notes its short alias.
autosummary_context = {
    "top_level": sorted(set(lrjax.__all__)),
    "documented_fields": {
        name: _documented_fields(getattr(lrjax, name))
        for name in lrjax.__all__
        if isinstance(getattr(lrjax, name), type)
    },
}
autodoc_default_options = {"member-order": "bysource", "undoc-members": False}
autodoc_typehints = "description"  # long signatures stay readable; types go into Args
autodoc_typehints_description_target = "documented_params"  # no undocumented Args list;
# no return types either: optax.Schedule and friends would print as their expanded unions
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True  # show `schedule=None`, not its repr after evaluation
autodoc_inherit_docstrings = False  # NamedTuple's own docstrings are noise
add_module_names = False
maximum_signature_line_length = 88
python_use_unqualified_type_names = True
napoleon_google_docstring = True
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_ivar = True

# -- MyST and notebook execution --------------------------------------------------
myst_enable_extensions = ["colon_fence", "dollarmath", "deflist"]
# MathJax served with the site when .ci/build-docs could fetch it (npm), so formulas render
# offline too (a browser without network, a sandbox); otherwise Sphinx's CDN default.
if (DOCS / "_static" / "mathjax" / "tex-mml-chtml.js").exists():
    mathjax_path = "mathjax/tex-mml-chtml.js"
myst_heading_anchors = 3
# "force" runs every notebook page on every build (CI); "cache" reruns a page only when its
# code changed, for editing locally (a library change then needs "force" to show).
nb_execution_mode = os.environ.get("LRJAX_DOCS_EXECUTION", "force")
nb_execution_cache_path = str(DOCS / "_build" / ".jupyter_cache")
nb_execution_raise_on_error = True  # a cell error fails the build
nb_execution_timeout = 180  # seconds per cell; tutorials run in seconds in small mode
nb_execution_show_tb = True
nb_merge_streams = True
nb_output_stderr = "remove-warn"  # jax's CPU backend note is noise on a page

# -- HTML -----------------------------------------------------------------------------
html_theme = "furo"
html_title = f"lrjax {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_theme_options = {
    "source_repository": "https://github.com/lrjax/lrjax/",
    "source_branch": "main",
    "source_directory": "docs/",
}
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True
