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
      >>> ax = plot_schedule(lrjax.one_cycle(0.1, 1000), 1000)
      >>> ax.figure.savefig("one_cycle.png")
    """
    values = schedule_values(schedule, num_steps)
    plt = _require_matplotlib()
    if ax is None:
        _, ax = plt.subplots()
    ax.plot(np.arange(num_steps), values)
    ax.set_xlabel("step")
    ax.set_ylabel("value")
    return ax
