"""What every ``lrjax`` command parses alike: the one-line-error parser, argument types, exit codes.

Each argument type rejects a bad value with a message naming the rule (``must be an integer
>= 1, got '0'``); :class:`_Parser` turns argparse's usage-and-exit into a
:class:`~lrjax.cli.files.UsageError`, which :func:`lrjax.cli.main` prints as one line.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any, NoReturn

from lrjax.cli.files import UsageError

TRAIN_IMAGES = 1438  # digits images left for training by lrjax.data.digits' 80/20 split

EXIT_USAGE = 2

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for a command stopped by Ctrl-C


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, ``lrjax: error: ...``, not usage + exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _int_at_least(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An integer parser: ``>= minimum``, and ``<= maximum`` when one is given."""
    allowed = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"must be an integer {allowed}, got {text!r}")
        return value

    return parse


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if math.isnan(value):
        raise argparse.ArgumentTypeError(f"must not be NaN, got {text!r}")
    return value


def _finite_float(text: str) -> float:
    value = _number(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _add_valued(
    parser: argparse.ArgumentParser,
    parse: Callable[[str], Any],
    flag: str,
    default: Any,
    metavar: str | None,
    text: str,
    choices: list[str] | None = None,
) -> None:
    """An option taking a value, its default shown in the help (choices list themselves)."""
    parser.add_argument(
        flag,
        type=parse,
        default=default,
        metavar=metavar,
        choices=choices,
        help=f"{text} (default: %(default)s)",
    )
