"""What ``lrjax find`` prints and saves: read off a range-test result once, then formatted."""

from __future__ import annotations

import argparse
import warnings
from typing import Any, NamedTuple, TextIO

import numpy as np

from lrjax.finder.suggest.baseline_check import NoLearningWarning, no_learning_message
from lrjax.finder.suggest.readability_check import UnreadableCurveWarning, noisy_message
from lrjax.finder.suggest.rules import DEFAULT_METHOD
from lrjax.finder.suggest.stability_check import UnstableSuggestionWarning, unstable_message
from lrjax.finder.suggest.vote import noise_factor_of, reads_readable_training, sgd_factor_of
from lrjax.plot.terminal import UNICODE_GLYPHS, loss_limits, rule_label, text_plot

TABLE_ROWS = 8


class Findings(NamedTuple):
    """What is read off the result once and then printed and saved."""

    suggestions: dict[str, float]
    spreads: dict[str, float]
    cyclical_bounds: tuple[float, float]
    search_range: tuple[float, float]  # result.search_space() around the --suggest rule
    curve: np.ndarray  # smoothed loss before divergence (median over seeds), NaN after
    raw_curve: np.ndarray  # the raw loss, the same way
    warnings: list[str]


def _diverged_steps(result: Any) -> np.ndarray:
    """Divergence step of every curve, -1 for a curve that never diverged."""
    if result.diverged_at is None:
        return np.full(result.smoothed_losses.shape[:-1], -1)
    return np.asarray(result.diverged_at)


def _plotted_curve(result: Any, raw: bool = False) -> np.ndarray:
    """Smoothed (or raw) loss up to (not including) each curve's divergence; median over
    curves."""
    before = result.losses_before_divergence() if raw else result.smoothed_before_divergence()
    curves = before.reshape(-1, result.num_steps)
    recorded = np.isfinite(curves).any(axis=0)
    median = np.full(result.num_steps, np.nan)
    median[recorded] = np.nanmedian(curves[:, recorded], axis=0)
    return median


#: What helps a curve too noisy to read, in the command's own options.
CLI_NOISY_ADVICE = "use more --steps, a larger --batch-size or more --seeds"
#: What helps a range test that saw no learning, in the command's own options.
CLI_LEARNING_ADVICE = "use more --steps or a --min-lr .. --max-lr ramp that spends more of them where it learns"


def warning_line(message: Warning | str) -> str:
    """A warning as one clean line: an ``UnreadableCurveWarning`` (an
    ``UnstableSuggestionWarning`` or a ``NoLearningWarning`` too) names the command's
    options that would help (``--steps``, ``--batch-size``, ``--seeds``, ``--max-lr``)."""
    reading = getattr(message, "readability", None)
    if isinstance(message, NoLearningWarning):
        text = no_learning_message(message.share, message.baseline_loss, message.curve,
                                   advice=CLI_LEARNING_ADVICE, floored=message.floored)
    elif isinstance(message, UnstableSuggestionWarning):
        text = unstable_message(message.stability, message.rule, advice=CLI_NOISY_ADVICE)
    elif isinstance(message, UnreadableCurveWarning) and reading is not None:
        text = noisy_message(reading, f"the {message.curve} curve", advice=CLI_NOISY_ADVICE)
    else:
        text = str(message)
    return " ".join(text.split())


def read_findings(result: Any, seeds: int, method: str) -> Findings:
    """Every rule's suggestion, the seeds' spread, the cyclical bounds, the search range
    around ``method``'s suggestion, the curves, and the warnings they raised (each once)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        suggestions = {name: float(value) for name, value in result.suggestions().items()}
        spreads = {name: result.spread(name) for name in suggestions} if seeds > 1 else {}
        bounds = tuple(float(v) for v in result.cyclical_bounds())
        dim = next(iter(result.search_space(suggestions[method]).values()))
    # Every rule says the range test saw no learning; keep the version that says what the
    # reported rule did (fall raises its suggestion to a floor, the peers' rules do not).
    caught = [w for w in caught if not isinstance(w.message, NoLearningWarning)
              or w.message.floored == (method == DEFAULT_METHOD)]
    messages = list(dict.fromkeys(warning_line(w.message) for w in caught))  # unique, in order
    return Findings(
        suggestions, spreads, bounds, (dim.low, dim.high), _plotted_curve(result),
        _plotted_curve(result, True), messages
    )


def _table_rows(curve: np.ndarray) -> list[int]:
    """Up to TABLE_ROWS step indices spread evenly over the recorded (finite) part."""
    recorded = np.flatnonzero(np.isfinite(curve))
    if recorded.size == 0:
        return []
    picks = np.linspace(0, recorded.size - 1, min(TABLE_ROWS, recorded.size))
    return [int(recorded[round(p)]) for p in picks]


def _divergence_line(result: Any) -> str:
    steps = _diverged_steps(result).reshape(-1)
    hit = steps[steps >= 0]
    if hit.size == 0:
        return "the loss did not diverge within the range"
    first = int(hit.min())
    curves = f" ({hit.size} of {steps.size} seeds)" if steps.size > 1 else ""
    return f"diverged at step {first} (lr {result.lrs[first]:.3e}){curves}; later steps skipped"


def can_draw_unicode(stream: TextIO) -> bool:
    """Whether ``stream``'s encoding has the plot's box-drawing characters (cp1252 has not)."""
    try:
        "".join(UNICODE_GLYPHS.values()).encode(getattr(stream, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def format_report(
    result: Any, findings: Findings, args: argparse.Namespace, seconds: float, ascii_only: bool
) -> str:
    """The report on stdout: settings, the terminal plot, a table, divergence, suggestions."""
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
                background=findings.raw_curve,
                labels=("smoothed loss", "raw loss"),
                marks={rule_label(args.suggest): findings.suggestions[args.suggest]},
                y_limits=loss_limits([findings.curve, findings.raw_curve]),
                ascii_only=ascii_only,
                x_label="learning rate",
                y_label=f"training loss{seeds}",
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
        lines.append(f"{rule_label(method):>14}  {value:.3e}{spread}{chosen}")
    factor = sgd_factor_of(result)  # 1 unless the optimizer steps like SGD (log ramp)
    if factor != 1.0:
        lines.append(f"{'':>14}  (fall includes x{factor:g}: {args.optimizer} steps in "
                     "proportion to the gradient)")
    noise = noise_factor_of(result)  # Adamax, AdaBelief: readable curves only
    if noise >= 1.005 and reads_readable_training(result):
        lines.append(f"{'':>14}  (fall includes x{noise:.3g}: {args.optimizer}'s step keeps "
                     f"less of the signal in noise, noise_response "
                     f"{result.settings['noise_response']:g})")
    base_lr, max_lr = findings.cyclical_bounds
    lines.append(f"{'cyclic bounds':>14}  {base_lr:.3e} .. {max_lr:.3e}  (base_lr .. max_lr)")
    low, high = findings.search_range
    lines.append(f"{'search range':>14}  {low:.3e} .. {high:.3e}  (result.search_space(): "
                 "lr/8 .. lr*30, for a few full trainings)")
    return "\n".join(lines)


def json_payload(result: Any, findings: Findings, args: argparse.Namespace) -> dict[str, Any]:
    """The result's own dict (so ``RangeTestResult.from_json`` reads the file back) plus the
    chosen suggestion, the cyclical bounds and the command's settings."""
    command = {key: value for key, value in vars(args).items() if key != "handler"}
    return {
        "suggestion": findings.suggestions[args.suggest],
        "method": args.suggest,
        **result.to_dict(),
        "suggestions": findings.suggestions,
        "cyclical_bounds": list(findings.cyclical_bounds),
        "search_range": list(findings.search_range),
        "command": command,
    }
