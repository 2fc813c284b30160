"""Learning-rate suggestions read off a range-test curve: the rules, the readability check, the vote.

``curve`` (the usable part of a curve), ``rules`` (the peers' rules and the table of every
rule), ``fall_rule`` and ``turn_rule`` (lrjax's default rule on a training and a validation
curve), ``cyclical_bounds`` (Smith's bounds for a cyclical schedule), ``readability_check``
(whether a curve's fall stands out of its noise), ``stability_check`` (whether a
suggestion holds when the curve's noise is drawn again), ``baseline_check`` (whether the
range test got below a constant predictor's loss) and ``vote`` (a rule applied to a whole
:class:`~lrjax.RangeTestResult`: which curve, the seeds' vote).
"""

from lrjax.finder.suggest.baseline_check import NoLearningWarning
from lrjax.finder.suggest.cyclical_bounds import suggest_cyclical_bounds
from lrjax.finder.suggest.fall_rule import suggest_fall
from lrjax.finder.suggest.readability_check import Readability, UnreadableCurveWarning, readability
from lrjax.finder.suggest.rules import (
    DEFAULT_METHOD,
    suggest_lr,
    suggest_minimum,
    suggest_slide,
    suggest_steep,
    suggest_steepest,
    suggest_valley,
)
from lrjax.finder.suggest.stability_check import Stability, UnstableSuggestionWarning
from lrjax.finder.suggest.turn_rule import suggest_turn

__all__ = [
    "suggest_lr",
    "suggest_fall",
    "suggest_turn",
    "suggest_valley",
    "suggest_steepest",
    "suggest_minimum",
    "suggest_slide",
    "suggest_steep",
    "suggest_cyclical_bounds",
    "readability",
    "Readability",
    "UnreadableCurveWarning",
    "Stability",
    "UnstableSuggestionWarning",
    "NoLearningWarning",
]
