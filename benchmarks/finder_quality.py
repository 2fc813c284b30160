"""Benchmark: how well each suggestion rule's learning rate trains, against a constant-LR grid.

For each problem (bundled data only: scikit-learn's digits, breast cancer, diabetes and
wine, and a synthetic regression; with ``--holdout``, four problems added after lrjax's
rules were fixed, iris among them, to check them on problems they were not chosen on), on
one fixed train/validation/test split:

1. **Truth.** Train at every learning rate of a log grid (``--grid`` points from 1e-5 to
   10) with a constant rate for the problem's ``train_steps`` steps, from ``--train-seeds``
   initialisations; all of it is ONE compiled program (``jit(vmap(vmap(train)))`` over
   rates and seeds). The score of a rate is the test metric averaged over the seeds:
   accuracy for classification, mean squared error for regression.
2. **Curves.** Two range tests on the train part (defaults ``min_lr=1e-7``,
   ``max_lr=10``, 100 steps): the *default call* (``range_test(loss_fn, params,
   optimizer, data)``) and the *careful call* (``val_data`` = a held-out validation
   batch, ``num_seeds=3`` with ``init_fn``). On both, lrjax's rule is read plainly
   (``suggest()``) and with the training-length hint ``suggest(train_steps=...)``: the
   problem's ``train_steps``, which a careful user, who knows how long they will
   train, passes.
3. **Suggestions.** Every rule reads both results; each suggested rate is trained
   exactly as the grid was (the same compiled program: the suggestions are padded to
   the grid's length, so nothing recompiles).

**Quality** of a rate = the share of the best achievable reduction of the test loss
over the trivial predictor that the rate reaches: ``(L0 - L) / (L0 - L_best)`` with
``L`` its test loss (cross-entropy for classification, MSE for regression), ``L_best``
the best grid rate's and ``L0`` the trivial predictor's (the train class frequencies;
the train mean). 1 is the grid's best, higher is better, 0 is no better than predicting
the prior (floored there; a diverged run scores 0); for regression it is the ratio of
R^2 to the best R^2. Test loss rather than accuracy because accuracy cannot see a
ruined model: Adam at lr 10 on the digits MLP still classifies 94.5% right at a test
cross-entropy of ~2e4. Between grid points a suggestion may score a little above 1.
The table shows each rule's quality per problem, its worst problem and its geometric
mean (qualities floored at 0.01 for the mean).

Peer rules: fastai's ``valley``, ``slide``, ``steep`` and ``minimum`` and torch-lr-finder's
``steepest`` are lrjax's faithful implementations (tested equal to the peers' own
functions in tests/test_fastai_parity.py), read off the same curves trimmed as each
peer trims, on the smoothed TRAINING curves (fastai has no validation curve;
torch-lr-finder would read a validation curve, smoothed its own way, which is not
emulated here). On the careful call a peer rule is read per seed curve and the lower
median taken, as ``RangeTestResult.suggest`` does; lrjax's default reads the raw
validation curve when the result has one.

Usage:
    python benchmarks/finder_quality.py [--quick] [--holdout] [--only NAME ...] [--json out.json]
        [--markdown]

The full run takes about 5 minutes on 2 shared CPU cores (the CNN about half of it);
``--quick`` (13 rates, 1 training seed, no CNN) about 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import platform
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

Params = Any
RANGE_STEPS = 100
CAREFUL_SEEDS = 3
GRID_LOW, GRID_HIGH = 1e-5, 10.0


@dataclasses.dataclass(frozen=True)
class Problem:
    """One benchmark problem: data split, model, loss, optimizer and training budget."""

    name: str
    kind: str  # "classification" or "regression"
    init_fn: Callable[[jax.Array], Params]
    apply: Callable[[Params, jax.Array], jax.Array]
    optimizer: Callable[..., optax.GradientTransformation]  # factory of learning_rate
    optimizer_name: str
    model_name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    batch_size: int
    train_steps: int

    def loss_fn(self, params: Params, batch: dict) -> jax.Array:
        out = self.apply(params, batch["x"])
        if self.kind == "classification":
            return optax.softmax_cross_entropy_with_integer_labels(out, batch["y"]).mean()
        return jnp.mean((out[:, 0] - batch["y"]) ** 2)

    def score(self, params: Params) -> jax.Array:
        """Test loss (cross-entropy or MSE); ``inf`` when training diverged."""
        loss = self.loss_fn(params, {"x": jnp.asarray(self.x_test), "y": jnp.asarray(self.y_test)})
        return jnp.where(jnp.isfinite(loss), loss, jnp.inf)

    def trivial_loss(self) -> float:
        """Test loss of the best constant prediction fitted on the train part."""
        if self.kind == "classification":
            counts = np.bincount(self.y_train, minlength=int(self.y_test.max()) + 1) + 1.0
            prior = counts / counts.sum()
            return float(-np.mean(np.log(prior[self.y_test])))
        return float(np.mean((self.y_test - self.y_train.mean()) ** 2))

    def batches(self, num_steps: int, seed: int = 0) -> dict:
        """``num_steps`` minibatches of the train part stacked on a step axis (epochs permuted)."""
        n = len(self.y_train)
        size = min(self.batch_size, n)
        per_epoch = n // size
        rng = np.random.default_rng(seed)
        epochs = -(-num_steps // per_epoch)
        order = np.concatenate([rng.permutation(n)[: per_epoch * size] for _ in range(epochs)])
        order = order[: num_steps * size].reshape(num_steps, size)
        return {"x": jnp.asarray(self.x_train[order]), "y": jnp.asarray(self.y_train[order])}

    def quality(self, scores: np.ndarray, best: float) -> np.ndarray:
        """``(L0 - L) / (L0 - L_best)``, floored at 0: the share of the best reduction."""
        scores = np.asarray(scores, np.float64)
        trivial = self.trivial_loss()
        q = (trivial - scores) / (trivial - best)
        return np.where(np.isfinite(q), np.maximum(q, 0.0), 0.0)

    def best_score(self, scores: np.ndarray) -> float:
        return float(np.min(np.where(np.isfinite(scores), scores, np.inf)))


# --- models ------------------------------------------------------------------------------
def _dense(key: jax.Array, fan_in: int, fan_out: int) -> dict:
    w = jax.random.normal(key, (fan_in, fan_out)) * jnp.sqrt(2.0 / fan_in)
    return {"w": w, "b": jnp.zeros(fan_out)}


def mlp(sizes: tuple[int, ...], zero_output: bool = False) -> tuple[Callable, Callable]:
    """A ReLU MLP with He-normal weights: ``(init_fn, apply)``; ``sizes`` = in, hidden..., out.

    ``zero_output`` starts the output layer at 0 (a regression MLP then starts at the mean).
    """

    def init_fn(key: jax.Array) -> list:
        keys = jax.random.split(key, len(sizes) - 1)
        layers = [_dense(k, a, b) for k, a, b in zip(keys, sizes[:-1], sizes[1:])]
        if zero_output:
            layers[-1] = jax.tree.map(jnp.zeros_like, layers[-1])
        return layers

    def apply(params: list, x: jax.Array) -> jax.Array:
        for layer in params[:-1]:
            x = jax.nn.relu(x @ layer["w"] + layer["b"])
        return x @ params[-1]["w"] + params[-1]["b"]

    return init_fn, apply


def linear(fan_in: int, fan_out: int) -> tuple[Callable, Callable]:
    """A linear model with zero initial weights (logistic / linear regression)."""

    def init_fn(key: jax.Array) -> dict:
        del key  # convex model: every run starts at 0
        return {"w": jnp.zeros((fan_in, fan_out)), "b": jnp.zeros(fan_out)}

    def apply(params: dict, x: jax.Array) -> jax.Array:
        return x @ params["w"] + params["b"]

    return init_fn, apply


def small_cnn() -> tuple[Callable, Callable]:
    """8x8x1 -> conv3x3(8) -> conv3x3(16, stride 2) -> dense(10), ReLU; zero padding 1."""

    def init_fn(key: jax.Array) -> dict:
        k1, k2, k3 = jax.random.split(key, 3)
        return {
            "c1": jax.random.normal(k1, (3, 3, 1, 8)) * jnp.sqrt(2.0 / 9),
            "b1": jnp.zeros(8),
            "c2": jax.random.normal(k2, (3, 3, 8, 16)) * jnp.sqrt(2.0 / 72),
            "b2": jnp.zeros(16),
            "out": _dense(k3, 4 * 4 * 16, 10),
        }

    def conv(x: jax.Array, w: jax.Array, stride: int) -> jax.Array:
        # 3x3 'SAME' convolution as patches @ weights: under vmap over models this stays
        # a batched matmul (XLA's CPU convolution batched over models is far slower).
        height, width = x.shape[1], x.shape[2]
        padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        patches = jnp.concatenate(
            [padded[:, i : i + height : stride, j : j + width : stride, :]
             for i in range(3) for j in range(3)], axis=-1)
        return patches @ w.reshape(-1, w.shape[-1])

    def apply(params: dict, x: jax.Array) -> jax.Array:
        x = x.reshape(x.shape[0], 8, 8, 1)
        x = jax.nn.relu(conv(x, params["c1"], 1) + params["b1"])
        x = jax.nn.relu(conv(x, params["c2"], 2) + params["b2"])
        x = x.reshape(x.shape[0], -1)
        return x @ params["out"]["w"] + params["out"]["b"]

    return init_fn, apply


# --- data --------------------------------------------------------------------------------
def _split(x: np.ndarray, y: np.ndarray, num_train: int, num_val: int, seed: int,
           regression: bool) -> tuple[np.ndarray, ...]:
    """Permute, split train / val / test (the rest), standardize x (and y) with train stats."""
    order = np.random.default_rng(seed).permutation(len(y))
    tr, va, te = np.split(order, [num_train, num_train + num_val])
    mean, std = x[tr].mean(0), x[tr].std(0)
    std = np.where(std > 0, std, 1.0)
    x = ((x - mean) / std).astype(np.float32)
    if regression:
        y = ((y - y[tr].mean()) / y[tr].std()).astype(np.float32)
    else:
        y = y.astype(np.int32)
    return x[tr], y[tr], x[va], y[va], x[te], y[te]


def make_problems() -> list[Problem]:
    from sklearn import datasets

    problems = []

    def add(name: str, kind: str, model: tuple[Callable, Callable], model_name: str,
            optimizer: Callable, optimizer_name: str, split: tuple, batch_size: int,
            train_steps: int) -> None:
        problems.append(Problem(name, kind, model[0], model[1], optimizer, optimizer_name,
                                model_name, *split, batch_size=batch_size,
                                train_steps=train_steps))

    digits = datasets.load_digits()
    dx, dy = digits.data.astype(np.float64), digits.target
    add("digits-mlp-adam", "classification", mlp((64, 64, 10)), "MLP 64-64-10", optax.adam,
        "Adam", _split(dx, dy, 1200, 200, 0, False), 64, 300)
    add("digits-cnn-adamw", "classification", small_cnn(), "CNN 8x8 (8, 16 ch)",
        functools.partial(lrjax.adamw, weight_decay=1e-4), "AdamW wd 1e-4",
        _split(dx, dy, 1200, 200, 1, False), 64, 200)
    cancer = datasets.load_breast_cancer()
    add("cancer-logreg-sgd", "classification", linear(30, 2), "logistic regression",
        optax.sgd, "SGD", _split(cancer.data, cancer.target, 300, 100, 0, False), 32, 200)
    wine = datasets.load_wine()
    add("wine-mlp-momentum", "classification", mlp((13, 32, 3)), "MLP 13-32-3",
        functools.partial(optax.sgd, momentum=0.9), "SGD momentum 0.9",
        _split(wine.data, wine.target, 90, 30, 0, False), 30, 200)
    diabetes = datasets.load_diabetes()
    # 150 training rows for a 10-32-32-1 MLP: past its best rate it overfits (test MSE
    # above the trivial predictor's), which only the validation curve can see.
    add("diabetes-mlp-adam-overfit", "regression", mlp((10, 32, 32, 1), zero_output=True),
        "MLP 10-32-32-1", optax.adam, "Adam",
        _split(diabetes.data, diabetes.target, 150, 60, 0, True), 32, 200)
    rng = np.random.default_rng(0)
    # Synthetic least squares with features on different scales (condition number ~100):
    # plain SGD's best rate sits just below its stability limit, far right on the curve.
    num, dim = 1200, 20
    scales = np.logspace(0, -1, dim)
    sx = rng.normal(size=(num, dim)) * scales
    sy = sx @ rng.normal(size=dim) / scales.mean() + 0.3 * rng.normal(size=num)
    add("synthetic-linreg-sgd", "regression", linear(dim, 1), "linear regression", optax.sgd,
        "SGD", _split(sx * 1.0, sy, 800, 200, 0, True), 32, 200)
    # Held out: added after the rules' constants were chosen on the six above, to check
    # that they carry over to problems they were not chosen on (``--holdout``).
    iris = datasets.load_iris()
    add("iris-mlp-adamw", "classification", mlp((4, 16, 3)), "MLP 4-16-3",
        functools.partial(lrjax.adamw, weight_decay=1e-3), "AdamW wd 1e-3",
        _split(iris.data, iris.target, 90, 30, 0, False), 30, 300)
    add("digits-logreg-momentum", "classification", linear(64, 10), "logistic regression",
        functools.partial(optax.sgd, momentum=0.9), "SGD momentum 0.9",
        _split(dx, dy, 1200, 200, 2, False), 64, 200)
    add("cancer-mlp-adam", "classification", mlp((30, 32, 2)), "MLP 30-32-2", optax.adam,
        "Adam", _split(cancer.data, cancer.target, 300, 100, 1, False), 32, 200)
    add("diabetes-linreg-sgd", "regression", linear(10, 1), "linear regression", optax.sgd,
        "SGD", _split(diabetes.data, diabetes.target, 300, 60, 1, True), 32, 300)
    return problems


HOLDOUT = ("iris-mlp-adamw", "digits-logreg-momentum", "cancer-mlp-adam", "diabetes-linreg-sgd")


# --- truth: the vmapped constant-LR grid ---------------------------------------------------
def make_trainer(problem: Problem) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """``scores(lrs (G,), keys (R,)) -> (G, R)``: ONE compiled program for every rate and seed."""
    batches = problem.batches(problem.train_steps, seed=1)

    def train_one(lr: jax.Array, key: jax.Array) -> jax.Array:
        params = problem.init_fn(key)
        opt = problem.optimizer(learning_rate=lr)

        def step(carry: tuple, batch: dict) -> tuple:
            params, state = carry
            grads = jax.grad(problem.loss_fn)(params, batch)
            updates, state = opt.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), None

        (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), batches)
        return problem.score(params)

    return jax.jit(jax.vmap(jax.vmap(train_one, (None, 0)), (0, None)))


# --- the range tests -------------------------------------------------------------------------
def range_tests(problem: Problem) -> tuple[lrjax.RangeTestResult, lrjax.RangeTestResult]:
    """The default call and the careful call (val_data, 3 seeds with init_fn)."""
    data = problem.batches(RANGE_STEPS, seed=0)
    params = problem.init_fn(jax.random.key(0))
    default = lrjax.range_test(problem.loss_fn, params, problem.optimizer, data)
    val = {"x": jnp.asarray(problem.x_val), "y": jnp.asarray(problem.y_val)}
    careful = lrjax.range_test(problem.loss_fn, None, problem.optimizer, data,
                               init_fn=problem.init_fn, num_seeds=CAREFUL_SEEDS, val_data=val)
    return default, careful


def rules(train_steps: int | None = None) -> dict[str, Callable[[lrjax.RangeTestResult], float]]:
    """Rule name -> ``result -> lr``: lrjax's default and the peers' rules.

    With ``train_steps`` (a careful user knows how long they will train) lrjax's rule
    is also read with that hint, ``suggest(train_steps=...)``.
    """
    out: dict[str, Callable[[lrjax.RangeTestResult], float]] = {
        "lrjax default (fall)": lambda result: result.suggest()
    }
    if train_steps is not None:
        out["lrjax fall, train_steps hint"] = lambda result: result.suggest(train_steps=train_steps)
    for method in ("valley", "slide", "steep", "minimum"):
        out[f"fastai {method}"] = functools.partial(_read, method=method)
    out["torch-lr-finder steepest"] = functools.partial(_read, method="steepest")
    return out


def _read(result: lrjax.RangeTestResult, method: str) -> float:
    return result.suggest(method)


@dataclasses.dataclass
class Outcome:
    problem: Problem
    grid_lrs: np.ndarray
    grid_scores: np.ndarray
    best: float
    suggestions: dict[str, dict[str, float]]  # call -> rule -> lr
    qualities: dict[str, dict[str, float]]
    seconds: float


def run_problem(problem: Problem, grid: int, train_seeds: int) -> Outcome:
    start = time.perf_counter()
    train = make_trainer(problem)
    keys = jax.random.split(jax.random.key(42), train_seeds)
    grid_lrs = np.logspace(math.log10(GRID_LOW), math.log10(GRID_HIGH), grid).astype(np.float32)
    grid_scores = np.asarray(train(jnp.asarray(grid_lrs), keys)).mean(axis=1)
    best = problem.best_score(grid_scores)
    results = dict(zip(("default", "careful"), range_tests(problem)))
    suggestions: dict[str, dict[str, float]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for call, result in results.items():
            rows = rules(problem.train_steps)
            suggestions[call] = {name: float(rule(result)) for name, rule in rows.items()}
    flat = [(call, name, lr) for call, row in suggestions.items() for name, lr in row.items()]
    lrs = np.full(grid, grid_lrs[0], np.float32)  # padded to the grid's length: no recompile
    qualities: dict[str, dict[str, float]] = {call: {} for call in suggestions}
    for begin in range(0, len(flat), grid):
        part = flat[begin : begin + grid]
        lrs[: len(part)] = [lr for _, _, lr in part]
        scores = np.asarray(train(jnp.asarray(lrs), keys)).mean(axis=1)
        for (call, name, _), q in zip(part, problem.quality(scores[: len(part)], best)):
            qualities[call][name] = float(q)
    return Outcome(problem, grid_lrs, grid_scores, best, suggestions, qualities,
                   time.perf_counter() - start)


def geometric_mean(values: list[float]) -> float:
    return float(np.exp(np.mean(np.log(np.maximum(values, 0.01)))))


def format_table(outcomes: list[Outcome], call: str) -> str:
    names = list(outcomes[0].qualities[call])
    short = [o.problem.name for o in outcomes]
    width = max(len(n) for n in names) + 2
    head = f"{'rule':<{width}}" + "".join(f"{s[:14]:>15}" for s in short) + f"{'worst':>8}{'geomean':>9}"
    lines = [head]
    for name in names:
        values = [o.qualities[call][name] for o in outcomes]
        lines.append(f"{name:<{width}}" + "".join(f"{v:>15.3f}" for v in values)
                     + f"{min(values):>8.3f}{geometric_mean(values):>9.3f}")
    return "\n".join(lines)


def markdown_table(outcomes: list[Outcome], call: str) -> str:
    names = list(outcomes[0].qualities[call])
    cols = [o.problem.name for o in outcomes]
    lines = ["| rule | " + " | ".join(cols) + " | worst | geo. mean |",
             "|---" * (len(cols) + 3) + "|"]
    for name in names:
        values = [o.qualities[call][name] for o in outcomes]
        cells = " | ".join(f"{v:.2f}" for v in values)
        lines.append(f"| {name} | {cells} | {min(values):.2f} | {geometric_mean(values):.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="13 grid rates, 1 training seed, no CNN (about a minute)")
    parser.add_argument("--grid", type=int, default=None, help="grid rates (default 25)")
    parser.add_argument("--train-seeds", type=int, default=None, help="default 2")
    parser.add_argument("--only", nargs="*", default=None, help="problem names to run")
    parser.add_argument("--holdout", action="store_true",
                        help="run the four held-out problems instead of the six")
    parser.add_argument("--json", default=None, help="write suggestions and qualities here")
    parser.add_argument("--markdown", action="store_true", help="also print markdown tables")
    args = parser.parse_args(argv)
    grid = args.grid or (13 if args.quick else 25)
    train_seeds = args.train_seeds or (1 if args.quick else 2)
    problems = [p for p in make_problems() if (p.name in HOLDOUT) == args.holdout
                and (not args.only or p.name in args.only)]
    if args.quick and not args.only:
        # The CNN is most of the time (compiling it and its range tests), whatever the grid.
        problems = [p for p in problems if p.name != "digits-cnn-adamw"]
    print(f"jax {jax.__version__}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cpus; grid {grid} rates {GRID_LOW:g}..{GRID_HIGH:g}, "
          f"{train_seeds} training seed(s)")
    outcomes = []
    for problem in problems:
        outcome = run_problem(problem, grid, train_seeds)
        at = outcome.grid_lrs[int(np.nanargmax(outcome.problem.quality(outcome.grid_scores, outcome.best)))]
        print(f"{problem.name:<28} {problem.model_name}, {problem.optimizer_name}, "
              f"{problem.train_steps} steps: best {outcome.best:.4f} at lr {at:.3g} "
              f"({outcome.seconds:.0f} s)", flush=True)
        outcomes.append(outcome)
    for call, title in (("default", "default call: range_test(loss_fn, params, optimizer, data)"),
                        ("careful", f"careful call: val_data, num_seeds={CAREFUL_SEEDS}, init_fn")):
        print(f"\nquality ({title}); 1 = grid best")
        print(format_table(outcomes, call))
        if args.markdown:
            print()
            print(markdown_table(outcomes, call))
    print("\nsuggested learning rates:")
    for o in outcomes:
        for call in ("default", "careful"):
            row = ", ".join(f"{n.split()[-1]} {lr:.3g}" for n, lr in o.suggestions[call].items())
            print(f"  {o.problem.name:<28} {call:<8} {row}")
    if args.json:
        blob = [{"problem": o.problem.name, "grid_lrs": o.grid_lrs.tolist(),
                 "grid_scores": o.grid_scores.tolist(), "best": o.best,
                 "suggestions": o.suggestions, "qualities": o.qualities} for o in outcomes]
        with open(args.json, "w") as f:
            json.dump(blob, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
