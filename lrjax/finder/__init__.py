"""The learning-rate range test: one compiled training over a ramp of rates, and its result.

``driver`` (:func:`range_test`: check, plan, run, collect), ``plan`` (validation and the
plan of the programs), ``program`` (the compiled loop), ``result``
(:class:`RangeTestResult`, its suggestions and JSON form), ``optimizer_probe``
(:func:`update_scaling`: whether the optimizer steps like SGD; :func:`noise_response`: how
much of a weak signal its step keeps in noise; the ``fall`` rule uses both) and the ``suggest`` subpackage (the rules that read a learning rate off the curve).
"""

from lrjax.finder import suggest
from lrjax.finder.driver import lr_ramp, range_test
from lrjax.finder.optimizer_probe import noise_response, update_scaling
from lrjax.finder.result import RangeTestResult

__all__ = [
    "range_test",
    "lr_ramp",
    "RangeTestResult",
    "update_scaling",
    "noise_response",
]
