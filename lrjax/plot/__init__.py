"""Plots: schedules and range-test curves with matplotlib (``figures``, imported lazily:
``pip install lrjax[plot]``), and a dependency-free text plot for terminals (``terminal``).
"""

from lrjax.plot.figures import plot_range_test, plot_schedule

__all__ = [
    "plot_schedule",
    "plot_range_test",
]
