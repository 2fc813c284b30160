"""Benchmark: how well each suggestion rule's learning rate trains, against a learning-rate grid.

Problems (``benchmarks/finder_problems.py``; bundled scikit-learn data and synthetic
tasks only): MLPs, linear models and CNNs on tabular data, a BatchNorm + dropout CNN and
MLP (run through the range test's ``state=`` / ``stochastic=True``), small transformers
(plain JAX, bidirectional attention) on sort / reverse, an LSTM on a memory task and a
GRU on the adding problem; Adam, AdamW, SGD, SGD with momentum or Nesterov, SGDW,
RMSProp, Lion, Adagrad, AdaBelief, Adamax and NAdam; trainings of 2-10x the range
test's 100 steps; the suggestion used as a constant rate, as the PEAK of a
one-cycle schedule (``lrjax.one_cycle(lr, train_steps)``) or as the start of a cosine
decay to 0 (the ``schedule`` field).

**The two halves.** The problems were split ONCE into a development half (rules may be
tuned on it) and a held-out half (rules are checked on it, never tuned on it). The split
was fixed when the problems were written, before any of the new problems had been run,
and must not be changed after looking at results (add new problems to either half
instead, decided before running them). It is balanced by kind: each half has a
transformer, a recurrent net, a BatchNorm + dropout model, one-cycle and cosine problems,
trainings of 5-10x the range test, and adaptive and SGD-family optimizers.

* **dev** (10 + 4): digits-mlp-adam, digits-cnn-adamw, cancer-logreg-sgd, wine-mlp-momentum,
  diabetes-mlp-adam-overfit, synthetic-linreg-sgd (the six lrjax's rules were chosen on),
  sort-transformer-adam (250 steps), first-lstm-momentum-cosine (400, cosine),
  digits-bnmlp-dropout-onecycle (500, one-cycle, state + dropout),
  synthclass-mlp-adamw-cosine (1000, cosine).
* **heldout** (10 + 4): iris-mlp-adamw, digits-logreg-momentum, cancer-mlp-adam,
  diabetes-linreg-sgd (the four added after the rules were fixed),
  reverse-transformer-adamw-onecycle (500, one-cycle), adding-gru-adam (300),
  digits-bncnn-dropout-momentum (300, state + dropout), digits-mlp-momentum-onecycle (600,
  one-cycle), cancer-mlp-adam-cosine (800, cosine), friedman-mlp-momentum (1000).
* **third batch** (4 + 4), written and split by kind (one of each per half) before any
  of them ran or any rule changed, after the held-out half had shown long constant-rate
  trainings at the stability edge, a GRU with Adam and long schedules on small data:
  dev: friedman3-mlp-momentum (1000), moons-mlp-momentum-long (800), first-gru-adam
  (300), circles-mlp-adam-cosine (800, cosine, 200 rows); heldout:
  regression-mlp-nesterov-long (1000), synthclass-mlp-momentum-long (800),
  adding-lstm-adam (300), wine-mlp-adamw-cosine (600, cosine, 90 rows).
* **fourth batch** (held-out only, 4), written and committed before any of it ran, as a
  fresh check of the optimizer-class factor chosen on the development half after all of
  the first 28 problems had been seen: gradient-proportional optimizers at a constant
  rate on model kinds the factor was not chosen on: digits-cnn-momentum (400),
  cancer-mlp-sgdw-nesterov (400, lrjax.sgdw), sort-transformer-momentum (400),
  first-gru-momentum (300).
* **fifth batch** (3 + 3), SGD-family optimizers used as the PEAK of a schedule, written
  and split before any of it ran, to decide whether ``peak_lr()`` should carry the SGD
  factor (the development half had one SGD schedule, the cosine LSTM): dev:
  digits-mlp-momentum-cosine (400), cancer-logreg-sgd-onecycle (300),
  moons-mlp-nesterov-cosine (600); heldout: wine-mlp-momentum-onecycle (300),
  diabetes-linreg-sgd-cosine (400), synthclass-mlp-sgdw-onecycle (500).
* **sixth batch** (held-out only, 6), written and committed before any of it ran, with
  no rule changed since the fifth: an out-of-sample check of the rules and of the
  suggestions guide's search recipe (``--search``; its range lr/8..lr*30 was read off
  the first 38 problems): hastie-mlp-adam-onecycle (600), friedman2-mlp-adamw-long (800),
  blobs-mlp-rmsprop (300, RMSProp), digits-cnn-momentum-onecycle (300),
  adding-gru-momentum-cosine (400), reverse-transformer-lion (300, Lion). Its run is
  saved apart (``benchmarks/finder_quality_batch6.json``).
* **seventh batch** (held-out only, 6), written and committed before any of it ran, with
  no rule changed since the fifth: an out-of-sample check of
  ``RangeTestResult.search_space()`` (the search recipe's range) and of the rules:
  sort-transformer-adamw-cosine (400), first-lstm-adam-onecycle (300),
  digits-bncnn-dropout-adam-cosine (300, state + dropout), quantiles-mlp-adagrad (400,
  Adagrad), friedman1-mlp-adabelief-long (800, AdaBelief), digits-mlp-sgd-onecycle (500).
  Its run is saved apart (``benchmarks/finder_quality_batch7.json``).
* **eighth batch** (held-out only, 6), written and committed before any of it ran, with
  no rule changed: an out-of-sample check of the search's pick (``--pick mean`` against
  ``--pick worst``): sort-transformer-momentum-onecycle (400), adding-lstm-momentum-long
  (600), digits-bnmlp-dropout-adamw-long (800, state + dropout), circles-mlp-adamax (400,
  Adamax), friedman3-mlp-nadam-onecycle (600, NAdam), cancer-mlp-rmsprop-cosine (400, 100
  validation rows). Saved apart (``benchmarks/finder_quality_batch8.json``).
* **ninth batch** (development only, 8), written and committed before any of it ran,
  after the seventh and eighth batches put fastai's ``slide`` ahead of the default call
  on optimizers the development half did not hold: moons-mlp-adabelief (400),
  digits-mlp-rmsprop-long (800), reverse-transformer-momentum-cosine (400),
  friedman1-mlp-nadam-long (800), synthclass-mlp-adamax-onecycle (500),
  digits-cnn-adagrad (300), adding-gru-rmsprop (300), sort-transformer-adabelief-onecycle
  (400). Rules for those optimizers may be tuned on it. Saved apart
  (``benchmarks/finder_quality_batch9.json``).
* **tenth batch** (held-out only, 6), written and committed with the ninth, before either
  ran: the check of whatever the ninth leads to: first-gru-nadam-cosine (400),
  cancer-mlp-adabelief (300), digits-bncnn-dropout-rmsprop (300, state + dropout),
  quantiles-mlp-adamax-long (800), reverse-transformer-momentum-long (800),
  diabetes-mlp-adagrad-onecycle (400, 60 validation rows). Saved apart
  (``benchmarks/finder_quality_batch10.json``).
* **eleventh batch** (held-out only, 6), written and committed before any of it ran,
  after the ninth batch's two rule changes and the search's plateau pick had been fixed on
  the development half and checked on the 45 held-out problems: a fresh check of both:
  digits-mlp-adamax (400), moons-mlp-rmsprop-onecycle (500), sort-transformer-nadam-cosine
  (400), first-lstm-adabelief (300), digits-bnmlp-dropout-lion-onecycle (400, state +
  dropout, Lion), friedman2-mlp-adagrad-long (800). Saved apart
  (``benchmarks/finder_quality_batch11.json``).
* **twelfth batch** (development only, 6) and **thirteenth batch** (held-out only, 6),
  written and committed together before either ran, for adaptive optimizers whose step
  shrinks differently from Adam's once the gradient is mostly noise (Adamax, AdaBelief,
  Lion), of which the development half held three problems and no Lion:
  synthclass-mlp-adamax-long (800), sort-transformer-adamax-cosine (400),
  digits-cnn-adabelief-long (600), circles-mlp-lion (400), adding-gru-lion-cosine (400),
  friedman1-mlp-lion-long (800); held-out moons-mlp-adamax (400),
  first-gru-adamax-onecycle (400), synthclass-mlp-adabelief-cosine (500),
  adding-lstm-adabelief-long (800), digits-cnn-lion (300),
  reverse-transformer-lion-onecycle (400). Saved apart
  (``benchmarks/finder_quality_batch12.json``, ``..._batch13.json``).
* **fourteenth batch** (held-out only, 6), written and committed before any of it ran,
  after the thirteenth batch failed the noise factor as first fixed (on every curve): the
  check of the revised rule (readable curves only), half of it with noisy curves:
  adding-gru-adabelief-long (800, batch 16), first-lstm-adamax-cosine (400),
  friedman3-mlp-adamax-long (800, batch 16), digits-bncnn-dropout-adabelief (300),
  sort-transformer-adabelief-long (800), hastie-mlp-adamax-onecycle (400). Saved apart
  (``benchmarks/finder_quality_batch14.json``).
* **fifteenth batch** (development only, 6) and **sixteenth batch** (held-out only, 6),
  written and committed together before either ran: slow nonlinear classification with a
  validation batch (the held-out hastie problems' careful calls read 10-100x below their
  best rate; the development half held no such problem): hastie-mlp-nadam (500),
  hastie-mlp-momentum-cosine (600), checker-mlp-adam-onecycle (600, a 2-D checkerboard),
  quantiles8-mlp-adamw-long (800), clusters-mlp-rmsprop-onecycle (500), hastie-mlp-adamax
  (400); held-out hastie-mlp-adamw-cosine (500), hastie-mlp-nesterov-long (800),
  checker-mlp-adabelief (500), quantiles8-mlp-adam-onecycle (500),
  clusters-mlp-nadam-cosine (500), checker-mlp-momentum-long (800). Saved apart
  (``benchmarks/finder_quality_batch15.json``, ``..._batch16.json``).
* **seventeenth batch** (held-out only, 8), written and committed before any of it ran:
  the check of the suggestion-stability warning chosen on the development half:
  hastie-mlp-rmsprop-onecycle (500), checker-mlp-nadam-long (800),
  quantiles8-mlp-momentum-cosine (500), clusters-mlp-adam (400),
  sort-transformer-momentum-cosine (400), first-lstm-rmsprop-long (800),
  digits-cnn-adamax-onecycle (400), digits-bnmlp-dropout-nadam (400, state + dropout).
  Saved apart (``benchmarks/finder_quality_batch17.json``).
* **eighteenth batch** (4 + 4), written, split and committed before any of it ran:
  optimizers that step like SGD whose training curves may be too noisy to read, where the
  development half held no problem that the SGD factor on the noisy-curve fallback moves:
  dev: hastie-mlp-momentum-long (800), adding-gru-nesterov-long (800), clusters-mlp-sgd
  (600, plain SGD), first-gru-nesterov-long (800); heldout: hastie-mlp-momentum-onecycle
  (500), adding-lstm-nesterov (600), checker-mlp-nesterov-long (800),
  digits-cnn-nesterov-long (600, batch 32). Saved apart
  (``benchmarks/finder_quality_batch18.json``).
* **nineteenth batch** (held-out only, 8), written and committed before any of it ran:
  the check of the validation peak floored at the training peak (``peak_lr()``), chosen
  on the development half; every problem a schedule: moons-mlp-adam-onecycle (500),
  checker-mlp-adamw-cosine (600), sort-transformer-adam-onecycle (400),
  first-gru-rmsprop-cosine (500), digits-cnn-adamw-cosine (400),
  clusters-mlp-nadam-onecycle (500), hastie-mlp-nadam-cosine (500),
  digits-bnmlp-dropout-momentum-onecycle (400, state + dropout). Saved apart
  (``benchmarks/finder_quality_batch19.json``).
* **twentieth batch** (held-out only, 8), written and committed before any of it ran:
  the check of the no-learning warning (``range_test(..., baseline_loss=)``), chosen on the
  development half: hastie-mlp-adagrad-cosine (500), checker-mlp-rmsprop-long (1000),
  clusters-mlp-lion-onecycle (500), quantiles-mlp-adamax (600), moons-mlp-sgd-long (800),
  reverse-transformer-adamw (300), first10-lstm-adam-onecycle (500),
  friedman1-mlp-rmsprop-long (800). Saved apart (``benchmarks/finder_quality_batch20.json``).
* **twenty-first batch** (held-out only, 8), written and committed before any of it ran:
  the check of the no-learning floor (``fall`` and ``peak_lr()`` at least fastai's
  ``minimum`` where that warning fires), chosen on the development half:
  hastie-mlp-lion-long (1000), checker-mlp-adagrad-onecycle (600),
  quantiles-mlp-nesterov-long (800), clusters-mlp-adabelief-onecycle (500),
  hastie-mlp-rmsprop-cosine (600), digits-cnn-rmsprop-cosine (400),
  first-gru-adamw-onecycle (400), friedman2-mlp-nadam-cosine (600). Saved apart
  (``benchmarks/finder_quality_batch21.json``).
* **twenty-second batch** (held-out only, 8), written and committed before any of it ran:
  the check of the warned-reading divisor (``fall`` and ``peak_lr()`` on a result without
  a validation curve whose training curve is too noisy to read or whose suggestion is
  unstable: the reading divided by 3), chosen on the development half. It failed its
  criterion and the divisor was not taken (``docs/benchmarks/finder_quality.md``):
  adding-lstm-rmsprop-cosine (400, batch 16), first-gru-lion-long (600),
  hastie-mlp-sgd-long (800), checker-mlp-lion-cosine (600), quantiles8-mlp-rmsprop (500),
  friedman3-mlp-adam-long (800, batch 16), clusters-mlp-momentum-onecycle (500),
  sort-transformer-nesterov-long (600). Saved apart
  (``benchmarks/finder_quality_batch22.json``).

For each problem, on one fixed train/validation/test split:

1. **Truth.** Train at every rate of a log grid (``--grid`` points from 1e-5 to 10; 25 by
   default: 4.2 per decade, neighbours 1.78x apart) used as the schedule's constant or
   peak, for the problem's ``train_steps`` steps from ``--train-seeds`` initialisations (4);
   all of it is ONE compiled program (``jit(vmap(vmap(train)))`` over rates and seeds;
   stateful problems thread their state and a fresh dropout key each step). The score of
   a rate is the test loss averaged over the seeds.
2. **Curves.** Two range tests on the train part (defaults ``min_lr=1e-7``,
   ``max_lr=10``, 100 steps, a constant-rate ramp whatever the problem's schedule): the
   *default call* (``range_test(loss_fn, params, optimizer, data)``) and the *careful
   call* (``val_data`` = a held-out validation batch, ``num_seeds=3`` with ``init_fn``,
   ``baseline_loss`` = the constant predictor's loss on that batch: the train class
   frequencies' cross-entropy, the targets' squared error about the train mean; runs
   saved before that argument get it when re-read).
3. **Suggestions.** lrjax's rule is read plainly (``suggest()``) and with the
   training-length hint ``suggest(train_steps=...)`` on both; the peers' rules (fastai's
   ``valley``, ``slide``, ``steep``, ``minimum``, torch-lr-finder's ``steepest``: lrjax's
   faithful implementations, tested equal to the peers' own functions in
   tests/test_fastai_parity.py) read both results as ``RangeTestResult.suggest`` does
   (smoothed TRAINING curves; per seed, lower median). Each suggested rate is trained
   exactly as the grid was (the same compiled program, padded to the grid's length). Every
   warning a rule emits is recorded.

**Quality** of a rate = the share of the best achievable reduction of the test loss
over the trivial predictor: ``(L0 - L) / (L0 - L_best)``, ``L`` its test loss
(cross-entropy, per token for the sequence-to-sequence tasks; MSE for regression),
``L_best`` the best grid rate's, ``L0`` the trivial predictor's (train class frequencies;
the train mean). 1 is the grid's best (a suggestion between grid points may score a
little above 1), 0 is no better than the prior (floored there; a diverged run scores 0).
Tables give per problem and per half the worst and the geometric mean (qualities floored
at 0.01 for the mean). A ``W`` after a quality: that ``suggest()`` call warned.

**Main table columns:** ``lrjax`` = the default call's ``suggest()`` (what a user who
passes nothing gets); ``lrjax careful`` = the careful call's ``suggest(train_steps=...)``;
``valley``, ``slide``, ``steepest`` = the peers on the default call (fastai and
torch-lr-finder users record one training curve). Full tables (every rule, both calls)
follow. ``noise/fall``: the default call's raw training loss, std of its residual around
a centred moving median (9 steps) up to that median's minimum, over the fall of that median from
its start (median of the first 5 steps) to its minimum; > ~0.3 is a curve hard to read.

**Cheap rule development.** ``--save FILE.json`` stores per problem both calls' curves
(``RangeTestResult.to_dict``: lrs, losses, smoothed, val losses, diverged_at, per seed),
the grid rates, scores and qualities, the trained suggestions and the metadata.
``--rescore FILE.json`` rebuilds the results (``RangeTestResult.from_dict``), reads every
rule with the CURRENT lrjax code, and scores each suggestion by linear interpolation of
the grid's quality in log10(lr) (clamped to the grid's ends): an APPROXIMATION to
training it (the grid is 1.78x coarse; a full run prints the largest gap between
interpolated and trained qualities of its own suggestions). It prints the same tables in
seconds, without training. ``--rescore FILE.json --retrain`` re-reads the rules the same
way and TRAINS their suggestions (the saved grid stays the truth; about half a full run):
the numbers the docs page reports for a rule change, without retraining the grid.

**Ceiling of a rule ``lr = c x landmark``.** Every report ends its summary with the best
constant multiple of each landmark (lrjax's and valley's readings, the careful call's
validation and training minima, its divergence point), one constant for constant rates
and one for schedule peaks, FITTED ON ALL PROBLEMS (both halves): an upper bound on what
any correction of that form could score, not a rule (``multiple_ceiling``).
``benchmarks/finder_ceiling.py`` goes further: a correction LEARNED from 24 features of the
saved curves, scored on problems it was not fitted on (leave-one-out).

**Short probe** (``--rescore FILE --probe 0.25``): would a short training choose better
than the careful suggestion? Multiples x1/16 .. x64 of it, each trained a quarter of the
planned steps, the best validation loss picked (``short_probe``). A measurement, not a
rule (docs/guides/suggestions.md quotes it).

**Search around the suggestion** (``--rescore FILE --search 8``): the suggestions guide's
recipe when a few full trainings are affordable. 8 rates from lr/8 to lr*30 around the
careful suggestion (scrambled Sobol in log-rate), each trained the planned steps (2 seeds)
and scored on the validation part, the lowest validation loss picked (``search_around``;
``--pick worst``: by the worse seed, what ``make_train_fn(seed_reduce="max")`` reports;
``--pick plateau``: the worse seeds' plateau middle, ``SearchResult.plateau_trial``, with
the careful call's first validation loss as the untrained reference;
``--search-call default``: around the default call's suggestion). A measurement of the
recipe, not a rule.

**Measurement noise.** The truth is the mean test loss of 4 initialisations. Where a
problem's training is unreliable that mean is a lottery: on the cosine LSTM, 15 of 18
peaks from 0.15 to 0.40 (1.06x apart) have one of their 4 runs fail (test loss above 0.5,
up to the trivial 2.08), and the quality jumps between 0.66 and 1.00 from one rate to the
next (a 25-rate scan from 0.10 to 0.42; local means about 0.86). A rule reading inside such a range scores
what the lottery gives; the grid's best there is the luckiest of its rates.
``--rescore FILE --repeat 4`` measures it per problem: the saved grid's rates and the
lrjax suggestions trained again with 4 fresh seeds and scored against that fresh grid's
best (``repeatability``); a miss that holds with fresh seeds is the rule's, one that does
not is the seeds'.

Usage:
    python benchmarks/finder_quality.py [--quick] [--half dev|heldout|all] [--holdout]
        [--only NAME ...] [--json out.json] [--save curves.json] [--markdown]
    python benchmarks/finder_quality.py --rescore curves.json [--retrain] [--half ...]
        [--only ...] [--probe FRACTION] [--search TRIALS [--pick mean|worst|plateau]
        [--pick-seeds N] [--search-call careful|default]] [--repeat SEEDS]

``--holdout`` = ``--half heldout`` (default ``all``: both halves, each reported). The
full run took 12 minutes on the 2-core Xeon VM (``--retrain`` trains half as much; it took
as long with the cores shared by other jobs); ``--quick`` (13 rates, 1 training seed, no CNNs) a fraction of it.
``benchmarks/finder_quality_baseline.json`` holds the full run's curves and 4-seed grids (the
first 20 problems and the third batch run separately with the same code, merged, then
``--rescore --retrain --save`` with the current rules).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import platform
import re
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import lrjax
from lrjax.finder.suggest.curve import truncated_mean
from lrjax.finder.optimizer_probe import optimizer_settings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from finder_problems import DEV, HELDOUT, Problem, make_problems  # noqa: E402

__all__ = ["Problem", "make_problems", "main"]

RANGE_STEPS = 100
CAREFUL_SEEDS = 3
GRID_LOW, GRID_HIGH = 1e-5, 10.0
HALVES = (DEV, HELDOUT)
CALLS = ("default", "careful")
DEFAULT_RULE = "lrjax default (fall; peak_lr for schedules)"
HINT_RULE = "lrjax fall, train_steps hint (peak_lr for schedules)"
# The main table: (column label, call, rule).
MAIN_COLUMNS = (("lrjax", "default", DEFAULT_RULE), ("lrjax careful", "careful", HINT_RULE),
                ("valley", "default", "fastai valley"), ("slide", "default", "fastai slide"),
                ("steepest", "default", "torch-lr-finder steepest"))


# --- truth: the vmapped grid ---------------------------------------------------------------
def make_trainer(problem: Problem) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """``scores(lrs (G,), keys (R,)) -> (G, R)``: ONE compiled program for every rate and seed.

    A rate is the schedule's constant or peak (``problem.lr_schedule``). Stateful problems
    thread their state and draw dropout masks from ``fold_in(fold_in(key, 1), step)``.
    """
    batches = problem.batches(problem.train_steps, seed=1)
    steps = jnp.arange(problem.train_steps)

    def train_one(lr: jax.Array, key: jax.Array) -> jax.Array:
        params = problem.init_fn(key)
        model_state = problem.init_state() if problem.stateful else None
        dropout_key = jax.random.fold_in(key, 1)
        opt = problem.optimizer(learning_rate=problem.lr_schedule(lr))

        def step(carry: tuple, inputs: tuple) -> tuple:
            params, model_state, opt_state = carry
            t, batch = inputs
            if problem.stateful:
                loss = functools.partial(problem.loss_state, key=jax.random.fold_in(dropout_key, t))
                grads, model_state = jax.grad(loss, has_aux=True)(params, model_state, batch)
            else:
                grads = jax.grad(problem.loss_fn)(params, batch)
            updates, opt_state = opt.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), model_state, opt_state), None

        (params, model_state, _), _ = jax.lax.scan(
            step, (params, model_state, opt.init(params)), (steps, batches))
        return problem.score(params, model_state)

    return jax.jit(jax.vmap(jax.vmap(train_one, (None, 0)), (0, None)))


# --- the range tests -------------------------------------------------------------------------
def range_tests(problem: Problem) -> tuple[lrjax.RangeTestResult, lrjax.RangeTestResult]:
    """The default call and the careful call (val_data, 3 seeds with init_fn, and the
    constant predictor's validation loss as ``baseline_loss``)."""
    data = problem.batches(RANGE_STEPS, seed=0)
    params = problem.init_fn(jax.random.key(0))
    if problem.stateful:
        extra = {"state": problem.init_state(), "stochastic": True}
        loss_fn = problem.loss_state
        careful_extra = {**extra, "eval_fn": problem.eval_state}
    else:
        extra, careful_extra, loss_fn = {}, {}, problem.loss_fn
    default = lrjax.range_test(loss_fn, params, problem.optimizer, data, **extra)
    careful = lrjax.range_test(loss_fn, None, problem.optimizer, data, init_fn=problem.init_fn,
                               num_seeds=CAREFUL_SEEDS, val_data=problem.val_batch(),
                               baseline_loss=problem.baseline_loss(), **careful_extra)
    return default, careful


def rules(train_steps: int | None = None, schedule: str = "constant"
          ) -> dict[str, Callable[[lrjax.RangeTestResult], float]]:
    """Rule name -> ``result -> lr``: lrjax's default and the peers' rules.

    lrjax's rule is read as a user would for the problem's schedule: a constant-rate
    training gets ``suggest()`` and, with ``train_steps`` (a careful user knows how long
    they will train), ``suggest(train_steps=...)``; a one-cycle or cosine schedule's peak
    gets ``peak_lr()`` in both columns (the hint is for constant rates). The peers' rules
    are read the same way for every problem (they have no peak form).
    """
    if schedule == "constant":
        default = lambda result: result.suggest()  # noqa: E731
        hinted = (None if train_steps is None else
                  (lambda result: result.suggest(train_steps=train_steps)))
    else:
        default = hinted = lambda result: result.peak_lr()  # noqa: E731
    out: dict[str, Callable[[lrjax.RangeTestResult], float]] = {DEFAULT_RULE: default}
    if hinted is not None:
        out[HINT_RULE] = hinted
    for method in ("valley", "slide", "steep", "minimum"):
        out[f"fastai {method}"] = functools.partial(_read, method=method)
    out["torch-lr-finder steepest"] = functools.partial(_read, method="steepest")
    return out


def _read(result: lrjax.RangeTestResult, method: str) -> float:
    return result.suggest(method)


def read_rules(results: dict[str, lrjax.RangeTestResult], train_steps: int,
               schedule: str = "constant") -> tuple[dict[str, dict[str, float]], dict[str, dict[str, list[str]]]]:
    """Every rule on every call: suggestions and the warnings each emitted."""
    suggestions: dict[str, dict[str, float]] = {}
    warned: dict[str, dict[str, list[str]]] = {}
    for call, result in results.items():
        suggestions[call], warned[call] = {}, {}
        for name, rule in rules(train_steps, schedule).items():
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                suggestions[call][name] = float(rule(result))
            warned[call][name] = [str(w.message) for w in caught]
    return suggestions, warned


def noise_over_fall(result: lrjax.RangeTestResult, window: int = 9) -> dict[str, float]:
    """Per curve: std of the raw loss around its centred moving median, its fall, their ratio.

    Read on the raw training losses before divergence, the residual up to the median's
    minimum (at least 18 steps); medians over curves.
    """
    rows = np.asarray(result.losses_before_divergence(), np.float64).reshape(-1, result.num_steps)
    out = []
    for row in rows:
        row = row[np.isfinite(row)]
        if row.size < 2 * window:
            out.append((np.nan, np.nan, np.nan))
            continue
        half = window // 2
        median = np.array([np.median(row[max(0, i - half) : i + half + 1]) for i in range(row.size)])
        low = int(np.argmin(median))  # the falling part: the rise before divergence is signal
        noise = float(np.std((row - median)[: max(low + 1, 2 * window)]))
        fall = float(np.median(row[:5]) - median[low])
        out.append((noise, fall, noise / fall if fall > 0 else np.inf))
    noise, fall, ratio = np.median(np.asarray(out), axis=0)
    return {"noise": float(noise), "fall": float(fall), "ratio": float(ratio)}


def interpolated_quality(grid_lrs: np.ndarray, grid_quality: np.ndarray, lr: float) -> float:
    """Quality at ``lr`` by linear interpolation of the grid's in log10(lr), clamped at the ends."""
    return float(np.interp(math.log10(max(lr, 1e-30)), np.log10(grid_lrs), grid_quality))


@dataclasses.dataclass
class Outcome:
    meta: dict
    grid_lrs: np.ndarray
    grid_scores: np.ndarray
    grid_quality: np.ndarray
    best: float
    suggestions: dict[str, dict[str, float]]  # call -> rule -> lr
    qualities: dict[str, dict[str, float]]
    warned: dict[str, dict[str, list[str]]]
    noise: dict[str, dict[str, float]]  # call -> noise / fall / ratio
    seconds: float
    curves: dict[str, dict] | None = None  # call -> RangeTestResult.to_dict()
    interpolation_gap: float | None = None

    @property
    def name(self) -> str:
        return self.meta["name"]


def run_problem(problem: Problem, grid: int, train_seeds: int) -> Outcome:
    start = time.perf_counter()
    train = make_trainer(problem)
    keys = jax.random.split(jax.random.key(42), train_seeds)
    grid_lrs = np.logspace(math.log10(GRID_LOW), math.log10(GRID_HIGH), grid).astype(np.float32)
    grid_scores = np.asarray(train(jnp.asarray(grid_lrs), keys)).mean(axis=1)
    best = problem.best_score(grid_scores)
    grid_quality = problem.quality(grid_scores, best)
    results = dict(zip(CALLS, range_tests(problem)))
    suggestions, warned = read_rules(results, problem.train_steps, problem.schedule)
    qualities, gap = train_suggestions(train, keys, problem, grid_lrs, grid_quality, best,
                                       suggestions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        curves = {call: result.to_dict() for call, result in results.items()}
    return Outcome(problem.metadata(), grid_lrs, grid_scores, grid_quality, best, suggestions,
                   qualities, warned, {c: noise_over_fall(r) for c, r in results.items()},
                   time.perf_counter() - start, curves, gap)


def train_suggestions(train: Callable, keys: jax.Array, problem: Problem, grid_lrs: np.ndarray,
                      grid_quality: np.ndarray, best: float,
                      suggestions: dict[str, dict[str, float]]
                      ) -> tuple[dict[str, dict[str, float]], float]:
    """Train every suggested rate exactly as the grid was: ``(qualities, largest gap)``.

    The rates go through the grid's own compiled program, padded to the grid's length
    (no recompile); the gap is the largest difference between a trained quality and its
    interpolation on the grid (what ``--rescore`` reports without training).
    """
    grid = grid_lrs.size
    flat = [(call, name, lr) for call, row in suggestions.items() for name, lr in row.items()]
    lrs = np.full(grid, grid_lrs[0], np.float32)
    qualities: dict[str, dict[str, float]] = {call: {} for call in suggestions}
    for begin in range(0, len(flat), grid):
        part = flat[begin : begin + grid]
        lrs[: len(part)] = [lr for _, _, lr in part]
        scores = np.asarray(train(jnp.asarray(lrs), keys)).mean(axis=1)
        for (call, name, _), q in zip(part, problem.quality(scores[: len(part)], best)):
            qualities[call][name] = float(q)
    gap = max(abs(interpolated_quality(grid_lrs, grid_quality, lr) - qualities[call][name])
              for call, name, lr in flat)
    return qualities, gap


def retrain(outcome: Outcome, problem: Problem, train_seeds: int) -> Outcome:
    """A rescored Outcome with its suggestions TRAINED (the saved grid stays the truth)."""
    start = time.perf_counter()
    keys = jax.random.split(jax.random.key(42), train_seeds)
    qualities, gap = train_suggestions(
        make_trainer(problem), keys, problem, np.asarray(outcome.grid_lrs, np.float32),
        outcome.grid_quality, outcome.best, outcome.suggestions)
    return dataclasses.replace(outcome, qualities=qualities, interpolation_gap=gap,
                               seconds=outcome.seconds + time.perf_counter() - start)


def saved_train_seeds(saved: dict) -> int:
    """The training seeds the saved grid was trained with (older files: from the header)."""
    if "train_seeds" in saved:
        return int(saved["train_seeds"])
    match = re.search(r"(\d+) training seed", saved.get("header", ""))
    if match is None:
        raise ValueError("the saved file does not say how many training seeds its grid used")
    return int(match.group(1))


def rescore(blob: dict, problem: Problem | None = None) -> Outcome:
    """An Outcome from saved curves: every rule re-read, quality interpolated on the grid.

    Curves saved before the range test measured the optimizer (``settings`` without
    ``update_scaling`` or ``noise_response``) get it measured now from ``problem``'s
    optimizer, as the range test would have (a saved value is kept); a careful call saved
    before it took ``baseline_loss`` gets ``problem``'s.
    """
    start = time.perf_counter()
    results = {call: lrjax.RangeTestResult.from_dict(blob["curves"][call]) for call in CALLS}
    if problem is not None:
        results["careful"].settings.setdefault("baseline_loss", problem.baseline_loss())
    for result in results.values():
        if problem is not None and not {"update_scaling", "noise_response"} <= set(
                result.settings):
            measured = optimizer_settings(problem.optimizer, problem.init_fn(jax.random.key(0)))
            for name, value in measured.items():
                result.settings.setdefault(name, value)
    meta = blob["meta"]
    grid_lrs = np.asarray(blob["grid_lrs"], np.float64)
    grid_quality = np.asarray(blob["grid_quality"], np.float64)
    suggestions, warned = read_rules(results, meta["train_steps"], meta["schedule"])
    qualities = {call: {name: interpolated_quality(grid_lrs, grid_quality, lr)
                        for name, lr in row.items()} for call, row in suggestions.items()}
    return Outcome(meta, grid_lrs, np.asarray(blob["grid_scores"], np.float64), grid_quality,
                   blob["best"], suggestions, qualities, warned,
                   {c: noise_over_fall(r) for c, r in results.items()},
                   time.perf_counter() - start, curves=blob["curves"])


def to_blob(o: Outcome) -> dict:
    return {"meta": o.meta, "grid_lrs": o.grid_lrs.tolist(), "grid_scores": o.grid_scores.tolist(),
            "grid_quality": o.grid_quality.tolist(), "best": o.best, "suggestions": o.suggestions,
            "qualities": o.qualities, "warnings": o.warned, "noise": o.noise,
            "interpolation_gap": o.interpolation_gap, "seconds": o.seconds, "curves": o.curves}


def _jsonable(x: Any) -> Any:
    """NaN / inf floats as strings (strict JSON), recursively."""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


# --- tables ----------------------------------------------------------------------------------
def geometric_mean(values: list[float]) -> float:
    return float(np.exp(np.mean(np.log(np.maximum(values, 0.01)))))


def _cell(o: Outcome, call: str, rule: str) -> str:
    mark = "W" if o.warned[call][rule] else " "
    return f"{o.qualities[call][rule]:.3f}{mark}"


def _short_schedule(schedule: str) -> str:
    return {"constant": "const", "one_cycle": "1cycle", "cosine": "cos"}[schedule]


def format_table(outcomes: list[Outcome], columns: list[tuple[str, str, str]],
                 with_meta: bool = True) -> str:
    """Rows: problems by half, then per half ``worst`` and ``geomean``; columns: rules."""
    name_w = max(len(o.name) for o in outcomes) + 2
    col_w = max(9, max(len(label) for label, _, _ in columns) + 1)
    meta_head = f"{'sched':>7}{'steps':>6}{'opt':>10}{'noise/fall':>11}" if with_meta else ""
    lines = [f"{'problem':<{name_w}}" + meta_head + "".join(f"{lb:>{col_w}}" for lb, _, _ in columns)]
    for half in HALVES:
        rows = [o for o in outcomes if o.meta["half"] == half]
        if not rows:
            continue
        lines.append(f"-- {half} half ({len(rows)} problems)")
        for o in rows:
            meta = ""
            if with_meta:
                opt = o.meta["optimizer"].split()[0] + ("+m" if "momentum" in o.meta["optimizer"] else "")
                meta = (f"{_short_schedule(o.meta['schedule']):>7}{o.meta['train_steps']:>6}"
                        f"{opt:>10}{o.noise['default']['ratio']:>11.3f}")
            lines.append(f"{o.name:<{name_w}}" + meta
                         + "".join(f"{_cell(o, call, rule):>{col_w}}" for _, call, rule in columns))
        pad = " " * (34 if with_meta else 0)
        for label, fn in (("worst", min), ("geomean", geometric_mean)):
            values = [fn([o.qualities[call][rule] for o in rows]) for _, call, rule in columns]
            lines.append(f"{'  ' + half + ' ' + label:<{name_w}}" + pad
                         + "".join(f"{v:>{col_w - 1}.3f} " for v in values))
    return "\n".join(lines)


def markdown_table(outcomes: list[Outcome], columns: list[tuple[str, str, str]]) -> str:
    lines = ["| problem | half | schedule | steps | " + " | ".join(c[0] for c in columns) + " |",
             "|---" * (len(columns) + 4) + "|"]
    for o in outcomes:
        cells = " | ".join(f"{o.qualities[c][r]:.2f}{' W' if o.warned[c][r] else ''}"
                           for _, c, r in columns)
        lines.append(f"| {o.name} | {o.meta['half']} | {o.meta['schedule']} | "
                     f"{o.meta['train_steps']} | {cells} |")
    for half in HALVES:
        rows = [o for o in outcomes if o.meta["half"] == half]
        if rows:
            for label, fn in (("worst", min), ("geo. mean", geometric_mean)):
                cells = " | ".join(f"{fn([o.qualities[c][r] for o in rows]):.2f}" for _, c, r in columns)
                lines.append(f"| **{half} {label}** | | | | {cells} |")
    return "\n".join(lines)


def warning_check(outcomes: list[Outcome], threshold: float = 0.8) -> str:
    """Does every lrjax suggestion below ``threshold`` come with a warning?"""
    silent, warned_low, warned_ok = [], 0, 0
    for o in outcomes:
        for call, rule in (("default", DEFAULT_RULE), ("careful", HINT_RULE)):
            q, w = o.qualities[call][rule], bool(o.warned[call][rule])
            if q < threshold and not w:
                silent.append(f"{o.name} ({call}, {q:.3f})")
            warned_low += q < threshold and w
            warned_ok += q >= threshold and w
    head = (f"lrjax suggestions below {threshold}: {len(silent) + warned_low} "
            f"({warned_low} warned, {len(silent)} silent); warned but >= {threshold}: {warned_ok}")
    return head + ("\n  silent: " + "; ".join(silent) if silent else "")


#: The multiples of the careful call's suggestion that ``--probe`` tries.
PROBE_FACTORS = tuple(4.0 ** k for k in range(-2, 4))


#: ``--pick``: how a rate's validation losses over its seeds are reduced (their mean or the
#: worst seed) before the pick: the lowest (``mean``, ``worst``) or, on the worst seed, the
#: middle of the plateau (``plateau``: ``lrjax.SearchResult.plateau_trial``).
PICKS = {"mean": np.mean, "worst": np.max, "plateau": np.max}


def _validation_pick(problem: Problem, base: float, factors: np.ndarray, steps: int,
                     pick: str = "mean", seeds: int = 2, reference: float | None = None
                     ) -> float:
    """The multiple of ``base`` whose training of ``steps`` steps (the planned schedule
    compressed to them, ``seeds`` seeds) has the lowest VALIDATION loss, reduced over the
    seeds by ``pick`` (``mean``, or ``worst``: the largest; diverged: never); ``plateau``:
    the worst seeds' plateau middle above ``reference`` (the untrained validation loss),
    picked by the library's ``SearchResult.plateau_trial``."""
    short = dataclasses.replace(problem, train_steps=steps, x_test=problem.x_val,
                                y_test=problem.y_val)
    rates = jnp.asarray(base * factors, jnp.float32)
    scores = np.asarray(make_trainer(short)(rates, jax.random.split(jax.random.key(7), seeds)))
    reduced = PICKS[pick](np.where(np.isfinite(scores), scores, np.inf), axis=1)
    if pick != "plateau":
        return float(base * factors[int(np.argmin(reduced))])
    trials = [{"number": i, "params": {"factor": float(f)},
               "value": float(v) if np.isfinite(v) else None, "metrics": {},
               "state": "complete" if np.isfinite(v) else "fail"}
              for i, (f, v) in enumerate(zip(factors, reduced))]
    result = lrjax.SearchResult(trials, {}, "val_loss", "minimize", "quasirandom")
    trial = result.plateau_trial(reference)
    return base if trial is None else float(base * trial["params"]["factor"])


def _picks_report(rows: list[tuple], labels: tuple[str, ...]) -> list[str]:
    """Per half: worst / geometric mean of each column (``rows``: ``(half, *values)``)."""
    lines = []
    for half in HALVES:
        for index, name in enumerate(labels, start=1):
            values = [row[index] for row in rows if row[0] == half]
            if values:
                lines.append(f"  {half:<7} {name:<18} {min(values):.3f} / "
                             f"{geometric_mean(values):.3f}")
    return lines


def short_probe(blobs: list[dict], fraction: float) -> str:
    """Pick among multiples of the careful suggestion by a SHORT training's validation loss.

    Not a rule of lrjax: a measurement of whether a probe of ``fraction`` of the planned
    steps (the planned schedule compressed to them, 2 seeds, scored on the validation
    part) could replace the full-length search. Each pick is scored on the saved grid
    (interpolated). Per half: worst / geometric mean of the careful suggestion and of
    the pick.
    """
    problems = {p.name: p for p in make_problems()}
    lines, rows = [], []
    for blob in blobs:
        problem = problems[blob["meta"]["name"]]
        base = blob["suggestions"]["careful"][HINT_RULE]
        steps = max(50, round(fraction * problem.train_steps))
        pick = _validation_pick(problem, base, np.asarray(PROBE_FACTORS), steps)
        grid_lrs, grid_quality = np.asarray(blob["grid_lrs"]), np.asarray(blob["grid_quality"])
        before = interpolated_quality(grid_lrs, grid_quality, base)
        after = interpolated_quality(grid_lrs, grid_quality, pick)
        rows.append((problem.half, before, after))
        lines.append(f"  {problem.name:<36} {problem.half:<7} {steps:>4} of {problem.train_steps:>4} "
                     f"steps: careful {before:.3f}, pick x{pick / base:g} {after:.3f}")
    title = (f"short probe: x{', x'.join(f'{f:g}' for f in PROBE_FACTORS)} of the careful "
             f"suggestion, each trained {fraction:g} of the planned steps (2 seeds), the "
             "best validation loss picked; quality interpolated on the saved grid")
    return "\n".join([title, *lines,
                      *_picks_report(rows, ("careful suggestion", "short-probe pick"))])


#: ``--search-call``: the call whose suggestion the search is centred on, and its rule.
SEARCH_CALLS = {"careful": HINT_RULE, "default": DEFAULT_RULE}


def search_around(blobs: list[dict], trials: int, call: str = "careful", pick: str = "mean",
                  seeds: int = 2) -> str:
    """The suggestions guide's recipe: a short search of FULL trainings around the suggestion.

    ``trials`` rates in ``RangeTestResult.search_space(lr)`` (``lr / 8`` to ``lr * 30``)
    around the ``call``'s suggestion ``lr`` (``careful``: ``suggest(train_steps=...)`` or
    ``peak_lr()`` of the careful call; ``default``: ``suggest()`` or ``peak_lr()`` of the
    default call, for a user who ran the range test without ``val_data``)
    (scrambled Sobol points in log-rate, seed 0: what ``lrjax.search(...,
    method="quasirandom")`` draws), each trained the planned steps from ``seeds`` seeds
    and scored on the VALIDATION part; the rate whose validation losses, reduced over the
    seeds by ``pick`` (``PICKS``: their mean or the worst), are lowest is picked
    (``plateau``: the middle of the worst seeds' plateau, ``SearchResult.plateau_trial``,
    the careful call's first validation loss as the untrained reference) and scored
    on the saved grid (interpolated), next to the suggestion and the best of the trials on
    the grid (what a pick by the test loss itself would reach).
    """
    from scipy.stats import qmc  # the benchmark's own dependency (lrjax[search] has it)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Sobol balance warning for non-powers of 2
        unit = qmc.Sobol(d=1, scramble=True, seed=0).random(trials)[:, 0]
    problems = {p.name: p for p in make_problems()}
    lines, rows = [], []
    for blob in blobs:
        problem = problems[blob["meta"]["name"]]
        base = blob["suggestions"][call][SEARCH_CALLS[call]]
        # The library's own range (RangeTestResult.search_space, a closed form in ``base``),
        # as multiples of the base.
        careful = lrjax.RangeTestResult.from_dict(blob["curves"]["careful"])
        space = careful.search_space(base)
        low, high = space["learning_rate"].low / base, space["learning_rate"].high / base
        factors = np.exp(np.log(low) + unit * (np.log(high) - np.log(low)))
        # The untrained model's validation loss: the careful range test's first point.
        start = careful.val_losses[..., 0]
        chosen = _validation_pick(problem, base, factors, problem.train_steps, pick, seeds,
                                  reference=float(np.median(start)))
        grid_lrs, grid_quality = np.asarray(blob["grid_lrs"]), np.asarray(blob["grid_quality"])
        before = interpolated_quality(grid_lrs, grid_quality, base)
        after = interpolated_quality(grid_lrs, grid_quality, chosen)
        best = max(interpolated_quality(grid_lrs, grid_quality, base * f) for f in factors)
        rows.append((problem.half, before, after, best))
        lines.append(f"  {problem.name:<36} {problem.half:<7} {call} {before:.3f}, pick "
                     f"x{chosen / base:.3g} {after:.3f} (best trial on the grid {best:.3f})")
    low, high = lrjax.finder.result.SEARCH_RANGE
    title = (f"search around the {call} suggestion: {trials} rates lr/{1 / low:g}..lr*{high:g} "
             f"(scrambled Sobol, seed 0), each trained the planned steps ({seeds} seeds), "
             + ("the middle of the worst seeds' validation-loss plateau (SearchResult."
                "plateau_trial)" if pick == "plateau" else
                f"the lowest validation loss ({pick} of the seeds)")
             + " picked; quality interpolated on the saved grid")
    return "\n".join([title, *lines, *_picks_report(
        rows, (f"{call} suggestion", "search pick", "best trial (test)"))])


#: The key the fresh seeds of ``--repeat`` are split from (the grid's is 42).
REPEAT_KEY = 2026


def repeatability(outcomes: list[Outcome], seeds: int) -> str:
    """Each problem measured again with FRESH training seeds: is a miss the rule's or chance's?

    The saved grid's rates and the lrjax default and careful suggestions are trained with
    ``seeds`` seeds split from another key, and the suggestions scored against that fresh
    grid's best, exactly as the saved run scored them against its own. A quality that
    moves a lot between the two is decided by the training seeds, not by the rule.
    """
    problems = {p.name: p for p in make_problems()}
    keys = jax.random.split(jax.random.key(REPEAT_KEY), seeds)
    lines = [f"repeatability: the grid and the lrjax suggestions trained again with {seeds} "
             f"fresh seeds (key {REPEAT_KEY}); saved -> fresh quality, grid best rate"]
    rows = []
    for o in outcomes:
        problem = problems[o.name]
        train = make_trainer(problem)
        grid_lrs = np.asarray(o.grid_lrs, np.float32)
        scores = np.asarray(train(jnp.asarray(grid_lrs), keys)).mean(axis=1)
        best = problem.best_score(scores)
        mine = {"default": {DEFAULT_RULE: o.suggestions["default"][DEFAULT_RULE]},
                "careful": {HINT_RULE: o.suggestions["careful"][HINT_RULE]}}
        fresh, _ = train_suggestions(train, keys, problem, grid_lrs,
                                     problem.quality(scores, best), best, mine)
        pairs = [(o.qualities["default"][DEFAULT_RULE], fresh["default"][DEFAULT_RULE]),
                 (o.qualities["careful"][HINT_RULE], fresh["careful"][HINT_RULE])]
        rows.append((o.meta["half"], pairs))
        at = float(grid_lrs[int(np.argmin(np.where(np.isfinite(scores), scores, np.inf)))])
        lines.append(f"  {o.name:<36} {o.meta['half']:<7} default {pairs[0][0]:.3f} -> "
                     f"{pairs[0][1]:.3f}, careful {pairs[1][0]:.3f} -> {pairs[1][1]:.3f}; best "
                     f"{o.grid_lrs[int(np.nanargmax(o.grid_quality))]:.3g} -> {at:.3g}")
    for half in HALVES:
        chosen = [pairs for h, pairs in rows if h == half]
        for index, call in enumerate(CALLS):
            saved = [p[index][0] for p in chosen]
            again = [p[index][1] for p in chosen]
            if saved:
                lines.append(f"  {half:<7} {call:<8} saved {min(saved):.3f} / "
                             f"{geometric_mean(saved):.3f}, fresh {min(again):.3f} / "
                             f"{geometric_mean(again):.3f}")
    return "\n".join(lines)


def landmarks(o: Outcome) -> dict[str, float]:
    """Rates read off a problem's curves: lrjax's and valley's suggestions, and where the
    careful call's mean validation and training curves bottom out and where it diverges."""
    careful = lrjax.RangeTestResult.from_dict(o.curves["careful"])
    lrs = np.asarray(careful.lrs, np.float64)
    train = np.asarray(careful.losses, np.float64).reshape(-1, careful.num_steps)
    finite = np.isfinite(train).all(axis=0)
    end = int(np.argmin(finite)) if not finite.all() else finite.size  # every seed still finite
    out = {"lrjax default": o.suggestions["default"][DEFAULT_RULE],
           "lrjax careful": o.suggestions["careful"][HINT_RULE],
           "fastai valley": o.suggestions["default"]["fastai valley"],
           "training minimum": float(lrs[np.argmin(truncated_mean(
               train[:, :end].mean(0), 5))]),
           "divergence": float(lrs[min(end, lrs.size - 1)])}
    if careful.val_losses is not None:
        val = np.asarray(careful.val_losses, np.float64).reshape(-1, careful.num_steps)
        out["validation minimum"] = float(lrs[np.argmin(truncated_mean(
            val[:, :end].mean(0), 1))])
    return out


def multiple_ceiling(outcomes: list[Outcome]) -> str:
    """The best a rule ``lr = c x landmark`` could do, ``c`` fitted on EVERY problem.

    For each landmark the constant (one for constant-rate problems, one for schedule
    peaks) that maximises the worst interpolated quality over all problems of both
    halves. Fitted on the held-out half too, so it is not a rule but an upper bound for
    rules of that form: when it is below a target, no constant multiple of that
    landmark meets the target.
    """
    marks = [landmarks(o) for o in outcomes]
    factors = np.logspace(-3, 3, 601)
    lines = ["best constant multiple of each landmark, fitted on all problems of both halves "
             "(an upper bound for rules lr = c x landmark, not a rule); worst quality, "
             "interpolated:"]
    for name in marks[0]:
        worst_overall, parts = 1.0, []
        for kind, scheduled in (("constant", False), ("schedule", True)):
            chosen = [(o, m[name]) for o, m in zip(outcomes, marks)
                      if (o.meta["schedule"] != "constant") == scheduled and name in m]
            if not chosen:
                continue
            scores = np.array([[interpolated_quality(o.grid_lrs, o.grid_quality, c * lr)
                                for o, lr in chosen] for c in factors])
            best = int(np.argmax(scores.min(axis=1)))
            limit = chosen[int(np.argmin(scores[best]))][0].name
            worst_overall = min(worst_overall, float(scores[best].min()))
            parts.append(f"{kind} x{factors[best]:.3g}: {scores[best].min():.3f} ({limit})")
        lines.append(f"  {name:<19} worst {worst_overall:.3f}; " + "; ".join(parts))
    return "\n".join(lines)


def print_report(outcomes: list[Outcome], markdown: bool, source: str) -> None:
    main_cols = list(MAIN_COLUMNS)
    print(f"\nquality ({source}); 1 = grid best; W = that suggest() call warned")
    print(format_table(outcomes, main_cols))
    if markdown:
        print()
        print(markdown_table(outcomes, main_cols))
    print("\n" + warning_check(outcomes))
    if all(o.curves is not None for o in outcomes):
        print("\n" + multiple_ceiling(outcomes))
    names = list(outcomes[0].qualities["default"])
    labels = {DEFAULT_RULE: "lrjax", HINT_RULE: "lrjax+hint", "torch-lr-finder steepest": "steepest"}
    for call, title in (("default", "default call: range_test(loss_fn, params, optimizer, data)"),
                        ("careful", f"careful call: val_data, num_seeds={CAREFUL_SEEDS}, init_fn")):
        cols = [(labels.get(n, n.split()[-1]), call, n) for n in names]
        print(f"\nevery rule, {title}")
        print(format_table(outcomes, cols, with_meta=False))
        if markdown:
            print()
            print(markdown_table(outcomes, cols))
    print("\nsuggested learning rates (grid best first; noise/fall of the default | careful call):")
    for o in outcomes:
        at = o.grid_lrs[int(np.nanargmax(o.grid_quality))]
        print(f"  {o.name}: best {at:.3g}; noise/fall {o.noise['default']['ratio']:.3f} "
              f"(noise {o.noise['default']['noise']:.3g}, fall {o.noise['default']['fall']:.3g}) | "
              f"{o.noise['careful']['ratio']:.3f}")
        for call in CALLS:
            row = ", ".join(f"{labels.get(n, n.split()[-1])} {lr:.3g}"
                            for n, lr in o.suggestions[call].items())
            print(f"    {call:<8} {row}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="13 grid rates, 1 training seed, no CNNs")
    parser.add_argument("--grid", type=int, default=None, help="grid rates (default 25)")
    parser.add_argument("--train-seeds", type=int, default=None, help="default 4")
    parser.add_argument("--only", nargs="*", default=None, help="problem names to run")
    parser.add_argument("--half", choices=(*HALVES, "all"), default="all",
                        help="which half of the problems to run (default both)")
    parser.add_argument("--holdout", action="store_true", help="same as --half heldout")
    parser.add_argument("--json", default=None, help="write suggestions and qualities here")
    parser.add_argument("--save", default=None,
                        help="write curves, grid and metadata here (for --rescore; with --rescore, the "
                             "saved run with the rules re-read and, with --retrain, retrained)")
    parser.add_argument("--rescore", default=None,
                        help="re-read every rule off the curves saved by --save; no training")
    parser.add_argument("--probe", type=float, default=None, metavar="FRACTION",
                        help="with --rescore: also measure a short probe (multiples of the "
                             "careful suggestion trained FRACTION of the planned steps)")
    parser.add_argument("--search", type=int, default=None, metavar="TRIALS",
                        help="with --rescore: also measure the suggestions guide's search "
                             "(TRIALS full trainings from lr/8 to lr*30 around the careful "
                             "suggestion, picked by validation loss)")
    parser.add_argument("--pick", choices=tuple(PICKS), default="mean",
                        help="with --search: reduce each rate's seeds' validation losses by "
                             "their mean (default) or their worst before picking the lowest; "
                             "plateau: the middle of the worst seeds' plateau "
                             "(SearchResult.plateau_trial)")
    parser.add_argument("--pick-seeds", type=int, default=2,
                        help="with --search: seeds per rate (default 2)")
    parser.add_argument("--search-call", choices=tuple(SEARCH_CALLS), default="careful",
                        help="with --search: centre it on this call's suggestion (default "
                             "careful; default: the range test without val_data)")
    parser.add_argument("--repeat", type=int, default=None, metavar="SEEDS",
                        help="with --rescore: train the grid and the lrjax suggestions again with "
                             "SEEDS fresh seeds (is a miss the rule's or the seeds'?)")
    parser.add_argument("--retrain", action="store_true",
                        help="with --rescore: TRAIN the re-read suggestions (the saved grid "
                        "stays the truth; about half a full run)")
    parser.add_argument("--markdown", action="store_true", help="also print markdown tables")
    args = parser.parse_args(argv)
    half = HELDOUT if args.holdout else args.half

    def wanted(name: str, problem_half: str) -> bool:
        return (half == "all" or problem_half == half) and (not args.only or name in args.only)

    if args.rescore:
        with open(args.rescore) as f:
            saved = json.load(f)
        blobs = [b for b in saved["problems"] if wanted(b["meta"]["name"], b["meta"]["half"])]
        start = time.perf_counter()
        problems = {p.name: p for p in make_problems()}
        outcomes = [rescore(b, problems.get(b["meta"]["name"])) for b in blobs]
        source = "rescored: quality interpolated on the saved grid in log-lr, an approximation " \
                 "to training the rate"
        if args.retrain:
            seeds = saved_train_seeds(saved)
            outcomes = [retrain(o, problems[o.name], seeds) for o in outcomes]
            source = (f"re-read on the saved curves, suggestions trained ({seeds} training "
                      "seeds); the truth is the saved grid")
        print(f"rescored {len(outcomes)} problems from {args.rescore} ({saved.get('header', '')}) "
              f"with lrjax at {os.path.dirname(lrjax.__file__)} in "
              f"{time.perf_counter() - start:.1f} s")
        if args.retrain:
            print(f"largest gap between a trained suggestion's quality and its grid "
                  f"interpolation: {max(o.interpolation_gap for o in outcomes):.3f}")
        print_report(outcomes, args.markdown, source)
        if args.probe is not None:
            print("\n" + short_probe(blobs, args.probe))
        if args.search is not None:
            print("\n" + search_around(blobs, args.search, args.search_call, args.pick,
                                        args.pick_seeds))
        if args.repeat is not None:
            print("\n" + repeatability(outcomes, args.repeat))
        if args.save:  # the saved curves and grid with the re-read (and retrained) rules
            with open(args.save, "w") as f:
                json.dump(_jsonable({**{k: v for k, v in saved.items() if k != "problems"},
                                     "problems": [to_blob(o) for o in outcomes]}), f)
        return 0

    grid = args.grid or (13 if args.quick else 25)
    train_seeds = args.train_seeds or (1 if args.quick else 4)
    problems = [p for p in make_problems() if wanted(p.name, p.half)]
    if args.quick and not args.only:
        # The CNNs are the slowest problems (compiling them and their range tests).
        problems = [p for p in problems if p.family != "cnn"]
    header = (f"jax {jax.__version__}, {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cpus; grid {grid} rates {GRID_LOW:g}..{GRID_HIGH:g}, "
              f"{train_seeds} training seed(s)")
    print(header)
    outcomes = []
    start = time.perf_counter()
    for problem in problems:
        outcome = run_problem(problem, grid, train_seeds)
        at = outcome.grid_lrs[int(np.nanargmax(outcome.grid_quality))]
        print(f"{problem.name:<36} [{problem.half}] {problem.model_name}, {problem.optimizer_name}, "
              f"{problem.schedule}, {problem.train_steps} steps: best {outcome.best:.4f} "
              f"at lr {at:.3g} (trivial {problem.trivial_loss():.4f}; {outcome.seconds:.0f} s)",
              flush=True)
        outcomes.append(outcome)
    total = time.perf_counter() - start
    print(f"\n{len(outcomes)} problems in {total / 60:.1f} min; largest gap between a trained "
          f"suggestion's quality and its grid interpolation (what --rescore uses): "
          f"{max(o.interpolation_gap for o in outcomes):.3f}")
    print_report(outcomes, args.markdown, "trained")
    if args.json:
        blob = [{"problem": o.name, "half": o.meta["half"], "grid_lrs": o.grid_lrs.tolist(),
                 "grid_scores": o.grid_scores.tolist(), "best": o.best,
                 "suggestions": o.suggestions, "qualities": o.qualities,
                 "warnings": o.warned} for o in outcomes]
        with open(args.json, "w") as f:
            json.dump(_jsonable(blob), f, indent=1)
    if args.save:
        with open(args.save, "w") as f:
            json.dump(_jsonable({"header": header, "seconds": total, "train_seeds": train_seeds,
                                 "problems": [to_blob(o) for o in outcomes]}), f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
