"""``lrjax find``: runs an LR range test on an embedded problem.

The embedded problem is a Flax MLP on scikit-learn's bundled digits (:mod:`lrjax.data.digits`),
so the command runs anywhere ``pip install lrjax[examples]`` has been run, offline.

Example:
    $ lrjax find --optimizer adamw --steps 200 --seeds 3 --plot lr.png --json lr.json
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import time
import warnings
from collections.abc import Callable
from typing import Any, TextIO

import numpy as np

from lrjax.cli.args import TRAIN_IMAGES, _add_valued, _finite_float, _int_at_least, _number
from lrjax.cli.files import INTERRUPT, UsageError, check_output_paths, write_replacing
from lrjax.cli.report import can_draw_unicode, format_report, json_payload, read_findings
from lrjax.finder.suggest.rules import DEFAULT_METHOD, SUGGESTERS

PROGRESS_UPDATES = 10  # chunks of the compiled test, one progress report after each
MAX_SEEDS = 1024  # every seed is one more copy of the model and optimizer in one program
MAX_HIDDEN = 65536
MAX_SEED = 2**63 - 1  # jax.random.key takes an int64
# The one compiled program holds every seed's params, gradients and optimizer state at
# once, and every step's batch: past this estimate, refuse instead of RESOURCE_EXHAUSTED.
MEMORY_BUDGET = 4 * 2**30
FLOAT32_TINY = float(np.finfo(np.float32).tiny)  # smallest normal float32
FLOAT32_MAX = float(np.finfo(np.float32).max)
# The library's default suggestion rule (result.suggest() without a method).
DEFAULT_RULE: str = DEFAULT_METHOD

OptimizerFactory = Callable[..., Any]


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


def add_find_command(commands: Any) -> None:
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
    _add_valued(
        find,
        _int_at_least(1, MAX_SEEDS),
        "--seeds",
        1,
        "N",
        f"initialisations run in one program, at most {MAX_SEEDS}; suggestions are medians",
    )
    _add_valued(
        find, _int_at_least(0, MAX_SEED), "--seed", 0, "N", "seed of the weights and the batch order"
    )
    count("--batch-size", 64, "N", f"images per step, at most {TRAIN_IMAGES}")
    _add_valued(find, _int_at_least(1, MAX_HIDDEN), "--hidden", 64, "N", "width of the hidden layer")
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
    choice(
        "--suggest", DEFAULT_RULE, None, "the rule whose lr is the suggestion", list(SUGGESTERS)
    )
    find.add_argument(
        "--plot",
        metavar="FILE.png",
        help=(
            "save a matplotlib plot (lrjax[plot]); the extension picks the format, .png if "
            "none; a folder is refused (name a file in it); a symbolic link is written through"
        ),
    )
    find.add_argument("--json", metavar="FILE.json", help="save the suggestions and the curve")
    find.add_argument("--ascii", action="store_true", help="draw the terminal plot in ASCII")
    find.add_argument("--no-terminal-plot", action="store_true", help="skip the terminal plot")
    find.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    find.set_defaults(handler=_find)


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
    _check_memory(args)
    _check_float32_ramp(args)
    args.plot = check_output_paths(args.plot, args.json)


def _check_float32_ramp(args: argparse.Namespace) -> None:
    """The range test trains in float32: every lr of the ramp must be a distinct,
    normal float32, and the exp ramp's ratio ``max_lr / min_lr`` must be one too."""
    for option, value in (("--min-lr", args.min_lr), ("--max-lr", args.max_lr)):
        if not FLOAT32_TINY <= value <= FLOAT32_MAX:
            raise UsageError(
                f"{option} must be within float32's range [{FLOAT32_TINY:.3g}, "
                f"{FLOAT32_MAX:.3g}] (the test trains in float32), got {value:g}"
            )
    ratio = args.max_lr / args.min_lr
    if args.mode == "exp" and ratio > FLOAT32_MAX:
        raise UsageError(
            f"--max-lr {args.max_lr:g} is {ratio:.3g} times --min-lr {args.min_lr:g}, more "
            f"than float32 holds ({FLOAT32_MAX:.3g}): the exp ramp would reach inf"
        )
    fraction = np.arange(args.steps) / (args.steps - 1)
    lrs = (
        args.min_lr * ratio**fraction
        if args.mode == "exp"
        else args.min_lr + (args.max_lr - args.min_lr) * fraction
    ).astype(np.float32)
    if not np.all(np.diff(lrs) > 0):
        raise UsageError(
            f"--min-lr {args.min_lr!r} and --max-lr {args.max_lr!r} are too close for "
            f"{args.steps} distinct float32 learning rates: widen the range or lower --steps"
        )


def _check_memory(args: argparse.Namespace) -> None:
    """Refuse a program that cannot fit, before XLA tries (RESOURCE_EXHAUSTED).

    A rough count of float32 values the program holds at once: per seed, the MLP's
    params times 6 (params, gradients, two optimizer moments, updates, the new params)
    and the activations of one batch (forward and backward); for all seeds, every
    step's batch of 64 pixels and a label (the data is stacked on a step axis).
    """
    params = 64 * args.hidden + args.hidden + args.hidden * 10 + 10
    per_seed = 6 * params + 4 * args.batch_size * (args.hidden + 10) + 3 * args.steps
    model_bytes = 4 * args.seeds * per_seed
    data_bytes = 4 * args.steps * args.batch_size * 65
    if model_bytes + data_bytes > MEMORY_BUDGET:
        options = "--seeds or --hidden" if model_bytes > data_bytes else "--steps or --batch-size"
        raise UsageError(
            f"--seeds {args.seeds}, --hidden {args.hidden}, --steps {args.steps} and "
            f"--batch-size {args.batch_size} need about "
            f"{(model_bytes + data_bytes) / 2**30:.1f} GiB in one program, more than "
            f"lrjax find allows ({MEMORY_BUDGET / 2**30:.0f} GiB): lower {options}"
        )


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
        INTERRUPT.raise_if_set()  # a Ctrl-C lost inside the last chunk stops the next
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


# --- the find command -----------------------------------------------------------------


def _run_range_test(args: argparse.Namespace, optimizer: OptimizerFactory, stderr: TextIO) -> Any:
    import jax

    import lrjax
    from lrjax.data.digits import digits_problem

    loss_fn, params, data, init_fn = digits_problem(
        hidden=args.hidden, batch_size=args.batch_size, num_steps=args.steps, seed=args.seed
    )
    labels = np.asarray(data["y"]).reshape(-1)
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
        baseline_loss=constant_predictor_loss(labels),
        **seeded,
    )


def constant_predictor_loss(labels: np.ndarray) -> float:
    """The cross-entropy of always predicting the labels' own class frequencies: the
    loss a range test must get below to have seen the model learn (``baseline_loss``)."""
    frequencies = np.bincount(labels) / labels.size
    return float(-np.mean(np.log(frequencies[labels])))


def _find(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    _check_find_args(args)
    _require_examples_extra()
    optimizer = OPTIMIZERS[args.optimizer][0](args)
    start = time.perf_counter()
    try:
        result = _run_range_test(args, optimizer, stderr)
    except ValueError as error:  # range_test's checks of its static arguments
        INTERRUPT.raise_if_set()
        raise UsageError(str(error)) from error
    except Exception as error:  # XLA's out-of-memory error, past _check_memory's estimate
        INTERRUPT.raise_if_set()
        if "RESOURCE_EXHAUSTED" not in str(error):
            raise
        raise UsageError(
            f"out of memory for --seeds {args.seeds}, --hidden {args.hidden}, --steps "
            f"{args.steps}, --batch-size {args.batch_size}: lower one of them"
        ) from error
    INTERRUPT.raise_if_set()  # before anything is printed or written
    seconds = time.perf_counter() - start
    findings = read_findings(result, args.seeds, args.suggest)
    stderr.writelines(f"lrjax: warning: {message}\n" for message in findings.warnings)
    ascii_only = args.ascii or not can_draw_unicode(stdout)
    stdout.write(format_report(result, findings, args, seconds, ascii_only) + "\n")
    if args.json is not None:
        payload = json_payload(result, findings, args)
        write_replacing(
            "--json",
            args.json,
            lambda file: json.dump(payload, file, allow_nan=False),
            text=True,
        )
        stdout.write(f"wrote {args.json}\n")
    if args.plot is not None:
        write_replacing("--plot", args.plot, functools.partial(_save_plot, result, args))
        stdout.write(f"wrote {args.plot}\n")
    return 0


def _save_plot(result: Any, args: argparse.Namespace, file: Any) -> None:
    # A bare Figure needs no pyplot backend, so no window can open and no global state changes.
    from matplotlib.figure import Figure

    from lrjax.plot.figures import plot_range_test

    figure = Figure(figsize=(7.5, 4.8))
    with warnings.catch_warnings():  # the suggestions' warnings were reported already
        warnings.simplefilter("ignore")
        plot_range_test(result, ax=figure.subplots(), method=args.suggest)
    figure.tight_layout()
    extension = os.path.splitext(args.plot)[1][1:].lower()
    figure.savefig(file, dpi=120, format=extension)


