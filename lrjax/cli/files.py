"""Output files and Ctrl-C for the ``lrjax`` commands: checked before a run, written whole.

A command's output paths are checked before it trains (:func:`check_output_paths`), so a
typo costs no compute; the files are written to a temporary file beside the target and
renamed (:func:`write_replacing`; through a symbolic link, the file it points to), so
Ctrl-C or an error mid-write leaves the old file or none, never half of one.
:data:`INTERRUPT` remembers a Ctrl-C that code called back from C++ (JAX tracing, XLA)
may swallow, so the command still stops.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import tempfile
import threading
from collections.abc import Callable
from typing import Any

# matplotlib formats that need more than matplotlib and Pillow (pgf needs LaTeX).
PLOT_FORMATS_EXCLUDED = ("pgf",)


class UsageError(Exception):
    """Bad input from the user: reported as one line on stderr, exit status 2."""


def plot_formats() -> list[str]:
    """The extensions ``--plot`` accepts: what matplotlib can write."""
    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()
    return sorted(name for name in formats if name not in PLOT_FORMATS_EXCLUDED)


def check_output_paths(plot: str | None, json: str | None) -> str | None:
    """Check ``--plot`` and ``--json`` before the run, so a bad path costs no training.

    Refused, naming the option: a folder (``--plot DIR`` too, which would otherwise
    become ``DIR.png`` beside it), a missing folder, an existing file that is not a
    regular one (a rename would replace a device), a folder that cannot be written, both
    options naming the same file, a plot extension matplotlib cannot write.

    Args:
        plot: the ``--plot`` path or None.
        json: the ``--json`` path or None.

    Returns:
        The plot file really written: ``plot`` with ``.png`` (matplotlib's default)
        added when it has no extension; None without ``--plot``.

    Raises:
        UsageError: one line naming the option.

    Example:
        >>> check_output_paths(None, None) is None
        True
    """
    root, extension = os.path.splitext(plot or "")
    if plot is not None and os.path.isdir(plot):
        raise UsageError(
            f"--plot: {plot!r} is a folder, not a file name; give a file in it, e.g. "
            f"{os.path.join(plot, 'range_test.png')!r} (the extension picks the format)"
        )
    if plot is not None and not extension:
        plot += ".png"
    if plot is not None and json is not None and same_file(plot, json):
        raise UsageError(f"--plot and --json name the same file {json!r}")
    if plot is not None:
        if importlib.util.find_spec("matplotlib") is None:
            raise UsageError("--plot needs matplotlib: pip install lrjax[plot]")
        if extension and extension[1:].lower() not in plot_formats():
            raise UsageError(
                f"--plot: matplotlib cannot save {extension!r} files ({plot!r}); use one "
                f"of {', '.join(plot_formats())}, e.g. {root}.png"
            )
    for option, path in (("--plot", plot), ("--json", json)):
        if path is not None:
            check_writable(option, path)
    return plot


def same_file(first: str, second: str) -> bool:
    """Whether two paths name one file (the same real path, or the same inode)."""
    if os.path.realpath(first) == os.path.realpath(second):
        return True
    try:
        return os.path.samefile(first, second)  # e.g. hard links
    except OSError:  # one does not exist yet
        return False


def check_writable(option: str, path: str) -> None:
    """Refuse ``path`` unless a file can be written there (tried for real), naming ``option``."""
    if os.path.isdir(path):
        raise UsageError(f"{option}: {path!r} is a folder, not a file name")
    target = os.path.realpath(path)  # a symbolic link is written through, to its target
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise UsageError(f"{option}: the folder of {path!r} does not exist")
    if os.path.exists(target) and not os.path.isfile(target):
        # The file is replaced by a rename: never do that to a device or a pipe.
        raise UsageError(f"{option}: {path!r} exists and is not a regular file")
    if os.path.exists(target) and not os.access(target, os.W_OK):
        raise UsageError(f"{option}: {path!r} is not writable")
    try:  # the output is written next to its target and renamed: try that folder for real
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".lrjax-check-")
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise UsageError(f"{option}: cannot write in {folder!r}: {error.strerror}") from None


def write_replacing(
    option: str, path: str, write: Callable[[Any], None], text: bool = False
) -> None:
    """Write through ``write(file)`` into a temporary file beside ``path``, then rename it.

    The rename is atomic: ``path`` is either its old self or the complete new file, even
    when Ctrl-C or an error comes in the middle; the temporary file is removed then. A
    symbolic link stays one: the file it points to is replaced, as editors do.
    """
    target = os.path.realpath(path)
    folder = os.path.dirname(target)
    handle, temporary = tempfile.mkstemp(
        dir=folder, prefix=f".{os.path.basename(target)}.", suffix=".part"
    )
    try:
        with (
            open(handle, "w", encoding="utf-8") if text else open(handle, "wb")
        ) as file:
            write(file)
        _copy_mode(target, temporary)
        os.replace(temporary, target)
    except OSError as error:
        _remove_quietly(temporary)
        raise UsageError(f"{option}: cannot write {path!r}: {error.strerror}") from error
    except BaseException:
        _remove_quietly(temporary)
        raise


def _copy_mode(path: str, temporary: str) -> None:
    """Give the new file the old one's permissions, or the umask's (mkstemp makes 0600)."""
    try:
        mode = os.stat(path).st_mode & 0o777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        mode = 0o666 & ~mask
    try:
        os.chmod(temporary, mode)
    except OSError:  # a file system without permissions: keep what mkstemp gave
        pass


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class InterruptFlag:
    """A SIGINT handler that remembers the interrupt as well as raising KeyboardInterrupt.

    Python code that JAX calls back from C++ (tracing, compilation) can have its
    KeyboardInterrupt swallowed there; the command checks :meth:`raise_if_set` after the
    run, so Ctrl-C is honoured anyway.
    """

    def __init__(self) -> None:
        self.set = False
        self.previous: Any = None

    def __enter__(self) -> InterruptFlag:
        self.set = False
        # Only the main thread may install handlers; leave a custom handler alone.
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None

    def _handle(self, signum: int, frame: Any) -> None:
        self.set = True
        raise KeyboardInterrupt

    def raise_if_set(self) -> None:
        if self.set:
            raise KeyboardInterrupt


INTERRUPT = InterruptFlag()  # installed by main() for the command's duration
