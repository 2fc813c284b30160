"""Plots, with matplotlib imported lazily (``pip install lrjax[plot]``).

matplotlib is an optional dependency: importing lrjax never imports it, and each plot
function asks for it through :func:`_require_matplotlib` when called.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import optax

from lrjax.schedules.classic import schedule_values
from lrjax.plot.terminal import loss_limits, rule_label

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def _require_matplotlib() -> Any:
    """Returns ``matplotlib.pyplot``, or raises an ImportError naming the ``plot`` extra."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError(
            "lrjax's plotting needs matplotlib: install it with `pip install lrjax[plot]`."
        ) from error
    return plt


def plot_schedule(schedule: optax.Schedule, num_steps: int, ax: Axes | None = None) -> Axes:
    """Draws ``schedule`` over counts ``0`` to ``num_steps - 1``.

    Args:
      schedule: any optax schedule accepting an array of counts.
      num_steps: number of steps to draw, an integer ``>= 1``.
      ax: the matplotlib Axes to draw into; a new figure's Axes when ``None``.

    Returns:
      The Axes drawn into (step on x, value on y).

    Example:
      >>> from lrjax import one_cycle
      >>> ax = plot_schedule(one_cycle(0.1, 1000), 1000)  # then ax.figure.savefig(...)
      >>> ax.get_xlabel()
      'step'

    References:
      None: a utility over :func:`lrjax.schedule_values`.
    """
    values = schedule_values(schedule, num_steps)
    plt = _require_matplotlib()
    if ax is None:
        _, ax = plt.subplots()
    ax.plot(np.arange(num_steps), values)
    ax.set_xlabel("step")
    ax.set_ylabel("value")
    return ax


RULE_MARKERS = ("s", "^", "D", "v", "P", "X", "h")
SUGGESTION_COLOR = "#d62728"  # the chosen suggestion's dot and line (red, as fastai's)
OTHER_RULE_COLORS = ("#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
DIVERGED_COLOR = "#7f0000"
LEGEND_INSIDE_MAX = 6  # sweep values whose key still fits inside the axes


class _Group(NamedTuple):
    """The curves drawn as one: a sweep point (or the whole result), over its seeds."""

    label: str
    raw: np.ndarray  # (seeds, steps): NaN after each seed's diverging step
    smoothed: np.ndarray  # same
    val: np.ndarray | None
    diverged: np.ndarray  # (seeds,) step of divergence, -1 for never
    suggestion: float  # the chosen rule's lr: the result's vote over this group's seeds


def _default_method(result: Any) -> str:
    """The rule ``result.suggest()`` uses when given none (the project's default)."""
    parameter = inspect.signature(result.suggest).parameters.get("method")
    default = None if parameter is None else parameter.default
    return default if isinstance(default, str) else "valley"


def _until_divergence(values: np.ndarray, diverged: np.ndarray) -> np.ndarray:
    """``values`` as float64 rows ``(curves, steps)``, NaN AFTER each diverging step.

    The diverging step itself is kept: the plot shows the jump that ended the test.
    """
    rows = np.array(values, np.float64).reshape(len(diverged), -1)
    for row, step in zip(rows, diverged):
        if step >= 0:
            row[step + 1 :] = np.nan
    return rows


def _median(rows: np.ndarray) -> np.ndarray:
    """Median over the rows, NaN where no row has a finite value (quietly)."""
    finite = np.isfinite(rows)
    out = np.full(rows.shape[-1], np.nan)
    columns = finite.any(axis=0)
    out[columns] = np.nanmedian(np.where(finite, rows, np.nan)[:, columns], axis=0)
    return out


def _band(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest row at each step, NaN where no row is finite (quietly)."""
    finite = np.isfinite(rows)
    low = np.where(finite, rows, np.inf).min(axis=0)
    high = np.where(finite, rows, -np.inf).max(axis=0)
    none = ~finite.any(axis=0)
    low[none] = high[none] = np.nan
    return low, high


def _diverged_steps(result: Any) -> np.ndarray:
    """Each curve's divergence step, ``batch_shape``, -1 for never."""
    if result.diverged_at is None:
        return np.full(result.batch_shape, -1)
    return np.asarray(result.diverged_at).reshape(result.batch_shape)


def _sweep_results(result: Any) -> list[Any]:
    """One result per sweep point holding that point's curves (its seeds), so that each
    curve's suggestion is the result's own rule and vote over seeds, exactly."""
    seed_axes = ("seed",) if result.batch_axes[-1:] == ("seed",) else ()
    inner = result.batch_shape[len(result.batch_shape) - len(seed_axes):]
    steps = result.num_steps

    def rows(values: Any) -> Any:
        return None if values is None else np.asarray(values).reshape(-1, *inner, steps)

    losses, smoothed, val = rows(result.losses), rows(result.smoothed_losses), rows(result.val_losses)
    diverged = _diverged_steps(result).reshape(-1, *inner)
    out = []
    for i in range(losses.shape[0]):
        step = diverged[i] if seed_axes else (None if diverged[i] < 0 else int(diverged[i]))
        out.append(dataclasses.replace(
            result, losses=losses[i], smoothed_losses=smoothed[i],
            val_losses=None if val is None else val[i], diverged_at=step, aux=None,
            batch_axes=seed_axes, sweep=None,
        ))
    return out


def _groups(result: Any, method: str) -> list[_Group]:
    """What is drawn as one curve: one group per sweep point (all its seeds), or one
    group holding every curve."""
    members = _sweep_results(result) if result.sweep else [result]
    labels = (
        [", ".join(f"{n}={v:g}" for n, v in p.items()) for p in result.sweep_points()]
        if result.sweep
        else [""]
    )
    groups = []
    for label, member in zip(labels, members):
        diverged = _diverged_steps(member).reshape(-1)
        rows = functools.partial(_until_divergence, diverged=diverged)
        val = None if member.val_losses is None else rows(member.val_losses)
        groups.append(_Group(label, rows(member.losses), rows(member.smoothed_losses), val,
                             diverged, float(member.suggest(method))))
    return groups


def _on_curve(lrs: np.ndarray, curve: np.ndarray, lr: float) -> float:
    """The curve's height at ``lr``, read linearly in log10(lr) as the log axis shows it."""
    finite = np.isfinite(curve)
    if not finite.any() or not lrs[finite][0] <= lr <= lrs[finite][-1]:
        return np.nan
    return float(np.interp(np.log10(lr), np.log10(lrs[finite]), curve[finite]))


def _mark_divergence(ax: Axes, lrs: np.ndarray, group: _Group, color: str, label: str) -> None:
    """An x at the top edge at each diverged curve's lr (the loss there is off the scale)."""
    hit = group.diverged[group.diverged >= 0]
    if hit.size == 0:
        return
    first = lrs[int(hit.min())]
    ax.plot(
        lrs[hit],
        np.full(hit.size, 0.97),
        ls="none",
        marker="x",
        ms=8,
        mew=2,
        color=color,
        transform=ax.get_xaxis_transform(),  # x in data, y as a fraction of the axes
        clip_on=False,
        zorder=6,
        label=label.format(first=first, hit=hit.size, total=group.diverged.size),
    )
    ax.axvline(first, color=color, ls=":", lw=1, zorder=1)


def _draw_single(ax: Axes, result: Any, group: _Group, method: str, show_raw: bool) -> list:
    """One curve (or one curve's seeds): raw, smoothed, validation, every rule's mark."""
    lrs = np.asarray(result.lrs, np.float64)
    seeds = group.raw.shape[0]
    of_seeds = f" (median of {seeds} seeds)" if seeds > 1 else ""
    smoothed = _median(group.smoothed)
    drawn = [smoothed]
    if show_raw:
        raw = _median(group.raw)
        ax.plot(lrs, raw, color="C0", lw=0.9, alpha=0.45, label="raw loss" + of_seeds, zorder=2)
        drawn.append(raw)
    ax.plot(lrs, smoothed, color="C0", lw=2.2, label="smoothed loss" + of_seeds, zorder=3)
    if seeds > 1:
        ax.fill_between(lrs, *_band(group.smoothed), color="C0", alpha=0.18, lw=0, zorder=1,
                        label=f"smoothed loss, lowest to highest of {seeds} seeds")
    if group.val is not None:
        val = _median(group.val)
        ax.plot(lrs, val, color="C1", lw=1.6, ls="--", label="validation loss" + of_seeds,
                zorder=3)
        drawn.append(val)
    suggestions = result.suggestions()
    others = [m for m in suggestions if m != method]
    for index, name in enumerate(others):
        value = suggestions[name]
        ax.plot([value], [_on_curve(lrs, smoothed, value)], ls="none",
                # Shrinking sizes keep two rules at the same lr both visible.
                marker=RULE_MARKERS[index % len(RULE_MARKERS)], ms=max(9 - 0.75 * index, 6),
                mec="black", mew=0.6,
                color=OTHER_RULE_COLORS[index % len(OTHER_RULE_COLORS)], zorder=5,
                label=f"{rule_label(name)}: {value:.2g}")
    chosen = suggestions.get(method, group.suggestion)
    # ``fall`` reads the validation curve when there is one: the dot sits on the curve read.
    read = val if method == "fall" and group.val is not None else smoothed
    ax.axvline(chosen, color=SUGGESTION_COLOR, lw=1, ls="--", alpha=0.8, zorder=2)
    ax.plot([chosen], [_on_curve(lrs, read, chosen)], ls="none", marker="o", ms=10,
            mec="black", mew=1, color=SUGGESTION_COLOR, zorder=7,
            label=f"suggestion ({rule_label(method)}): {chosen:.2g}")
    base_lr, max_lr = result.cyclical_bounds()
    ax.axvspan(base_lr, max_lr, color="C2", alpha=0.1, lw=0, zorder=0,
               label=f"cyclical bounds {base_lr:.2g} to {max_lr:.2g}")
    label = ("diverged at lr {first:.2g}" if seeds == 1
             else "diverged: {hit} of {total} seeds, first at lr {first:.2g}")
    _mark_divergence(ax, lrs, group, DIVERGED_COLOR, label)
    return drawn


def _draw_sweep(ax: Axes, result: Any, groups: list[_Group], method: str,
                show_raw: bool) -> list:
    """One smoothed curve per sweep point, each with its own suggestion dot and band."""
    lrs = np.asarray(result.lrs, np.float64)
    drawn = []
    colors = ([f"C{i}" for i in range(len(groups))] if len(groups) <= 10 else
              [_require_matplotlib().cm.viridis(i / (len(groups) - 1)) for i in range(len(groups))])
    for index, (group, color) in enumerate(zip(groups, colors)):
        smoothed = _median(group.smoothed)
        drawn.append(smoothed)
        if show_raw:
            raw = _median(group.raw)
            ax.plot(lrs, raw, color=color, lw=0.7, alpha=0.3 if len(groups) <= 4 else 0.15,
                    zorder=2)
            drawn.append(raw)
        ax.plot(lrs, smoothed, color=color, lw=2, zorder=3,
                label=f"{group.label}: {rule_label(method)} {group.suggestion:.2g}")
        if group.raw.shape[0] > 1:
            ax.fill_between(lrs, *_band(group.smoothed), color=color, alpha=0.15, lw=0,
                            zorder=1)
        if group.val is not None:
            val = _median(group.val)
            ax.plot(lrs, val, color=color, lw=1.2, ls="--", zorder=3)
            drawn.append(val)
        # Later dots are smaller, so that dots at the same lr stay visible as rings.
        ax.plot([group.suggestion], [_on_curve(lrs, smoothed, group.suggestion)], ls="none",
                marker="o", ms=max(12 - 2 * index, 5), mec="black", mew=1, color=color,
                zorder=7 + index / len(groups))
        _mark_divergence(ax, lrs, group, color, "_nolegend_")
    # Key entries for what the per-curve styles mean (drawn off-data, legend only).
    ax.plot([], [], ls="none", marker="o", ms=9, mec="black", color="0.6",
            label=f"suggestion ({rule_label(method)}) of each curve")
    if any(group.val is not None for group in groups):
        ax.plot([], [], color="0.4", ls="--", label="validation loss")
    if any((group.diverged >= 0).any() for group in groups):
        ax.plot([], [], ls="none", marker="x", mew=2, color="0.3", label="diverged")
    return drawn


def plot_range_test(result: Any, ax: Axes | None = None, *, method: str | None = None,
                    title: str | None = None, show_raw: bool = True) -> Axes:
    """Draws a range test: loss against learning rate (log axis), the suggestion marked.

    One curve: the raw loss (thin) and the smoothed loss (thick), the validation loss
    (dashed) when recorded, a red dot on the smoothed curve at the chosen suggestion
    (``method``), a marker of its own for every other rule (the minimum rule is labelled
    ``minimum/10``: its lr is a tenth of the minimum's), ``result.cyclical_bounds()`` as a
    band, and an x at the top where the loss diverged. Seeds: the median curves with a
    band from the lowest to the highest seed's smoothed loss. A sweep: one curve per swept
    value, each with its own suggestion dot in its colour. The y range
    (:func:`lrjax.plot.terminal.loss_limits`) runs from the lowest loss drawn, raw included,
    to the highest before each curve's minimum, so the blow-up does not flatten the part
    the answer is read from.

    Args:
      result: a :class:`lrjax.RangeTestResult`.
      ax: the matplotlib Axes to draw into; a new figure's Axes when ``None``.
      method: the suggestion rule to mark as *the* suggestion; default the rule
        ``result.suggest()`` uses.
      title: the title; default says the suggestion (or the swept names).
      show_raw: draw the raw (unsmoothed) loss too.

    Returns:
      The Axes drawn into.

    Example:
      >>> from matplotlib.figure import Figure
      >>> from lrjax import RangeTestResult
      >>> lrs = np.logspace(-5, 0, 50)
      >>> losses = 2.0 - np.tanh(np.log10(lrs) + 2.5)  # falls around lr 3e-3
      >>> result = RangeTestResult(lrs, losses, losses, diverged_at=None)
      >>> ax = plot_range_test(result, ax=Figure().subplots(), method="valley")
      >>> ax.get_title() == f"LR range test: suggested lr {result.suggest('valley'):.2g} (valley)"
      True
      >>> ax.figure.savefig("range_test.png")  # doctest: +SKIP

    References:
      Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017, fig. 3;
      fastai ``lr_find`` and torch-lr-finder mark the suggestion with a dot on the curve.
    """
    plt = _require_matplotlib()
    method = _default_method(result) if method is None else method
    groups = _groups(result, method)
    if ax is None:  # wider for a key beside the axes
        _, ax = plt.subplots(figsize=(9.5 if len(groups) > LEGEND_INSIDE_MAX else 7.5, 4.8))
    ax.set_xscale("log")
    if result.sweep:
        drawn = _draw_sweep(ax, result, groups, method, show_raw)
        default_title = f"LR range test: sweep over {', '.join(result.sweep)}"
    else:
        drawn = _draw_single(ax, result, groups[0], method, show_raw)
        default_title = (
            f"LR range test: suggested lr {groups[0].suggestion:.2g} ({rule_label(method)})"
        )
    limits = loss_limits(drawn)
    if limits is not None:
        ax.set_ylim(*limits)
    ax.set_xlim(float(result.lrs[0]), float(result.lrs[-1]))
    ax.set_title(default_title if title is None else title)
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("loss")
    ax.grid(True, which="major", color="0.9", lw=0.8, zorder=0)
    if len(groups) > LEGEND_INSIDE_MAX:  # a long sweep's key would cover its curves
        ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  borderaxespad=0.0)
    else:  # low lr and low loss: the corner a range test's curve leaves empty
        ax.legend(fontsize="small", loc="lower left", framealpha=0.9)
    return ax
