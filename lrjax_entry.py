"""The ``lrjax`` console script, outside the package so that Ctrl-C while it loads is clean.

``import lrjax`` loads jax (about a second). A Ctrl-C then comes before ``lrjax.cli.main``
can handle it, so the script would end in Python's traceback (or in an ImportError from
numpy's or jaxlib's extension); this module holds SIGINT back around the import and ends
as ``lrjax.cli.main`` does on Ctrl-C: one line on stderr and exit status 130.
"""

from __future__ import annotations

import signal
import sys

#: The exit status of an interrupted command (128 + SIGINT), as ``lrjax.cli`` uses.
EXIT_INTERRUPTED = 130


def main(argv: list[str] | None = None) -> int:
    """Run ``lrjax.cli.main(argv)``, ending in one line and 130 on Ctrl-C during the import.

    While lrjax (and jax, numpy) load, SIGINT only sets a flag: a KeyboardInterrupt raised
    inside a C extension's import comes back as an unrelated ImportError (numpy, jaxlib)
    or is swallowed by a callback, so it is not let loose there. The interruption takes
    effect when the import returns (about a second), as one during an XLA compile does.
    """
    interrupted: list[int] = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: interrupted.append(signum))
    except ValueError:  # not the main thread: leave the handler alone
        previous = None
    try:
        from lrjax.cli import main as cli_main
    except (KeyboardInterrupt, ImportError) as error:
        if not (interrupted or _caused_by_ctrl_c(error)):
            raise
        cli_main = None
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if interrupted or cli_main is None:
        sys.stderr.write("lrjax: interrupted\n")
        return EXIT_INTERRUPTED
    return cli_main(argv)


def _caused_by_ctrl_c(error: BaseException | None) -> bool:
    """Whether ``error`` is, or was raised while handling, a KeyboardInterrupt.

    A Ctrl-C while numpy's C extension loads reaches the caller as an ImportError
    ("numpy._core.multiarray failed to import") raised from the KeyboardInterrupt.
    """
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


if __name__ == "__main__":
    sys.exit(main())
