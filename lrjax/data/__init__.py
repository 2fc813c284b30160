"""The embedded example problem: a Flax MLP on scikit-learn's bundled digits (``digits``).

Used by the ``lrjax`` command, the examples and the benchmarks; needs ``lrjax[examples]``
when called (importing it does not).
"""

from lrjax.data.digits import DigitsProblem, DigitsSplit, digits_problem, load_digits_split

__all__ = [
    "digits_problem",
    "DigitsProblem",
    "DigitsSplit",
    "load_digits_split",
]
