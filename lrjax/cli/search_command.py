"""``lrjax search``: a hyperparameter search on the embedded digits MLP, from the command line.

Each trial trains the digits MLP of :mod:`lrjax.data.digits` with AdamW on a cosine schedule
(``--steps`` steps); the search tunes the peak learning rate, the weight decay and Adam's
``b1``, and minimizes the loss on the held-out test images. Trials run
``--trials-per-program`` at a time in one compiled program (:func:`lrjax.search`'s
``batch_size``; ``--batch-size``, its old name, still works with a deprecation message).

Example:
    $ lrjax search --method tpe --trials 32 --plot search.png --json search.json
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any, TextIO

from lrjax.cli.args import TRAIN_IMAGES, _add_valued, _finite_float, _int_at_least
from lrjax.cli.files import UsageError, check_output_paths, write_replacing

METHODS = ("random", "quasirandom", "grid", "tpe", "gp")
OBJECTIVE = "val_loss"


def digits_train_fn(num_steps: int = 300, hidden: int = 64, batch_size: int = 64,
                    seed: int = 0) -> Any:
    """The search problem of ``lrjax search`` (and ``benchmarks/search.py``).

    ``hparams`` ``lr`` (peak of a cosine decay to 0 over ``num_steps``), ``weight_decay``
    (decoupled, lrjax.adamw) and ``b1`` (0.9 when the space has none); metrics ``train_loss``, ``val_loss`` and
    ``val_accuracy`` (held-out test images). Needs lrjax[examples].
    """
    import lrjax
    from lrjax.data.digits import digits_problem, validation_metrics

    loss_fn, _, data, init_fn = digits_problem(hidden, batch_size, num_steps, seed)

    def optimizer_fn(h: dict) -> Any:  # an lrjax schedule built from a traced peak
        schedule = lrjax.cosine_annealing(h["lr"], num_steps)
        return lrjax.adamw(schedule, b1=h.get("b1", 0.9), weight_decay=h["weight_decay"])

    return lrjax.make_train_fn(loss_fn, init_fn, optimizer_fn, data, num_steps=num_steps,
                               eval_fn=validation_metrics(hidden))


def digits_space(args: argparse.Namespace) -> dict:
    import lrjax

    return {
        "lr": lrjax.log_uniform(args.min_lr, args.max_lr),
        "weight_decay": lrjax.log_uniform(args.min_wd, args.max_wd),
        "b1": lrjax.uniform(args.min_b1, args.max_b1),
    }


def add_search_command(commands: Any) -> None:
    """Register ``lrjax search`` on ``commands`` (the subparsers action of the lrjax parser)."""
    parser = commands.add_parser(
        "search",
        help="search lr, weight decay and b1 of AdamW on the embedded digits MLP",
        description=(
            "Train the digits MLP with AdamW on a cosine schedule for --steps steps per\n"
            "trial, --trials-per-program trials at a time in one compiled program, and\n"
            "report the trials with the lowest held-out loss. Needs lrjax[examples] (tpe,\n"
            "gp and --storage also lrjax[search])."
        ),
        epilog=(
            "examples:\n  lrjax search\n"
            "  lrjax search --method tpe --trials 32 --plot search.png --json search.json\n"
            "  lrjax search --method tpe --trials 64 --storage search.journal   # resumable;\n"
            "      run it in several shells at once and they share the trials"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    number = functools.partial(_add_valued, parser, _finite_float)
    count = functools.partial(_add_valued, parser, _int_at_least(1))
    _add_valued(parser, str, "--method", "random", None, "how trials are chosen", list(METHODS))
    count("--trials", 16, "N", "number of trials (with --storage: the study's total); "
          "--method grid runs the largest full grid within it, k**3 points (lr, weight "
          "decay, b1: 8, 27, 64, ...)")
    parser.add_argument("--trials-per-program", type=_int_at_least(1), default=None,
                        metavar="N", dest="trials_per_program",
                        help="trials per compiled call (default: all; for tpe and gp 8, or 1 "
                             "on a CPU, where trials run one after another anyway)")
    # The old name, easily mistaken for --images (images per step, `find --batch-size`).
    parser.add_argument("--batch-size", type=_int_at_least(1), default=None, metavar="N",
                        dest="deprecated_batch_size", help=argparse.SUPPRESS)
    parser.add_argument("--storage", metavar="URL|FILE",
                        help="Optuna storage (sqlite:///s.db, postgresql://...) or journal file")
    parser.add_argument("--study-name", default=None, metavar="NAME",
                        help="study name in --storage (default: lrjax-search-XXXXXXXX, the "
                             "hex digits naming the ranges, --steps, --images, --hidden and "
                             "--seed, so that another search gets another study)")
    count("--steps", 300, "N", "training steps per trial")
    count("--images", 64, "N", f"images per step, at most {TRAIN_IMAGES}")
    count("--hidden", 64, "N", "width of the hidden layer")
    _add_valued(parser, int, "--seed", 0, "N", "seed of the search (trial keys, samplers)")
    number("--min-lr", 1e-4, "LR", "smallest peak learning rate, > 0")
    number("--max-lr", 1e-1, "LR", "largest peak learning rate")
    number("--min-wd", 1e-6, "WD", "smallest weight decay, > 0")
    number("--max-wd", 1e-1, "WD", "largest weight decay")
    number("--min-b1", 0.8, "B1", "smallest Adam b1")
    number("--max-b1", 0.99, "B1", "largest Adam b1, < 1")
    count("--top", 8, "N", "rows of the table of best trials")
    parser.add_argument("--plot", metavar="FILE.png", help="save the search plot (lrjax[plot])")
    parser.add_argument("--json", metavar="FILE.json", help="save every trial (SearchResult JSON)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    parser.set_defaults(handler=run_search)


def _check(args: argparse.Namespace, stderr: TextIO = sys.stderr) -> dict:
    if args.images > TRAIN_IMAGES:
        raise UsageError(f"--images must be at most {TRAIN_IMAGES}, got {args.images}")
    if args.deprecated_batch_size is not None:
        if args.trials_per_program not in (None, args.deprecated_batch_size):
            raise UsageError(
                f"--batch-size (the old name of --trials-per-program) "
                f"{args.deprecated_batch_size} contradicts --trials-per-program "
                f"{args.trials_per_program}: give --trials-per-program only"
            )
        stderr.write("lrjax: warning: search --batch-size is deprecated: it is "
                     "--trials-per-program now (images per step are --images)\n")
        args.trials_per_program = args.deprecated_batch_size
    if not 0.0 <= args.min_b1 < args.max_b1 < 1.0:
        raise UsageError(f"need 0 <= --min-b1 < --max-b1 < 1, got {args.min_b1}, {args.max_b1}")
    for module, package, extra in (("sklearn", "scikit-learn", "examples"),
                                   ("flax", "flax", "examples")):
        if _missing(module):
            raise UsageError(f"lrjax search needs {package}: pip install 'lrjax[{extra}]'")
    if (args.method in ("tpe", "gp") or args.storage) and _missing("optuna"):
        raise UsageError("--method tpe/gp and --storage need Optuna: pip install 'lrjax[search]'")
    # A bad --plot/--json path fails now, not after the search.
    args.plot = check_output_paths(args.plot, args.json)
    try:
        space = digits_space(args)
    except ValueError as error:  # e.g. --min-lr >= --max-lr, named by the space's check
        raise UsageError(f"bad range: {error}") from error
    if args.storage:
        _open_storage(args, space)
    return space


def default_study_name(args: argparse.Namespace, space: dict) -> str:
    """``lrjax-search-`` and 8 hex digits of what defines the search: the space, objective
    and direction, and the problem (steps, images per step, hidden width, seed)."""
    from lrjax.tuning import storage as storage_module

    definition = storage_module.search_definition(space, OBJECTIVE, "minimize")
    definition["problem"] = {"steps": args.steps, "images": args.images,
                             "hidden": args.hidden, "seed": args.seed}
    return f"{storage_module.DEFAULT_STUDY_NAME}-{storage_module.definition_hash(definition)}"


def _open_storage(args: argparse.Namespace, space: dict) -> None:
    """Open --storage and check its study now, before the problem is built and compiled:
    a bad path or URL, or a study of another search, is a usage error at once."""
    from lrjax.tuning import optuna_bridge

    if args.study_name is None:
        args.study_name = default_study_name(args, space)
    try:
        optuna_bridge.check_storage(args.storage, args.study_name, space=space,
                                    direction="minimize", objective=OBJECTIVE)
    except ValueError as error:
        raise UsageError(f"--storage: {error}") from error
    except ImportError as error:
        raise UsageError(str(error)) from error


def grid_note(space: dict, trials: int) -> str | None:
    """Why ``--method grid`` runs fewer than ``--trials`` trials, or None when it runs them all.

    A full grid has ``k`` points on each of the space's axes, ``k**axes`` in all: the
    largest within ``--trials`` (:func:`lrjax.tuning.space.grid_axes`).
    """
    from lrjax.tuning.space import grid_axes

    axes = grid_axes(space, trials)
    size = len(next(iter(axes.values())))
    runs, count = size**len(axes), len(axes)
    if runs >= trials:
        return None
    bigger = (size + 1) ** count
    return (f"--method grid runs {runs} trials, not --trials {trials}: a full grid has the "
            f"same number of points on each of its {count} axes ({', '.join(axes)}), so "
            f"{size}**{count} = {runs} is the largest within {trials}; the next, "
            f"{size + 1}**{count}, needs --trials {bigger}")


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except ValueError:  # a module set to None in sys.modules (how tests hide it)
        return True


def _progress(stream: TextIO) -> Callable[[int, int], None]:
    interactive = stream.isatty()
    start = time.perf_counter()

    def report(done: int, total: int) -> None:
        filled = int(30 * done / max(total, 1))
        text = (f"search [{'#' * filled}{'-' * (30 - filled)}] {done}/{total} trials "
                f"{time.perf_counter() - start:.1f}s")
        stream.write(("\r" + text + ("\n" if done >= total else "")) if interactive
                     else text + "\n")
        stream.flush()

    return report


def format_table(result: Any, top: int) -> str:
    """The best ``top`` trials, one row each: rank, trial number, hyperparameters, metrics."""
    names = list(result.space)
    metrics = ["val_loss", "val_accuracy", "train_loss"]
    header = ["rank", "trial", *names, *metrics]
    rows = []
    for rank, trial in enumerate(result.top(top), 1):
        cells = [str(rank), str(trial["number"])]
        cells += [f"{trial['params'][n]:.4g}" for n in names]
        cells += ["-" if trial["metrics"].get(m) is None else f"{trial['metrics'][m]:.4f}"
                  for m in metrics]
        rows.append(cells)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def run_search(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """The handler of ``lrjax search``: run the search, print the table, write the files."""
    space = _check(args, stderr)
    import lrjax

    if args.method == "grid":
        note = grid_note(space, args.trials)
        if note is not None:
            stderr.write(f"lrjax: warning: {note}\n")
    train_fn = digits_train_fn(args.steps, args.hidden, args.images, args.seed)
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            # Said above, in the command's own terms.
            warnings.filterwarnings("ignore", message="method='grid' runs")
            result = lrjax.search(
                train_fn, space, num_trials=args.trials, batch_size=args.trials_per_program,
                method=args.method, objective=OBJECTIVE, key=args.seed, storage=args.storage,
                study_name=args.study_name, progress=None if args.quiet else _progress(stderr))
    except (ValueError, ImportError) as error:
        raise UsageError(str(error)) from error
    seconds = time.perf_counter() - start
    failed = sum(t["state"] == "fail" for t in result.trials)
    stdout.write(
        f"lrjax search: {len(result.trials)} trials ({args.method}), {args.steps} AdamW steps "
        f"each on a cosine schedule, digits MLP ({args.hidden} hidden); objective "
        f"{OBJECTIVE} (held-out), minimized; {seconds:.1f}s including compilation"
        + (f"; {failed} failed (NaN/inf)" if failed else "") + "\n")
    if args.storage is not None:
        from lrjax.tuning.storage import describe

        stdout.write(f"study {args.study_name!r} in {describe(args.storage)} (the same command "
                     "resumes it, or shares it when run in several processes)\n")
    stdout.write("\n")
    stdout.write(format_table(result, args.top) + "\n\n")
    best = result.best_params
    if best is None:
        stdout.write("no trial finished with a finite loss\n")
    else:
        stdout.write("best: " + ", ".join(f"{k}={v:.4g}" for k, v in best.items())
                     + f"  ({OBJECTIVE} {result.best_value:.4f})\n")
    # Atomic writes: an interrupted write leaves the old file (or none), never half a file.
    if args.json is not None:
        write_replacing("--json", args.json, lambda file: file.write(result.to_json()), text=True)
        stdout.write(f"wrote {args.json}\n")
    if args.plot is not None:
        form = os.path.splitext(args.plot)[1][1:].lower()
        write_replacing("--plot", args.plot,
                        lambda file: result.plot().savefig(file, format=form, dpi=110))
        stdout.write(f"wrote {args.plot}\n")
    return 0

