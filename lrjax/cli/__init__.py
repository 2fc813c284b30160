"""The ``lrjax`` command (also ``python -m lrjax``): ``lrjax find`` and ``lrjax search``.

``entry`` (the parser over every subcommand, and :func:`main`), ``args`` (what every
command parses alike), ``find_command`` and ``search_command`` (one module per command),
``files`` (output files and Ctrl-C) and ``report`` (what ``lrjax find`` prints).
"""

from lrjax.cli.entry import build_parser, main

__all__ = [
    "main",
    "build_parser",
]
