"""The ``lrjax`` command's entry point: one parser over every subcommand, and :func:`main`.

Example:
    $ lrjax find --optimizer adamw --steps 200 --seeds 3 --plot lr.png --json lr.json
    $ lrjax search --method tpe --trials 32
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from lrjax import __version__
from lrjax.cli.args import EXIT_INTERRUPTED, EXIT_USAGE, _Parser
from lrjax.cli.files import INTERRUPT, UsageError
from lrjax.cli.find_command import add_find_command
from lrjax.cli.report import warning_line
from lrjax.cli.search_command import add_search_command

# The subcommands: name -> the function that registers it. A registering function gets the
# subparsers action, calls ``commands.add_parser(name, ...)`` (``parser_class`` is already the
# one-line-error parser) and sets ``handler=fn(args, stdout, stderr) -> exit status`` with
# ``set_defaults``; a handler raises :class:`UsageError` for bad input (one line on stderr,
# exit 2), and KeyboardInterrupt is handled for every command by :func:`main` (one line,
# exit 130). A command module imports what it shares with the others from
# :mod:`lrjax.cli.args`, never this module, so adding a command is one import and one line.
COMMANDS: dict[str, Callable[[Any], None]] = {
    "find": add_find_command,
    "search": add_search_command,
}


def build_parser() -> argparse.ArgumentParser:
    """The ``lrjax`` argument parser with one subparser per entry of :data:`COMMANDS`."""
    parser = _Parser(
        prog="lrjax",
        description="Learning-rate tools for JAX/Optax; `lrjax COMMAND --help` for a command.",
    )
    parser.add_argument("--version", action="version", version=f"lrjax {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for add_command in COMMANDS.values():
        add_command(commands)
    return parser


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``lrjax`` command on ``argv`` (default ``sys.argv[1:]``); return the exit code.

    Bad input: one line ``lrjax: error: ...`` on stderr, exit 2. Ctrl-C: one line, exit
    130, and no partial output file. Run as the program itself (``argv`` None), an
    interrupted command ends the process at once: tearing the interpreter down while
    XLA's compiler threads still run can crash it.
    """
    try:
        status = _main(argv)
    except KeyboardInterrupt:
        # On a terminal the progress bar may be mid-line (it is redrawn with \r).
        sys.stderr.write(("\n" if _isatty(sys.stderr) else "") + "lrjax: interrupted\n")
        status = EXIT_INTERRUPTED
    if status == EXIT_INTERRUPTED and argv is None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(status)
    return status


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """``warnings.showwarning`` of the command: one clean line, no file name or source line."""
    stream = sys.stderr if file is None else file
    try:
        stream.write(f"lrjax: warning: {warning_line(message)}\n")
    except (OSError, ValueError):  # a closed stream: a warning must not end the command
        pass


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    with INTERRUPT as interrupt, warnings.catch_warnings():
        warnings.showwarning = _show_warning  # restored on the way out
        try:
            args = parser.parse_args(argv)
            if args.command is None:
                parser.print_help(sys.stdout)
                return EXIT_USAGE
            status = args.handler(args, sys.stdout, sys.stderr)
            interrupt.raise_if_set()
            return status
        except UsageError as error:
            interrupt.raise_if_set()  # an interrupt turned into an error on its way up
            sys.stderr.write(f"lrjax: error: {_one_line(str(error))}\n")
            return EXIT_USAGE
        except SystemExit as exit_request:  # --help and --version exit through argparse
            return exit_request.code if isinstance(exit_request.code, int) else 0
        except BrokenPipeError:  # e.g. `lrjax find | head`: stop quietly, as Unix tools do
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush cannot fail
            return 1
