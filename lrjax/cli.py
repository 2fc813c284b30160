"""The ``lrjax`` command: ``lrjax find`` runs an LR range test on an embedded problem.

The embedded problem is a Flax MLP on scikit-learn's bundled digits (:mod:`lrjax.digits`),
so the command runs anywhere ``pip install lrjax[examples]`` has been run, offline.

Example:
    $ lrjax find --optimizer adamw --steps 200 --seeds 3 --plot lr.png --json lr.json
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, NoReturn, TextIO

import numpy as np

from lrjax import __version__
from lrjax.suggest import SUGGESTERS
from lrjax.terminal_plot import UNICODE_GLYPHS, text_plot

TABLE_ROWS = 8
PROGRESS_UPDATES = 10  # chunks of the compiled test, one progress report after each
TRAIN_IMAGES = 1438  # digits images left for training by lrjax.digits' 80/20 split
EXIT_USAGE = 2

OptimizerFactory = Callable[..., Any]


class UsageError(Exception):
    """Bad input from the user: reported as one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, ``lrjax: error: ...``, not usage + exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


# --- argument types: each rejects a bad value with a message naming the rule ----------


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}")
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


# --- optimizers: optax ones directly, lrjax ones looked up when used --------------------


def _lrjax_optimizer(name: str) -> OptimizerFactory:
    import lrjax

    factory = getattr(lrjax, name, None)
    if factory is None:
        raise UsageError(f"optimizer {name!r} is not available in this lrjax installation")
    return factory


def _adam(args: argparse.Namespace) -> OptimizerFactory:
    import optax

    return optax.adam


def _sgd(args: argparse.Namespace) -> OptimizerFactory:
    import optax

    return functools.partial(optax.sgd, momentum=args.momentum or None)


def _adamw(args: argparse.Namespace) -> OptimizerFactory:
    return functools.partial(_lrjax_optimizer("adamw"), weight_decay=args.weight_decay)


def _lrjax_default(name: str) -> Callable[[argparse.Namespace], OptimizerFactory]:
    return lambda args: _lrjax_optimizer(name)


OPTIMIZERS: dict[str, tuple[Callable[[argparse.Namespace], OptimizerFactory], str]] = {
    "adam": (_adam, "optax.adam, default betas"),
    "adamw": (_adamw, "lrjax.adamw with --weight-decay"),
    "sgd": (_sgd, "optax.sgd with --momentum"),
    "amsgrad": (_lrjax_default("amsgrad"), "lrjax.amsgrad (PyTorch convention)"),
    "powersign": (_lrjax_default("powersign"), "lrjax.powersign, default base and beta"),
    "addsign": (_lrjax_default("addsign"), "lrjax.addsign, default alpha and beta"),
}


# --- the parser -----------------------------------------------------------------------


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


def _add_find_command(commands: Any) -> None:
    """Register ``lrjax find`` on ``commands`` (the subparsers action of :func:`build_parser`)."""
    optimizer_lines = "\n".join(f"  {name:<10} {text}" for name, (_, text) in OPTIMIZERS.items())
    find = commands.add_parser(
        "find",
        help="run an LR range test on the embedded digits MLP and suggest a learning rate",
        description=(
            "Train a Flax MLP on scikit-learn's digits while the learning rate grows from\n"
            "--min-lr to --max-lr over --steps steps (one compiled program), then print the\n"
            "loss curve, a table and the suggested learning rates. Needs lrjax[examples]."
        ),
        epilog=(
            f"optimizers:\n{optimizer_lines}\n\nexamples:\n  lrjax find\n"
            "  lrjax find --optimizer sgd --steps 200 --seeds 3 --plot lr.png --json lr.json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    choice = functools.partial(_add_valued, find, str)
    number = functools.partial(_add_valued, find, _finite_float)
    count = functools.partial(_add_valued, find, _int_at_least(1))
    choice("--optimizer", "adam", None, "optimizer under test, see below", list(OPTIMIZERS))
    number("--min-lr", 1e-7, "LR", "learning rate of the first step, > 0")
    number("--max-lr", 10.0, "LR", "learning rate of the last step, > --min-lr")
    _add_valued(find, _int_at_least(2), "--steps", 100, "N", "number of steps, >= 2")
    choice("--mode", "exp", None, "learning-rate ramp: exp or linear", ["exp", "linear"])
    count("--seeds", 1, "N", "initialisations run in one program; suggestions are medians")
    _add_valued(find, int, "--seed", 0, "N", "seed of the weights and the batch order")
    count("--batch-size", 64, "N", f"images per step, at most {TRAIN_IMAGES}")
    count("--hidden", 64, "N", "width of the hidden layer")
    number("--momentum", 0.9, "M", "momentum of --optimizer sgd, 0 for plain SGD")
    number("--weight-decay", 1e-4, "WD", "decoupled weight decay of --optimizer adamw")
    number("--smoothing", 0.98, "BETA", "EMA factor of the smoothed loss, in [0, 1)")
    _add_valued(
        find,
        _number,
        "--diverge-threshold",
        4.0,
        "X",
        "stop once the smoothed loss exceeds X times the best, X > 1; inf: only at NaN",
    )
    choice("--suggest", "valley", None, "the rule whose lr is the suggestion", list(SUGGESTERS))
    find.add_argument("--plot", metavar="FILE.png", help="save a matplotlib plot (lrjax[plot])")
    find.add_argument("--json", metavar="FILE.json", help="save the suggestions and the curve")
    find.add_argument("--ascii", action="store_true", help="draw the terminal plot in ASCII")
    find.add_argument("--no-terminal-plot", action="store_true", help="skip the terminal plot")
    find.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    find.set_defaults(handler=_find)


# The subcommands: name -> the function that registers it, or "module:function" naming one
# imported only when the parser is built (so a command module may import lrjax.cli itself
# without a circular import). A registering function gets the subparsers action, calls
# ``commands.add_parser(name, ...)`` (``parser_class`` is already the one-line-error parser)
# and sets ``handler=fn(args, stdout, stderr) -> exit status`` with ``set_defaults``; a
# handler raises :class:`UsageError` for bad input (one line on stderr, exit 2), and
# KeyboardInterrupt is handled for every command by :func:`main` (one line, exit 130).
# Adding a command is one line here, e.g. ``"search": "lrjax.cli_search:add_search_command"``.
COMMANDS: dict[str, Callable[[Any], None] | str] = {
    "find": _add_find_command,
}


def _command_adder(adder: Callable[[Any], None] | str) -> Callable[[Any], None]:
    if callable(adder):
        return adder
    module, _, function = adder.partition(":")
    return getattr(importlib.import_module(module), function)


def build_parser() -> argparse.ArgumentParser:
    """The ``lrjax`` argument parser with one subparser per entry of :data:`COMMANDS`."""
    parser = _Parser(
        prog="lrjax",
        description="Learning-rate tools for JAX/Optax; `lrjax COMMAND --help` for a command.",
    )
    parser.add_argument("--version", action="version", version=f"lrjax {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for adder in COMMANDS.values():
        _command_adder(adder)(commands)
    return parser


# --- checks made before anything heavy is imported ------------------------------------


def _check_find_args(args: argparse.Namespace) -> None:
    if args.min_lr <= 0:
        raise UsageError(f"--min-lr must be > 0, got {args.min_lr:g}")
    if args.max_lr <= args.min_lr:
        raise UsageError(
            f"--max-lr ({args.max_lr:g}) must be greater than --min-lr ({args.min_lr:g})"
        )
    if args.batch_size > TRAIN_IMAGES:
        raise UsageError(f"--batch-size must be <= {TRAIN_IMAGES}, got {args.batch_size}")
    if not 0.0 <= args.smoothing < 1.0:
        raise UsageError(f"--smoothing must be in [0, 1), got {args.smoothing:g}")
    if args.diverge_threshold <= 1.0:
        raise UsageError(f"--diverge-threshold must be > 1, got {args.diverge_threshold:g}")
    if not 0.0 <= args.momentum < 1.0:
        raise UsageError(f"--momentum must be in [0, 1), got {args.momentum:g}")
    if args.weight_decay < 0:
        raise UsageError(f"--weight-decay must be >= 0, got {args.weight_decay:g}")
    for option, path in (("--plot", args.plot), ("--json", args.json)):
        if path is not None and os.path.isdir(path):
            raise UsageError(f"{option}: {path!r} is a folder, not a file name")
        if path is not None and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise UsageError(f"{option}: the folder of {path!r} does not exist")
    if args.plot is not None and importlib.util.find_spec("matplotlib") is None:
        raise UsageError("--plot needs matplotlib: pip install lrjax[plot]")


def _require_examples_extra() -> None:
    for module, package in (("sklearn", "scikit-learn"), ("flax", "flax")):
        try:
            spec = importlib.util.find_spec(module)
        except ValueError:  # a module set to None in sys.modules (how tests hide it)
            spec = None
        if spec is None:
            raise UsageError(
                f"lrjax find needs {package} for its digits problem: pip install lrjax[examples]"
            )


# --- progress -------------------------------------------------------------------------


def _progress_reporter(stream: TextIO) -> Callable[[int, int], None]:
    """A ``progress(steps_done, num_steps)`` callback drawing a bar on ``stream``.

    On a terminal the bar is redrawn in place; elsewhere (a log file, a pipe) each
    report is its own line.
    """
    interactive = stream.isatty()

    def report(steps_done: int, num_steps: int) -> None:
        filled = int(30 * steps_done / max(num_steps, 1))
        note = " (compiling)" if steps_done == 0 else ""
        text = (
            f"range test [{'#' * filled}{'-' * (30 - filled)}] {steps_done}/{num_steps} steps{note}"
        )
        if interactive:
            stream.write("\r" + text + ("\n" if steps_done >= num_steps else ""))
        else:
            stream.write(text + "\n")
        stream.flush()

    return report


# --- the report -----------------------------------------------------------------------


class Findings(NamedTuple):
    """What is read off the result once and then printed and saved."""

    suggestions: dict[str, float]
    spreads: dict[str, float]
    cyclical_bounds: tuple[float, float]
    curve: np.ndarray  # smoothed loss before divergence (median over seeds), NaN after
    warnings: list[str]


def _diverged_steps(result: Any) -> np.ndarray:
    """Divergence step of every curve, -1 for a curve that never diverged."""
    if result.diverged_at is None:
        return np.full(result.smoothed_losses.shape[:-1], -1)
    return np.asarray(result.diverged_at)


def _plotted_curve(result: Any) -> np.ndarray:
    """Smoothed loss up to (not including) each curve's divergence; median over curves."""
    curves = result.smoothed_before_divergence().reshape(-1, result.num_steps)
    recorded = np.isfinite(curves).any(axis=0)
    median = np.full(result.num_steps, np.nan)
    median[recorded] = np.nanmedian(curves[:, recorded], axis=0)
    return median


def _read_findings(result: Any, seeds: int) -> Findings:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        suggestions = {name: float(value) for name, value in result.suggestions().items()}
        spreads = {name: result.spread(name) for name in suggestions} if seeds > 1 else {}
        bounds = tuple(float(v) for v in result.cyclical_bounds())
    messages = list(dict.fromkeys(str(w.message) for w in caught))  # unique, in order
    return Findings(suggestions, spreads, bounds, _plotted_curve(result), messages)


def _table_rows(curve: np.ndarray) -> list[int]:
    """Up to TABLE_ROWS step indices spread evenly over the recorded (finite) part."""
    recorded = np.flatnonzero(np.isfinite(curve))
    if recorded.size == 0:
        return []
    picks = np.linspace(0, recorded.size - 1, min(TABLE_ROWS, recorded.size))
    return [int(recorded[round(p)]) for p in picks]


def _plot_y_limits(curve: np.ndarray) -> tuple[float, float] | None:
    """y axis from the lowest loss to a little above the highest loss before it.

    The rise towards divergence can reach ``diverge_threshold`` times the minimum and
    would squeeze the descent, which is what the plot is read for, into a few rows.
    """
    finite = np.flatnonzero(np.isfinite(curve))
    if finite.size == 0:
        return None
    lowest = int(finite[np.argmin(curve[finite])])
    low, high = float(curve[lowest]), float(np.nanmax(curve[: lowest + 1]))
    top = max(high + 0.15 * (high - low), float(np.nanmax(curve)) if high == low else low)
    return (low, top) if top > low else None


def _divergence_line(result: Any) -> str:
    steps = _diverged_steps(result).reshape(-1)
    hit = steps[steps >= 0]
    if hit.size == 0:
        return "the loss did not diverge within the range"
    first = int(hit.min())
    curves = f" ({hit.size} of {steps.size} seeds)" if steps.size > 1 else ""
    return f"diverged at step {first} (lr {result.lrs[first]:.3e}){curves}; later steps skipped"


def _can_draw_unicode(stream: TextIO) -> bool:
    """Whether ``stream``'s encoding has the plot's box-drawing characters (cp1252 has not)."""
    try:
        "".join(UNICODE_GLYPHS.values()).encode(getattr(stream, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _format_report(
    result: Any, findings: Findings, args: argparse.Namespace, seconds: float, ascii_only: bool
) -> str:
    seeds = f", median of {args.seeds} seeds" if args.seeds > 1 else ""
    lines = [
        (
            f"lrjax find: {args.optimizer} on digits (MLP 64-{args.hidden}-10, batch "
            f"{args.batch_size}), {args.steps} steps, lr {args.min_lr:g} -> {args.max_lr:g} "
            f"({args.mode}), {seconds:.1f} s"
        ),
        "",
    ]
    if not args.no_terminal_plot:
        lines += [
            text_plot(
                result.lrs,
                findings.curve,
                marks={args.suggest: findings.suggestions[args.suggest]},
                y_limits=_plot_y_limits(findings.curve),
                ascii_only=ascii_only,
                x_label=f"learning rate; smoothed loss{seeds}",
            ),
            "",
        ]
    lines.append(f"{'learning rate':>14}  smoothed loss{seeds}")
    lines += [
        f"{result.lrs[i]:>14.3e}  {findings.curve[i]:.4f}" for i in _table_rows(findings.curve)
    ]
    lines += ["", _divergence_line(result), ""]
    lines.append(f"{'suggestion':>14}  learning rate")
    for method, value in findings.suggestions.items():
        spread = (
            f"  (seeds spread {findings.spreads[method]:.2f} decades)" if findings.spreads else ""
        )
        chosen = "  <- --suggest" if method == args.suggest else ""
        lines.append(f"{method:>14}  {value:.3e}{spread}{chosen}")
    base_lr, max_lr = findings.cyclical_bounds
    lines.append(f"{'cyclic bounds':>14}  {base_lr:.3e} .. {max_lr:.3e}  (base_lr .. max_lr)")
    return "\n".join(lines)


def _json_payload(result: Any, findings: Findings, args: argparse.Namespace) -> dict[str, Any]:
    """The result's own dict (so ``RangeTestResult.from_json`` reads the file back) plus the
    chosen suggestion, the cyclical bounds and the command's settings."""
    command = {key: value for key, value in vars(args).items() if key != "handler"}
    return {
        "suggestion": findings.suggestions[args.suggest],
        "method": args.suggest,
        **result.to_dict(),
        "suggestions": findings.suggestions,
        "cyclical_bounds": list(findings.cyclical_bounds),
        "command": command,
    }


# --- the find command -----------------------------------------------------------------


def _run_range_test(args: argparse.Namespace, optimizer: OptimizerFactory, stderr: TextIO) -> Any:
    import jax

    import lrjax
    from lrjax.digits import digits_problem

    loss_fn, params, data, init_fn = digits_problem(
        hidden=args.hidden, batch_size=args.batch_size, num_steps=args.steps, seed=args.seed
    )
    seeded = {"init_fn": init_fn, "num_seeds": args.seeds} if args.seeds > 1 else {}
    progress = None
    if not args.quiet:
        # Chunks let the host report between them; without progress it is one program.
        progress = _progress_reporter(stderr)
        progress(0, args.steps)
        seeded["chunk_size"] = -(-args.steps // PROGRESS_UPDATES)
    return lrjax.range_test(
        loss_fn,
        params,
        optimizer,
        data,
        min_lr=args.min_lr,
        max_lr=args.max_lr,
        num_steps=args.steps,
        mode=args.mode,
        smoothing=args.smoothing,
        diverge_threshold=args.diverge_threshold,
        key=jax.random.key(args.seed),
        progress=progress,
        **seeded,
    )


def _find(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    _check_find_args(args)
    _require_examples_extra()
    optimizer = OPTIMIZERS[args.optimizer][0](args)
    start = time.perf_counter()
    try:
        result = _run_range_test(args, optimizer, stderr)
    except ValueError as error:  # range_test's checks of its static arguments
        raise UsageError(str(error)) from error
    seconds = time.perf_counter() - start
    findings = _read_findings(result, args.seeds)
    stderr.writelines(f"lrjax: warning: {message}\n" for message in findings.warnings)
    ascii_only = args.ascii or not _can_draw_unicode(stdout)
    stdout.write(_format_report(result, findings, args, seconds, ascii_only) + "\n")
    try:
        if args.json is not None:
            with open(args.json, "w", encoding="utf-8") as file:
                json.dump(_json_payload(result, findings, args), file, allow_nan=False)
            stdout.write(f"wrote {args.json}\n")
        if args.plot is not None:
            _save_plot(result, args.plot)
            stdout.write(f"wrote {args.plot}\n")
    except OSError as error:
        raise UsageError(f"cannot write {error.filename}: {error.strerror}") from error
    return 0


def _save_plot(result: Any, path: str) -> None:
    # A bare Figure needs no pyplot backend, so no window can open and no global state changes.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5))
    result.plot(ax=figure.subplots())
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``lrjax`` command on ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stdout)
            return EXIT_USAGE
        return args.handler(args, sys.stdout, sys.stderr)
    except UsageError as error:
        sys.stderr.write(f"lrjax: error: {error}\n")
        return EXIT_USAGE
    except SystemExit as exit_request:  # --help and --version exit through argparse
        return exit_request.code if isinstance(exit_request.code, int) else 0
    except BrokenPipeError:  # e.g. `lrjax find | head`: stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush cannot fail
        return 1
