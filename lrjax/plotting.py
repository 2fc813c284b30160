"""Plots, with matplotlib imported lazily (``pip install lrjax[plot]``).

matplotlib is an optional dependency: importing lrjax never imports it, and each plot
function asks for it through :func:`_require_matplotlib` when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import optax

from lrjax.schedules import schedule_values

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
    """Draws ``schedule`` over counts ``0 .. num_steps - 1``.

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


def _curve_stats(curves: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median, min and max over the leading (seed) axis, ignoring NaN columns quietly."""
    curves = np.asarray(curves, dtype=np.float64).reshape(-1, curves.shape[-1])
    finite = np.isfinite(curves)
    columns = finite.any(axis=0)
    median, low, high = (np.full(curves.shape[-1], np.nan) for _ in range(3))
    masked = np.where(finite, curves, np.nan)[:, columns]
    median[columns] = np.nanmedian(masked, axis=0)
    low[columns] = np.nanmin(masked, axis=0)
    high[columns] = np.nanmax(masked, axis=0)
    return median, low, high


def _sweep_labels(result: Any) -> list[str]:
    """One label per sweep grid point, e.g. ``weight_decay=0.001, b1=0.9``."""
    return [", ".join(f"{n}={v:g}" for n, v in point.items()) for point in result.sweep_points()]


def plot_range_test(result: Any, ax: Axes | None = None) -> Axes:
    """Draws a range test: loss against learning rate on a log axis, suggestions marked.

    One curve: the raw loss (thin) and the smoothed loss. Several seeds: the median
    smoothed loss with a band from the lowest to the highest seed. A sweep: one smoothed
    curve (median over seeds, with its band) per swept value. Every suggestion of
    ``result.suggestions()`` is a dashed vertical line, ``result.cyclical_bounds()`` a
    grey band; the y range stops a little above
    the highest smoothed loss before divergence, so the blow-up does not flatten the curve.

    Args:
      result: a :class:`lrjax.RangeTestResult`.
      ax: the matplotlib Axes to draw into; a new figure's Axes when ``None``.

    Returns:
      The Axes drawn into.

    Example:
      >>> ax = plot_range_test(lrjax.range_test(loss_fn, params, optax.adam, data))  # doctest: +SKIP
      >>> ax.figure.savefig("range_test.png")  # doctest: +SKIP

    References:
      Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017, fig. 3.
    """
    plt = _require_matplotlib()
    if ax is None:
        _, ax = plt.subplots()
    lrs = np.asarray(result.lrs, dtype=np.float64)
    smoothed = np.asarray(result.smoothed_losses, dtype=np.float64)
    seeds = "seed" in result.batch_axes
    groups = smoothed.reshape((-1,) + (smoothed.shape[-2:] if seeds else smoothed.shape[-1:]))
    labels = _sweep_labels(result) if result.sweep else ["smoothed loss"]
    if smoothed.ndim == 1:
        ax.plot(lrs, result.losses, lw=0.8, alpha=0.4, label="loss")
    for group, label in zip(groups, labels):
        median, low, high = _curve_stats(group)
        line = ax.plot(lrs, median, lw=1.8, label=label + (" (median over seeds)" if seeds else ""))[0]
        if seeds:
            ax.fill_between(lrs, low, high, color=line.get_color(), alpha=0.2, lw=0)
    for index, (method, value) in enumerate(result.suggestions().items()):
        ax.axvline(value, ls="--", lw=1, color=f"C{(index + 3) % 10}", label=f"{method} {value:.2g}")
    base_lr, max_lr = result.cyclical_bounds()
    ax.axvspan(base_lr, max_lr, color="0.5", alpha=0.15, lw=0,
               label=f"cyclical bounds {base_lr:.2g}..{max_lr:.2g}")
    before = result.smoothed_before_divergence()
    if np.isfinite(before).any():
        low, high = np.nanmin(before), np.nanmax(before)
        ax.set_ylim(low - 0.05 * (high - low), high + 0.1 * (high - low) + 1e-12)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    ax.legend(fontsize="small")
    return ax
