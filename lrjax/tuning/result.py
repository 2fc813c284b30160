"""What a search returns: :class:`SearchResult` (host data, JSON round trip, a plot)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any

import numpy as np

from lrjax._engine.checks import check_static
from lrjax._engine.processes import is_first
from lrjax.tuning.space import Dimension, space_from_spec, space_to_spec

COMPLETE, FAIL, PRUNED = "complete", "fail", "pruned"
#: :meth:`SearchResult.plateau_trial`'s default: a trial is on the plateau when its
#: objective is within this share of the way from the best trial's to the reference.
PLATEAU_TOLERANCE = 0.01


def _finite_or_none(value: Any) -> float | None:
    value = None if value is None else float(value)
    return value if value is not None and math.isfinite(value) else None


@dataclasses.dataclass
class SearchResult:
    """The trials of a search and the best of them.

    Attributes:
        trials: one dict per trial, in trial-number order: ``number``, ``params`` (name ->
            number), ``value`` (the objective; None when the trial failed), ``metrics`` (name
            -> number, NaN kept as None), ``state`` (``"complete"``, ``"fail"`` for a NaN/inf
            objective, ``"pruned"`` when successive halving stopped it) and, for pruned
            trials, ``steps`` (how far it trained).
        space: the search space.
        objective: the metric that was optimized.
        direction: ``"minimize"`` or ``"maximize"``.
        method: the sampler's name.
        study: the ``optuna.Study`` when Optuna ran (not saved in JSON), else None.
    """

    trials: list[dict[str, Any]]
    space: dict[str, Dimension]
    objective: str
    direction: str
    method: str
    study: Any = None

    @property
    def completed(self) -> list[dict[str, Any]]:
        """The trials that finished with a finite objective."""
        return [t for t in self.trials if t["state"] == COMPLETE and t["value"] is not None]

    def top(self, k: int | None = None) -> list[dict[str, Any]]:
        """The ``k`` best completed trials (all with None), best first."""
        sign = 1.0 if self.direction == "minimize" else -1.0
        ranked = sorted(self.completed, key=lambda t: (sign * t["value"], t["number"]))
        return ranked if k is None else ranked[:k]

    @property
    def best_trial(self) -> dict[str, Any] | None:
        """The best completed trial (ties: the lowest number), or None if none completed."""
        best = self.top(1)
        return best[0] if best else None

    @property
    def best_params(self) -> dict[str, Any] | None:
        """The hyperparameters of :attr:`best_trial` (None if no trial completed)."""
        best = self.best_trial
        return None if best is None else dict(best["params"])

    @property
    def best_value(self) -> float:
        """The objective of :attr:`best_trial` (NaN if no trial completed)."""
        best = self.best_trial
        return math.nan if best is None else best["value"]

    def plateau_trial(self, reference: float, *, tolerance: float = PLATEAU_TOLERANCE,
                      param: str | None = None) -> dict[str, Any] | None:
        """The middle of the best trials' plateau: a pick that keeps away from a cliff.

        For ``minimize``, with ``best`` the best completed trial's objective and ``R`` the
        ``reference`` (what an untrained model scores), the plateau is every completed
        trial with

            ``value <= best + tolerance * (R - best)``

        (for ``maximize``, ``value >= best - tolerance * (best - R)``), and the pick is
        the plateau trial at the lower median of ``param`` (ties: the lowest trial
        number): a trial that was trained, not an interpolated value.

        Why: along a learning rate, the validation loss is often flat over a wide range
        and ends in a cliff where some trainings blow up. A search with few seeds per rate
        can see its best value right at that edge (two seeds that happened to survive,
        where four show one failure in four); the middle of the plateau scores as well
        and keeps its distance. On the finder benchmark (``benchmarks/finder_quality.py
        --search 8 --pick plateau``: 8 rates around the careful suggestion, 2 seeds
        each) ``tolerance`` 0.005 to 0.02 gave the same development-half result (25 of 25
        problems within 0.95 of the grid's best, against 24 of 25 for the best trial,
        whose worst was an SGD-momentum transformer at 0.73); 0.01 was fixed there and
        then checked on the 45 held-out problems (worst 0.81, 41 of 45 at 0.95, against
        the best trial's 0.62 and 41 of 45) and on 6 written after it was fixed (6 of
        6).

        Args:
            reference: the objective of an untrained model, finite and worse than the
                best trial's. For a learning-rate search that minimizes a validation loss:
                the range test's first validation loss,
                ``float(np.median(result.val_losses[..., 0]))`` (after one step at
                ``min_lr``).
            tolerance: the plateau's depth, a share of ``|R - best|`` in ``(0, 1]``
                (default ``PLATEAU_TOLERANCE``, 0.01).
            param: the hyperparameter whose median is taken; may be left out when the
                space has one. Its values must be numbers.

        Returns:
            The picked trial (a dict as in :attr:`trials`), or None when no trial
            completed.

        Raises:
            ValueError: a ``reference`` that is not a finite number or not worse than the
                best trial's objective, a ``tolerance`` outside ``(0, 1]``, a ``param``
                not in the space (or left out with several), or non-numeric values.

        Example:
            >>> result = SearchResult(
            ...     trials=[{"number": i, "params": {"lr": lr}, "value": v, "metrics": {},
            ...              "state": "complete"} for i, (lr, v) in enumerate(
            ...         [(0.01, 0.30), (0.03, 0.101), (0.1, 0.100), (0.3, 0.0999), (1.0, 2.0)])],
            ...     space={}, objective="val_loss", direction="minimize", method="grid")
            >>> result.best_params, result.plateau_params(reference=2.3, param="lr")
            ({'lr': 0.3}, {'lr': 0.1})

        References:
            Breiman, Friedman, Olshen & Stone, "Classification and Regression Trees", 1984,
            sec. 3.4.3 (the one-standard-error rule: among choices the data cannot tell
            apart, the safer one); Hastie, Tibshirani & Friedman, "The Elements of
            Statistical Learning", 2nd ed., 2009, sec. 7.10.
        """
        tolerance = check_static("tolerance", tolerance, low=0.0, high=1.0, low_open=True)
        reference = _finite_scalar(reference)
        names = list(self.space) if self.space else sorted(
            {name for t in self.trials for name in t["params"]})
        if param is None:
            if len(names) != 1:
                raise ValueError(f"param must name the hyperparameter to take the median of, "
                                 f"one of {names}.")
            param = names[0]
        elif param not in names:
            raise ValueError(f"param must be one of {names}, got {param!r:.60}.")
        best = self.best_trial
        if best is None:
            return None
        sign = 1.0 if self.direction == "minimize" else -1.0
        gap = sign * (reference - best["value"])
        if not gap > 0:
            raise ValueError(f"reference must be worse than the best trial's {self.objective} "
                             f"({best['value']:.6g}, {self.direction}), got {reference!r:.60}: "
                             "pass the objective of an untrained model.")
        edge = sign * best["value"] + tolerance * gap
        plateau = [t for t in self.completed if sign * t["value"] <= edge]
        values = [t["params"].get(param) for t in plateau]
        if not all(isinstance(v, (int, float, np.integer, np.floating))
                   and not isinstance(v, (bool, np.bool_)) for v in values):
            raise ValueError(f"param {param!r} must have numeric values to take a median of.")
        ordered = sorted(plateau, key=lambda t: (t["params"][param], t["number"]))
        return ordered[(len(ordered) - 1) // 2]

    def plateau_params(self, reference: float, *, tolerance: float = PLATEAU_TOLERANCE,
                       param: str | None = None) -> dict[str, Any] | None:
        """The hyperparameters of :meth:`plateau_trial` (None if no trial completed)."""
        trial = self.plateau_trial(reference, tolerance=tolerance, param=param)
        return None if trial is None else dict(trial["params"])

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The result as JSON text (NaN/inf as null); also written to ``path`` if given.

        Under ``jax.distributed`` every process gets the text and process 0 writes the file.
        """
        payload = {
            "format": "lrjax.SearchResult/1",
            "objective": self.objective,
            "direction": self.direction,
            "method": self.method,
            "space": space_to_spec(self.space),
            "best_params": self.best_params,
            "best_value": _finite_or_none(self.best_value),
            "trials": self.trials,
        }
        text = json.dumps(payload, allow_nan=False)
        if path is not None and is_first():  # jax.distributed: process 0 writes the file
            with open(path, "w", encoding="utf-8") as file:
                file.write(text)
        return text

    @classmethod
    def from_json(cls, source: str | os.PathLike) -> SearchResult:
        """Read :meth:`to_json`'s text, or a file holding it.

        A str starting with ``{`` or ``[`` is JSON text, any other str or path a file. The
        JSON must be an object with ``format`` ``"lrjax.SearchResult/1"``, ``objective``,
        ``direction``, ``method``, ``space`` and ``trials``, as :meth:`to_json` writes it;
        anything else is a ``ValueError`` saying what is missing.
        """
        if isinstance(source, os.PathLike) or (
                isinstance(source, str) and not source.lstrip().startswith(("{", "["))):
            with open(source, encoding="utf-8") as file:
                text = file.read()
        elif isinstance(source, str):
            text = source
        else:
            raise TypeError("source must be JSON text or a path to a JSON file, got "
                            f"{type(source).__name__}.")
        try:
            payload = json.loads(text)
        except RecursionError:
            raise ValueError("not a SearchResult JSON: nested too deeply to read.") from None
        return cls._from_payload(payload)

    @classmethod
    def _from_payload(cls, payload: Any) -> SearchResult:
        need = "a SearchResult JSON must be an object with format 'lrjax.SearchResult/1', "\
               "objective, direction, method, space and trials"
        if not isinstance(payload, dict) or payload.get("format") != "lrjax.SearchResult/1":
            raise ValueError(f"not a SearchResult JSON (missing format 'lrjax.SearchResult/1'): "
                             f"{need}; got {type(payload).__name__}.")
        missing = [k for k in ("objective", "direction", "method", "space", "trials")
                   if k not in payload]
        if missing:
            raise ValueError(f"{need}; missing {missing}.")
        for name in ("objective", "method"):
            if not isinstance(payload[name], str):
                raise ValueError(f"{need}: {name} must be a string, got {payload[name]!r:.60}.")
        if payload["direction"] not in ("minimize", "maximize"):
            raise ValueError(f"{need}: direction must be 'minimize' or 'maximize', got "
                             f"{payload['direction']!r:.60}.")
        spec = payload["space"]
        if not isinstance(spec, dict) or not all(isinstance(item, dict) for item in spec.values()):
            raise ValueError(f"{need}: space must map names to {{kind, ...}} objects.")
        try:
            space = space_from_spec(spec)
        except (KeyError, TypeError, ValueError) as error:
            kinds = sorted({str(item.get("kind")) for item in spec.values()})
            raise ValueError(f"{need}: space must map names to objects of kind 'uniform' or "
                             "'log_uniform' (with low and high) or 'choice' (with values); got "
                             f"kinds {kinds}: {type(error).__name__} {error}") from None
        return cls(trials=_check_trials(payload["trials"], need), space=space,
                   objective=payload["objective"], direction=payload["direction"],
                   method=payload["method"])

    def plot(self, path: str | os.PathLike | None = None) -> Any:
        """Objective against each hyperparameter (log axes for log spaces) and best so far.

        One panel per hyperparameter (completed trials as dots, pruned ones as grey circles
        at their last value, the best as a star, failed trials as crosses on the top edge) and a last panel with the best objective so far
        against the trial number. Needs matplotlib (``lrjax[plot]``).

        Returns:
            The matplotlib ``Figure`` (also saved to ``path`` if given; by process 0 only
            under ``jax.distributed``).
        """
        try:
            from matplotlib.figure import Figure
        except ImportError as error:
            raise ImportError(f"plot() needs matplotlib (pip install 'lrjax[plot]'): {error}") from error
        names = list(self.space)
        done = self.completed
        values = np.array([t["value"] for t in done], dtype=float)
        failed = [t for t in self.trials if t["state"] == FAIL]
        pruned = [t for t in self.trials if t["state"] == PRUNED and t["value"] is not None]
        shown = np.concatenate([values, [t["value"] for t in pruned]])
        log_y = shown.size > 0 and bool(np.all(shown > 0)) and shown.max() > 10 * shown.min()
        best = self.best_trial
        figure = Figure(figsize=(4.0 * (len(names) + 1), 3.6), layout="constrained")
        axes = figure.subplots(1, len(names) + 1, squeeze=False)[0]
        for ax, name in zip(axes, names):
            ax.scatter([t["params"][name] for t in done], values, s=18, alpha=0.7,
                       label="trial")
            if pruned:  # stopped early by successive halving: their value at that rung
                ax.scatter([t["params"][name] for t in pruned], [t["value"] for t in pruned],
                           s=18, facecolors="none", edgecolors="tab:gray",
                           label="pruned (early value)")
            if failed:
                top = values.max() if values.size else 1.0
                ax.scatter([t["params"][name] for t in failed], [top] * len(failed),
                           marker="x", color="tab:red", label="failed (NaN/inf)")
            if best is not None:
                ax.scatter([best["params"][name]], [best["value"]], marker="*", s=160,
                           color="tab:orange", zorder=3, label="best")
            if self.space[name].log:
                ax.set_xscale("log")
            if log_y:
                ax.set_yscale("log")
            ax.set_xlabel(name + (" (log)" if self.space[name].log else ""))
            ax.set_ylabel(self.objective)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        ax = axes[-1]
        ordered = sorted(done, key=lambda t: t["number"])
        if ordered:
            numbers = np.array([t["number"] for t in ordered])
            vals = np.array([t["value"] for t in ordered])
            running = np.minimum.accumulate(vals) if self.direction == "minimize" \
                else np.maximum.accumulate(vals)
            ax.scatter(numbers, vals, s=12, alpha=0.4, label="trial")
            ax.step(numbers, running, where="post", color="tab:orange", label="best so far")
            if log_y:
                ax.set_yscale("log")
            ax.legend(fontsize=8)
        ax.set_xlabel("trial number")
        ax.set_ylabel(self.objective)
        ax.set_title(f"{self.method}: best {self.best_value:.3g}", fontsize=9)
        ax.grid(alpha=0.3)
        if path is not None and is_first():  # jax.distributed: process 0 writes the file
            figure.savefig(path, dpi=110)
        return figure

    def __repr__(self) -> str:
        return (f"SearchResult(method={self.method!r}, trials={len(self.trials)}, "
                f"objective={self.objective!r}, best_value={self.best_value:.6g}, "
                f"best_params={self.best_params})")


def _finite_scalar(reference: Any) -> float:
    """``plateau_trial``'s reference as a float: a finite real number (Python, numpy or a
    concrete JAX scalar); anything else is a ValueError naming it."""
    try:
        value = np.asarray(reference)
    except Exception:  # a traced JAX value cannot become a host number
        value = None
    if (value is None or value.shape != () or value.dtype.kind not in "iuf"
            or not math.isfinite(float(value))):
        raise ValueError(f"reference must be a finite number (the objective of an untrained "
                         f"model), got {reference!r:.60}.")
    return float(value)


def _check_trials(trials: Any, need: str) -> list[dict[str, Any]]:
    """The ``trials`` of a SearchResult JSON, checked for what the result reads of them."""
    if not isinstance(trials, list):
        raise ValueError(f"{need}: trials must be a list, got {type(trials).__name__}.")
    for i, trial in enumerate(trials):
        problem = None
        if not isinstance(trial, dict):
            problem = f"is a {type(trial).__name__}, not an object"
        elif not all(k in trial for k in ("number", "params", "value", "metrics", "state")):
            problem = "needs number, params, value, metrics and state"
        elif trial["state"] not in (COMPLETE, FAIL, PRUNED):
            problem = f"has state {trial['state']!r:.40}, not complete, fail or pruned"
        elif isinstance(trial["number"], bool) or not isinstance(trial["number"], int):
            problem = f"has number {trial['number']!r:.40}, not an int"
        elif not isinstance(trial["params"], dict) or not isinstance(trial["metrics"], dict):
            problem = "needs params and metrics as objects"
        elif trial["value"] is not None and (isinstance(trial["value"], bool) or not isinstance(
                trial["value"], (int, float)) or not math.isfinite(trial["value"])):
            problem = f"has value {trial['value']!r:.40}, not a finite number or null"
        if problem is not None:
            raise ValueError(f"{need}: trial {i} {problem}.")
    return trials


def make_trial(number: int, params: dict, metrics: dict[str, float], objective: str,
               state: str | None = None, **extra: Any) -> dict[str, Any]:
    """One trial's record; a non-finite objective makes it ``"fail"`` with value None."""
    value = _finite_or_none(metrics.get(objective))
    if state is None:
        state = COMPLETE if value is not None else FAIL
    return {
        "number": int(number),
        "params": {k: (v.item() if isinstance(v, np.generic) else v) for k, v in params.items()},
        "value": value if state != FAIL else None,
        "metrics": {k: _finite_or_none(v) for k, v in metrics.items()},
        "state": state,
        **extra,
    }
