"""The range test's result: :class:`RangeTestResult`, its suggestions and its JSON form.

Separate from ``finder/driver.py`` because a result lives on after the run: it is read,
plotted and saved or loaded as JSON (:meth:`RangeTestResult.to_json`,
:meth:`RangeTestResult.from_json`) without the compiled program that made it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lrjax.finder.suggest import baseline_check as _baseline
from lrjax.finder.suggest import curve as _curve
from lrjax.finder.suggest import cyclical_bounds as _suggest_cyclical
from lrjax.finder.suggest import readability_check as _readability
from lrjax.finder.suggest import rules as _suggest
from lrjax.finder.suggest import stability_check as _stability
from lrjax.finder.suggest import vote as _suggest_result
from lrjax.tuning.space import LogUniform, log_uniform

#: :meth:`RangeTestResult.search_space`'s range around a suggestion ``lr``: ``lr / 8`` to
#: ``lr * 30``. Read off the finder benchmark's first 38 problems (where the grid's best
#: rate lay relative to the careful suggestion: 0.14x to 20x), then checked on 38 problems
#: written after it was fixed (``benchmarks/finder_quality.py --search``).
SEARCH_RANGE = (1 / 8, 30.0)


def _grid_points(values: Mapping[str, Sequence[float]]) -> np.ndarray:
    """Every combination of the swept values, ``(points, names)``, the first name slowest."""
    axes = np.meshgrid(*[np.asarray(v, np.float64) for v in values.values()], indexing="ij")
    return np.stack([a.reshape(-1) for a in axes], axis=-1)


_ARRAY_FIELDS = ("lrs", "losses", "smoothed_losses", "val_losses")


def _encode(values: np.ndarray) -> dict:
    """NaN-safe JSON for a float array: non-finite values as strings, exact float repr."""
    def item(v: float) -> Any:
        return float(v) if math.isfinite(v) else repr(float(v))

    flat = [item(v) for v in np.asarray(values, np.float64).reshape(-1)]
    return {"dtype": str(values.dtype), "shape": list(values.shape), "data": flat}


_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _decode(name: str, blob: Any) -> np.ndarray:
    """An array of :func:`_encode`: a float dtype, a shape of sizes >= 0, a flat list of
    numbers (non-finite ones as ``"nan"``, ``"inf"``, ``"-inf"``) of the shape's size."""
    need = (f"{name}: not an encoded array ({{dtype: a float dtype, shape: a list of "
            "sizes, data: a flat list of numbers}})")
    if not isinstance(blob, Mapping) or not all(k in blob for k in ("dtype", "shape", "data")):
        raise ValueError(f"{need}; got {type(blob).__name__}.")
    try:
        dtype = np.dtype(blob["dtype"]) if isinstance(blob["dtype"], str) else None
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind != "f":
        raise ValueError(f"{need}: dtype {blob['dtype']!r:.40} is not a float dtype.")
    shape, data = blob["shape"], blob["data"]
    if not isinstance(shape, list) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise ValueError(f"{need}: shape {shape!r:.60} is not a list of sizes >= 0.")
    if not isinstance(data, list) or len(data) != math.prod(shape):
        raise ValueError(f"{need}: data must be a list of {math.prod(shape)} numbers (the "
                         f"shape's size), got {type(data).__name__}"
                         + (f" of {len(data)}." if isinstance(data, list) else "."))
    flat = []
    for v in data:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            flat.append(float(v))
        elif isinstance(v, str) and v in _NON_FINITE:
            flat.append(_NON_FINITE[v])
        else:
            raise ValueError(f"{need}: data holds {v!r:.40}, not a number.")
    return np.asarray(flat, np.float64).astype(dtype).reshape(shape)


def _regular(items: list) -> bool:
    """Whether nested lists are rectangular (numpy would otherwise build a ragged array)."""
    try:
        np.asarray(items, dtype=np.float64)
    except (ValueError, TypeError):
        return False
    return True


def _step_or_never(value: Any, num_steps: int) -> bool:
    """An int in ``[-1, num_steps)`` (``-1``: the curve never diverged)."""
    return (isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
            and -1 <= value < num_steps)


def _default_reader(peak: bool, options: dict[str, Any]) -> Any:
    """``result -> rate``: ``fall``'s vote with ``options`` (``suggest()``), or the peak's
    (``peak_lr()``), without the stability check (the replicas of that check read by it)."""
    if peak:
        return lambda result: result._answer(result._peak_readings(), "peak_lr", False)
    return lambda result: result._answer(_suggest_result.read_result(
        result, _suggest.DEFAULT_METHOD, **options), _suggest.DEFAULT_METHOD, False)


def _fall_peaks(result: RangeTestResult, factor: float) -> list[_curve.Reading]:
    """``result``'s ``fall`` readings times ``factor``, never below the constant rate."""
    sgd_factor = _suggest_result.sgd_factor_of(result)
    last = float(result.lrs[-1])

    def peak(reading: _curve.Reading) -> _curve.Reading:
        if reading.failed is not None:  # the fallback lrs[0] stays as suggest() gives it
            return reading
        # Never below the constant rate suggest() gives (larger with the SGD factor).
        constant = min(reading.lr * sgd_factor, last)
        return reading._replace(lr=max(reading.lr * factor, constant))

    options = _suggest_result.rule_options(_suggest.DEFAULT_METHOD, {"sgd_factor": 1.0}, {})
    return [peak(r) for r in _suggest_result.read_result(
        result, _suggest.DEFAULT_METHOD, **options)]


def _recorded(call: Any) -> tuple[Any, list[warnings.WarningMessage]]:
    """``call()`` and the warnings it raised, held back to be said at the user's line
    (:func:`_said_at_caller`): a method that reads through ``suggest()`` adds a frame."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = call()
    return value, caught


def _said_at_caller(caught: list[warnings.WarningMessage]) -> None:
    """Warns each of ``caught`` again at the caller of the method that called this."""
    for warning in caught:
        warnings.warn(warning.message, stacklevel=3)


@dataclasses.dataclass(frozen=True, eq=False)
class RangeTestResult:
    """The curves of a range test, as host numpy arrays, and what to read off them.

    Attributes:
        lrs: ``(num_steps,)`` learning rate each step trained at.
        losses: ``(*batch_shape, num_steps)`` raw training loss (NaN after divergence).
        smoothed_losses: same shape, the bias-corrected EMA.
        diverged_at: step of divergence: ``int`` or ``None`` for one curve, an int array
            with ``-1`` for "never" for batched results.
        val_losses: validation loss after each update, or ``None``.
        aux: the stacked aux pytree (``has_aux``), or ``None``.
        batch_axes: names of the leading axes (sweep names, then ``"seed"``).
        sweep: ``{name: values}`` of a sweep, or ``None``.
        settings: ``min_lr``, ``max_lr``, ``num_steps``, ``mode``, ``smoothing``,
            ``update_scaling`` (how the optimizer's step grows with the gradient: 1 for
            SGD, 0 for Adam; :func:`lrjax.finder.update_scaling`), ``noise_response``
            (for an adaptive optimizer, how much of a weak signal its step keeps in
            noise: 1 for Adam; :func:`lrjax.finder.noise_response`; ``None`` for one that
            steps like SGD), ...

    Example:
        >>> result = lrjax.range_test(loss_fn, params, optax.sgd, batches)  # doctest: +SKIP
        >>> result.suggest("valley"), result.cyclical_bounds()  # doctest: +SKIP
        >>> restored = RangeTestResult.from_json(result.to_json())  # doctest: +SKIP

    References:
        Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017, sec. 3.3
        (the LR range test); fastai ``lr_find`` and torch-lr-finder for the suggestion rules.
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed_losses: np.ndarray
    diverged_at: int | None | np.ndarray
    val_losses: np.ndarray | None = None
    aux: Any = None
    batch_axes: tuple[str, ...] = ()
    sweep: dict[str, list[float]] | None = None
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return self.losses.shape[:-1]

    @property
    def num_steps(self) -> int:
        return int(self.lrs.shape[0])

    def sweep_points(self) -> list[dict[str, float]]:
        """The hyperparameters of each sweep row, in row order (``[]`` without a sweep)."""
        if not self.sweep:
            return []
        return [dict(zip(self.sweep, map(float, point))) for point in _grid_points(self.sweep)]

    def _diverged_array(self) -> np.ndarray:
        if self.diverged_at is None:
            return np.full(self.batch_shape, -1)
        return np.asarray(self.diverged_at).reshape(self.batch_shape)

    @property
    def stopped_early(self) -> bool:
        """True when every curve diverged before the last step (later steps were skipped)."""
        steps = self._diverged_array()
        return bool(np.all((steps >= 0) & (steps < self.num_steps - 1)))

    def _before_divergence(self, values: np.ndarray) -> np.ndarray:
        """``values`` as float64 rows ``(curves, steps)``, NaN from each divergence step on."""
        curves = np.array(values, np.float64).reshape(-1, self.num_steps)
        for row, step in zip(curves, self._diverged_array().reshape(-1)):
            if step >= 0:
                row[step:] = np.nan
        return curves

    def smoothed_before_divergence(self) -> np.ndarray:
        """The smoothed losses with NaN from each curve's divergence step on (float64).

        This is what the suggestion rules read: the diverging step itself is excluded.
        """
        return self._before_divergence(self.smoothed_losses).reshape(self.smoothed_losses.shape)

    def losses_before_divergence(self) -> np.ndarray:
        """The raw losses with NaN from each curve's divergence step on (float64).

        This is what :meth:`cyclical_bounds` reads: the diverging step itself is excluded.
        """
        return self._before_divergence(self.losses).reshape(self.losses.shape)

    def _rule_curves(self) -> np.ndarray:
        return self._before_divergence(self.smoothed_losses)

    def suggest(
        self,
        method: str = _suggest.DEFAULT_METHOD,
        *,
        per_curve: bool = False,
        fraction: float | None = None,
        half_width: int | None = None,
        train_steps: int | None = None,
        divisor: float | None = None,
        tolerance: float | None = None,
        valley_weight: float | None = None,
        sgd_factor: float | None = None,
        noise_exponent: float | None = None,
        skip_start: int | None = None,
        skip_end: int | None = None,
        lr_diff: int | None = None,
        thresh: float | None = None,
        adjust_value: float | None = None,
        **unknown: Any,
    ) -> float | np.ndarray:
        """A suggested learning rate; batched results give the lower median over curves.

        Every option defaults to ``None``: the rule's own default. An option the chosen
        rule does not take is a ``ValueError`` naming the rule; an unknown keyword a
        ``TypeError`` listing the accepted ones.

        Args:
            method: ``fall`` (the default: lrjax's rule; on the raw validation curve
                when there is one, a fifth of the rate where it turns up, see
                ``lrjax.finder.suggest.turn_rule``; else 0.3 of the training curve's fall,
                see ``lrjax.finder.suggest.fall_rule``; blended with ``valley``, see
                ``valley_weight``; times a factor for SGD-like and for some adaptive
                optimizers, see ``sgd_factor`` and ``noise_exponent``), fastai's ``valley``,
                ``slide``, ``steep``, ``minimum``, or torch-lr-finder's ``steepest``
                (see ``lrjax.finder.suggest.rules``).
            per_curve: return the ``batch_shape`` array of per-curve suggestions instead
                (``lrs[0]`` for a curve the rule cannot read, with a warning).
            fraction: ``fall``: share of the fall covered (default 0.3; with
                ``train_steps``, where the hint's raise stops, 0.75); on a validation
                curve, read it by this share of its fall instead of by its turn.
            half_width: ``fall``: the smoother's half-width in points (default 5% of the
                steps).
            train_steps: ``fall``: the steps of the constant-rate training to come;
                raises the training curve's reading toward the time-matched rate, never
                past 3/4 of the fall nor below the plain reading
                (``lrjax.finder.suggest.fall_rule``). Not applied to a validation turn
                (as ``lrjax.finder.suggest.suggest_turn(..., train_steps=)``) nor to a training curve
                too noisy to read (its minimum is a noise dip).
            divisor: ``fall`` on a validation curve: the turn's rate over this (default 5).
            tolerance: ``fall`` on a validation curve: the rise that is a turn, as a share
                of the fall so far (default 0.3).
            valley_weight: ``fall``: the weight ``w`` of fastai's ``valley`` (read on the
                same curve's EMA) in the per-curve reading ``lr**(1 - w) * valley**w``, in
                ``[0, 1]`` (default 0.35; 0 gives the turn or fall reading alone). A
                training curve too noisy to read gives the larger of its ``valley`` and
                ``slide`` readings instead, whatever ``w`` (``lrjax.finder.suggest.vote``).
            sgd_factor: ``fall``: for an optimizer whose step grows in proportion to the
                gradient (SGD, momentum, Nesterov, SGDW, Adagrad at its start; the range
                test measures it, ``settings["update_scaling"] > 0.5``, see
                :func:`lrjax.finder.update_scaling`), the constant rate is this factor times
                the reading (the valley / slide fallback too, on a noisy curve), at most the
                ramp's last rate (default 4; 1 gives the reading). Not applied to
                adaptive optimizers (Adam, AdamW, RMSProp, Lion, ...), to a linear ramp,
                nor to a result without that setting (built by hand or saved before
                lrjax measured it: set it to 1.0 for SGD). :meth:`peak_lr` is never below
                the rate it gives.
            noise_exponent: ``fall``: for an adaptive optimizer whose step keeps less of a
                weak mean gradient under noise than on a steady gradient
                (``settings["noise_response"]`` ``r < 1``, measured by the range test,
                :func:`lrjax.finder.noise_response`: Adamax about 0.37, AdaBelief about
                0.22, Adam 1), the reading (and :meth:`peak_lr`) is multiplied by
                ``r ** -noise_exponent``, at most the ramp's last rate (default 0.5; 0
                turns it off). Its step shrinks as the gradient turns to noise, so a
                training keeps moving at rates above the ramp's reading.
            skip_start: the peers' rules: points dropped at the start (default
                ``num_steps // 10``; 10 for ``steepest``).
            skip_end: the peers' rules: recorded points dropped at the end (default 5).
            lr_diff: ``slide``: the window in steps (default 15).
            thresh: ``slide``: the gradient difference that stops the window (0.005).
            adjust_value: ``slide``: factor on the rate found (default 1).

        Returns:
            A float, or an array with ``per_curve``. Curves the rule cannot read
            (diverged at once, flat, never falling) do not vote; a warning counts them.
            When the curves' fall is not clearly larger than their noise (the mean
            curve's fall < 8 x its smoothed noise, :attr:`readability`), a rate is still
            returned, with an ``lrjax.UnreadableCurveWarning`` saying what would help:
            the peers' rules give their own reading, ``fall`` gives the larger of
            fastai's ``valley`` and ``slide`` (the documented fallback: their EMA
            averages the noise); a validation curve
            that noisy is not read (``fall`` reads the training curve instead, with the
            warning). On readable curves of a log-spaced ramp (at most 16 of them),
            ``fall``'s suggestion (not ``per_curve``) also warns with ``lrjax.UnstableSuggestionWarning`` when
            drawing the curves' noise again moves it over a factor 10 or more
            (:meth:`stability`; about 0.1 s). With ``range_test(..., baseline_loss=)``, a
            range test that saw no learning (:attr:`beyond_baseline` under 0.02) warns
            with ``lrjax.NoLearningWarning``, and ``fall`` returns at least fastai's
            ``minimum`` there (a tenth of the rate at the training EMA's lowest point:
            the one landmark such a curve has), per curve with ``per_curve``.

        Raises:
            TypeError: an unknown keyword argument.
            ValueError: an unknown ``method`` or an option it does not take.

        Example:
            >>> result.suggest()  # doctest: +SKIP
            >>> result.suggest("slide", lr_diff=10)  # doctest: +SKIP
            >>> result.suggest(train_steps=5_000)  # doctest: +SKIP
        """
        options = _suggest_result.rule_options(method, {
            "fraction": fraction, "half_width": half_width, "train_steps": train_steps,
            "divisor": divisor, "tolerance": tolerance, "valley_weight": valley_weight,
            "sgd_factor": sgd_factor, "noise_exponent": noise_exponent,
            "skip_start": skip_start,
            "skip_end": skip_end, "lr_diff": lr_diff, "thresh": thresh,
            "adjust_value": adjust_value}, unknown)
        readings = _suggest_result.read_result(self, method, **options)
        answer = self._answer(readings, method, per_curve)
        fall = method == _suggest.DEFAULT_METHOD
        share = self.beyond_baseline  # read once: the floor and the warning both need it
        if fall:
            answer = self._edge_floor(answer, per_curve, share)
            if not per_curve:
                self._check_stability(_default_reader(False, options), method)
        self._check_baseline(share, floored=fall)
        return answer

    def _edge_floor(self, answer: float | np.ndarray, per_curve: bool,
                    share: float | None) -> float | np.ndarray:
        """``fall`` and :meth:`peak_lr` on a range test that saw no learning
        (:attr:`beyond_baseline` under ``LEARNED_SHARE``): at least fastai's ``minimum``
        (a tenth of the rate at the training EMA's lowest point), per curve or voted.

        Why: such a curve turned while the model only calibrated its output, and says
        nothing about where it learns; the one landmark left is where training stops
        being stable, and the rate an order of magnitude below it is fastai's rule of
        thumb. Chosen on the finder benchmark's development half (the 7 careful calls
        the warning fires on: worst 0.562 -> 0.768, interpolated) and checked on a batch
        of 8 held-out problems written before it ran (``docs/benchmarks/finder_quality.md``).
        ``share`` is :attr:`beyond_baseline`."""
        if not _baseline.not_learned(share):
            return answer
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the curves' own warnings come with the answer
            floor = self._answer(_suggest_result.read_result(self, "minimum"), "minimum",
                                 per_curve)
        return np.maximum(answer, floor) if per_curve else max(answer, floor)

    def _check_baseline(self, share: float | None, floored: bool = False) -> None:
        """Warns (``NoLearningWarning``, at the caller of ``suggest`` / ``peak_lr``) when
        ``share`` (:attr:`beyond_baseline`) is under ``LEARNED_SHARE``; nothing without a
        baseline. ``floored``: the answer went through :meth:`_edge_floor` (the message
        says so)."""
        curve = "training" if self.val_losses is None else "validation"
        _baseline.warn_if_not_learned(share, self.settings.get("baseline_loss"),
                                      curve, stacklevel=4, floored=floored)

    def _check_stability(self, read: Any, rule: str) -> None:
        """Warns when ``read``'s suggestion moves by more than a factor 10 as the curves'
        noise is drawn again; not on training curves too noisy to read (warned already),
        on a ramp that is not log-spaced, nor on more than ``MAX_CHECKED_CURVES`` (16)
        curves (its cost grows with them)."""
        if (math.prod(self.batch_shape) <= _stability.MAX_CHECKED_CURVES
                and _stability.log_ramp(self) and _suggest_result.reads_readable_training(self)):
            _stability.warn_if_unstable(self, read, rule, stacklevel=4)

    def stability(self, *, peak: bool = False, train_steps: int | None = None,
                  replicas: int = 64, seed: int = 0) -> _stability.Stability:
        """How far the default suggestion moves when the curves' noise is drawn again.

        Each raw curve (training, and validation when there is one) before divergence is
        split into a smooth part ``s`` (at each point, the least-squares line through the
        ``fall`` rule's window around it) and its residual, and ``replicas`` results

            ``y* = s + sign * (y - s)``,  a random sign per step (the wild bootstrap)

        with their EMA recomputed are read as :meth:`suggest` (or :meth:`peak_lr` with
        ``peak=True``) reads this one. The suggestion is stable when the replicas' 10th
        and 90th percentiles are less than a factor 10 apart (``log10(q90 / q10) < 1``);
        :meth:`suggest` and :meth:`peak_lr` warn (``lrjax.UnstableSuggestionWarning``)
        when it is not, on curves readable by :attr:`readability`, a log-spaced ramp
        (the default ``mode="exp"``) and results of at most 16 curves (seeds x sweep
        values; the cost grows with them, about 40 ms a curve, 70 ms for ``peak_lr()``
        with a validation curve, which also reads the training curve); see
        ``lrjax.finder.suggest.stability_check`` for why and how 1 was chosen.

        Args:
            peak: read the replicas by :meth:`peak_lr` instead of :meth:`suggest`.
            train_steps: the hint :meth:`suggest` takes (not with ``peak``).
            replicas: replicas to read (>= 2; default 64).
            seed: the generator's seed (the same seed, the same answer).

        Returns:
            ``Stability(stable, low, high, decades, replicas)``: the replicas' 10th and
            90th percentiles and ``log10(high / low)``.

        Raises:
            ValueError: a linear ramp (``mode="linear"``), ``train_steps`` with ``peak``,
                ``replicas`` < 2.

        Example:
            >>> result.stability()  # doctest: +SKIP
            Stability(stable=True, low=0.0021, high=0.0048, decades=0.36, replicas=64)

        References:
            Wu, "Jackknife, bootstrap and other resampling methods in regression
            analysis", Annals of Statistics 1986 (the wild bootstrap).
        """
        if peak and train_steps is not None:
            raise ValueError("stability: train_steps is for suggest(), not with peak=True.")
        options = _suggest_result.rule_options(
            _suggest.DEFAULT_METHOD, {"train_steps": train_steps}, {})
        return _stability.suggestion_stability(self, _default_reader(peak, options),
                                               replicas=replicas, seed=seed)

    def _answer(self, readings: list[_curve.Reading], method: str,
                per_curve: bool) -> float | np.ndarray:
        """The per-curve rates (``lrs[0]`` with a warning for an unread curve) or their vote."""
        if per_curve:
            for reading in readings:
                if reading.failed is not None:
                    _curve._fallback(np.asarray(self.lrs, np.float64), method, reading.failed)
            return np.asarray([r.lr for r in readings]).reshape(self.batch_shape)
        return _suggest_result.combine_readings(readings, self.lrs, method)

    @property
    def readability(self) -> _readability.Readability:
        """Whether the training curves' fall stands out of their noise.

        ``Readability(readable, fall, noise, ratio, window)`` (``lrjax.finder.suggest.readability_check.readability``) of
        the MEAN of the raw training curves (every seed and sweep value) over the steps
        all of them recorded before divergence: ``fall`` = start level (median of the
        first tenth) minus the minimum of the centred 5%-half-width mean, ``noise`` = a
        robust (MAD) standard deviation of each loss's residual from the median of its 4
        neighbours, readable when ``fall >= 8 * noise / sqrt(window)`` (the noise left
        after the rule's ``window``-point mean). The mean of ``n`` independent
        seeds has ``1 / sqrt(n)`` of one seed's noise and the same fall, so more seeds
        (``num_seeds``) make a noisy curve readable. Per curve:
        :meth:`readability_per_curve`.

        Example:
            >>> result.readability  # doctest: +SKIP
            Readability(readable=True, fall=1.93, noise=0.061, ratio=31.6)
        """
        return _suggest_result.result_readability(
            _suggest_result.log_spaced(self.lrs, self._before_divergence(self.losses)),
            self.num_steps)

    @property
    def val_readability(self) -> _readability.Readability | None:
        """:attr:`readability` of the validation curves (``None`` without ``val_losses``)."""
        if self.val_losses is None:
            return None
        return _suggest_result.result_readability(
            _suggest_result.log_spaced(self.lrs, self._before_divergence(self.val_losses)),
            self.num_steps)

    @property
    def beyond_baseline(self) -> float | None:
        """How far below a constant predictor's loss the range test got, as a share of it.

        ``(baseline_loss - L) / |baseline_loss|``, ``L`` the median over curves of the
        lowest point of each validation curve (each training curve without
        ``val_losses``) smoothed as the ``fall`` rule smooths it, before divergence
        (``lrjax.finder.suggest.baseline_check.share_below``); ``baseline_loss`` is
        ``settings["baseline_loss"]`` (``range_test(..., baseline_loss=)``). ``None``
        without a baseline, NaN when no curve is long enough to smooth. Under
        ``LEARNED_SHARE`` (0.02) the curve shows the model calibrating its output, not
        learning the task: :meth:`suggest` and :meth:`peak_lr` warn
        (``lrjax.NoLearningWarning``), and ``fall`` and :meth:`peak_lr` return at least
        fastai's ``minimum`` (``suggest("minimum")``).

        Example:
            >>> result.beyond_baseline  # doctest: +SKIP
            0.41
        """
        baseline = self.settings.get("baseline_loss")
        if baseline is None:
            return None
        values = self.losses if self.val_losses is None else self.val_losses
        return _baseline.share_below(self._before_divergence(values), baseline, self.num_steps)

    def readability_per_curve(self, validation: bool = False) -> list[_readability.Readability]:
        """:attr:`readability` of each training (or validation) curve, in row order
        (the batch axes flattened). A linear ramp is read as the log-spaced ramp with the
        same ends would record it (the start and smoothing assume log spacing)."""
        values = self.val_losses if validation else self.losses
        if values is None:
            raise ValueError("this result has no val_losses.")
        rows = _suggest_result.log_spaced(self.lrs, self._before_divergence(values))
        return [_readability.readability(row, num_steps=self.num_steps) for row in rows]

    def suggestions(self) -> dict[str, float]:
        """Every rule's suggestion (lower median over curves), the default ``fall`` first."""
        every, caught = _recorded(
            lambda: {method: self.suggest(method) for method in _suggest.SUGGESTERS})
        _said_at_caller(caught)
        return every

    def spread(self, method: str = _suggest.DEFAULT_METHOD) -> float:
        """``log10(max / min)`` of the per-curve suggestions: their spread in decades."""
        values, caught = _recorded(lambda: self.suggest(method, per_curve=True))
        _said_at_caller(caught)
        values = np.asarray(values).reshape(-1)
        return float(np.log10(values.max() / values.min()))

    def peak_lr(self, *, per_curve: bool = False) -> float | np.ndarray:
        """The PEAK rate of a schedule that anneals (one-cycle, cosine, WSD), not a constant rate.

        A schedule spends most steps below its peak, so its best peak is higher than the
        best constant rate. On a training curve the peak is ``2 x`` the ``fall`` reading
        (``suggest()``: 0.3 of the fall); on a readable validation curve it is the
        turn reading itself (a fifth of the rate where held-out loss turns up, already
        higher), but never below the peak the same seed's training curve gives.
        No ``train_steps`` hint (it is for constant-rate trainings).

        Formula, per curve (seeds vote after, by their lower median):
        ``peak = max(turn, c x turn, 2 x fall, c x fall)`` with a validation curve and
        ``max(2 x fall, c x fall)`` without; ``turn`` and ``fall`` are what
        ``suggest(sgd_factor=1)`` reads off the validation and off the training curve,
        ``c`` the SGD factor (4 for an optimizer that steps like SGD, else 1).

        Chosen on the finder benchmark's development half (``benchmarks/finder_quality.py``,
        3 schedule problems: a cosine-decayed LSTM, a one-cycle BatchNorm + dropout MLP, a
        cosine AdamW MLP) and reported on its held-out half (a one-cycle transformer, a
        one-cycle SGD MLP, a cosine Adam MLP), 4-seed grids: training curve x2, worst /
        geometric mean 0.982 / 0.993 (development) and 0.964 / 0.982 (held-out),
        interpolated on the grid, where fastai's ``valley`` scored 0.894 / 0.941 and
        0.939 / 0.962 and ``suggest()`` itself (x1) 0.881 / 0.950 and 0.933 / 0.977
        (x1.5, x2.5 and x3 on development: 0.957, 0.967, 0.859 worst). Trained, the
        LSTM's peak scores 0.81: at most peaks from 0.15 to 0.40 one of its 4 training
        runs fails, see ``docs/benchmarks/finder_quality.md``.

        **Never below the constant rate:** ``max(that, suggest())``. That matters only for
        an optimizer that steps like SGD, whose ``suggest()`` carries the SGD factor 4
        (``sgd_factor=``): its peak is then the constant rate, 4x the reading (2x the
        training-curve peak, 4x the validation one). Chosen on the finder benchmark's SGD
        schedule problems (development: the cosine LSTM and a fifth batch's cosine
        momentum MLP, one-cycle logistic regression and cosine Nesterov MLP, interpolated):
        worst / geometric mean 0.726 / 0.885 -> 0.760 / 0.873 (default call) and 0.755 /
        0.902 -> 0.878 / 0.933 (careful call); held-out, read after (a one-cycle momentum
        MLP, a one-cycle momentum MLP on 90 rows, a cosine linear regression, a one-cycle
        SGDW MLP): 0.700 / 0.904 -> 0.843 / 0.954 and 0.918 / 0.972 -> 0.962 / 0.987.
        Trained, the cosine LSTM's default-call peak (0.35, in the range where its runs
        fail by chance) scores 0.58 where the old peak (0.17) scored 1.00.

        **A validation peak is never below the training peak.** A validation curve turns
        where a CONSTANT rate stops generalising better; on slow nonlinear classification
        it bumps while the output layer calibrates, long before a schedule, which anneals,
        stops gaining from a higher peak (a one-cycle checkerboard MLP's turn read 50x
        below its best peak). Chosen on the finder benchmark's 41 development problems
        (careful call, interpolated): worst / geometric mean 0.393 / 0.935 -> 0.562 /
        0.943 (a cosine Adam MLP that overfits 200 rows 0.999 -> 0.956); the held-out half,
        read after, 0.362 / 0.911 -> 0.477 / 0.927; then checked on a nineteenth batch of
        8 held-out schedules written before it ran (commit b23cd5f; kept unless its worst
        or geometric mean fell by more than 0.005): 0.446 / 0.865 -> 0.544 / 0.888.

        Args:
            per_curve: the per-curve peaks (``batch_shape`` array) instead of their vote.

        Returns:
            The suggested peak rate (a float, or an array with ``per_curve``); warns as
            :meth:`suggest` does when it moves with the noise (:meth:`stability` with
            ``peak=True``), and on a range test that saw no learning is at least fastai's
            ``minimum``, as ``suggest()`` is. A curve
            no rule can read (flat, never falling, diverged at once) gives what
            ``suggest()`` gives it, the smallest rate tested, with the same warning: no
            factor applies to a fallback.

        Example:
            >>> import optax
            >>> result.peak_lr()  # doctest: +SKIP
            >>> schedule = optax.cosine_onecycle_schedule(1_000, result.peak_lr())  # doctest: +SKIP

        References:
            Smith & Topin, "Super-Convergence", 2017 (one-cycle's peak from the range test);
            Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017.
        """
        readings, caught = _recorded(self._peak_readings)
        _said_at_caller(caught)
        if not per_curve:
            self._check_stability(_default_reader(True, {}), "peak_lr")
        share = self.beyond_baseline
        self._check_baseline(share, floored=True)
        # The vote is a lower median, which the peak's monotone map commutes with.
        return self._edge_floor(self._answer(readings, "peak_lr", per_curve), per_curve, share)

    def _peak_readings(self) -> list[_curve.Reading]:
        """Each curve's ``fall`` reading made a schedule's peak (:meth:`peak_lr`): with a
        readable validation curve, the larger of its turn's peak and the peak of the same
        curve's training loss."""
        validation = _suggest_result.reads_validation(self)
        readings = _fall_peaks(self, 1.0 if validation else _suggest_result.PEAK_FACTOR)
        if not validation:
            return readings
        with warnings.catch_warnings():
            # The same training curves were read (and warned about) with the validation.
            warnings.simplefilter("ignore")
            trained = _fall_peaks(dataclasses.replace(self, val_losses=None),
                                  _suggest_result.PEAK_FACTOR)
        return [_suggest_result.larger(turn, fall) for turn, fall in zip(readings, trained)]

    def search_space(self, lr: float | None = None, *,
                     name: str = "learning_rate") -> dict[str, LogUniform]:
        """The learning-rate range to search around a suggestion: ``log_uniform(lr/8, lr*30)``.

        A range test reads one curve; which rate trains best for the full planned run
        (its length, its schedule, how much the data lets it overfit) the curve cannot
        always tell: on the finder benchmark the careful suggestion missed 0.95 of the
        grid's best on 37 of 154 problems (interpolated; on the first 106 the misses'
        best grid rates lay 0.15x to 69x from it). A few full trainings around it, picked by a validation loss, settle it:
        pass this space to :func:`lrjax.search` (8 trials, ``method="quasirandom"``, a
        ``train_fn`` from ``make_train_fn(..., num_seeds=2, seed_reduce="max")``) and pick
        with :meth:`lrjax.SearchResult.plateau_params`, the untrained validation loss
        (``float(np.median(result.val_losses[..., 0]))``) as its reference.

        Formula: ``log(rate) ~ U(log(lr / 8), log(30 lr))`` for the suggestion ``lr``.

        Measured by ``benchmarks/finder_quality.py --search 8 --pick plateau`` (8
        scrambled-Sobol rates in this range around the careful suggestion, each trained
        the planned steps from 2 seeds, scored by the worse seed's validation loss, the
        plateau's middle picked, quality interpolated on a 4-seed grid): the pick scored
        at least 0.95 of the grid's best on 140 of 154 problems, where the suggestion alone
        scored at least 0.95 on 117; below 0.8 four times (0.08, an AdaBelief MLP validated
        on 100 rows, where a trial past its cliff validated as well as the plateau; 0.45, a
        one-cycle Lion MLP whose best rate lies past the range; 0.66 and 0.79, long
        Nesterov and momentum checkerboards, where the range reaches past their stability
        edge). The misses
        validate on 200 rows or fewer or are slow nonlinear classifications (a
        checkerboard, clustered classes). See ``docs/benchmarks/finder_quality.md``.

        Args:
            lr: the suggestion to search around (default :meth:`suggest`; pass
                :meth:`peak_lr` for the peak of a schedule, or
                ``suggest(train_steps=...)``), a positive finite number.
            name: the hyperparameter's name in the space (the keyword your
                ``train_fn`` reads).

        Returns:
            ``{name: lrjax.log_uniform(lr / 8, lr * 30)}``. The top may lie past the
            rate where the range test diverged: a longer or annealed training can take
            it, and a trial that diverges loses the pick.

        Raises:
            ValueError: ``lr`` not a positive finite number, or ``name`` not a
                non-empty string.

        Example:
            >>> import lrjax
            >>> space = result.search_space(result.peak_lr())  # doctest: +SKIP
            >>> found = lrjax.search(train_fn, space, num_trials=8,
            ...                      method="quasirandom")  # doctest: +SKIP
            >>> untrained = float(np.median(result.val_losses[..., 0]))  # doctest: +SKIP
            >>> lr = found.plateau_params(untrained)["learning_rate"]  # doctest: +SKIP

        References:
            Bergstra & Bengio, "Random Search for Hyper-Parameter Optimization", JMLR 2012;
            Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"search_space: name must be a non-empty string, got {name!r}.")
        if lr is None:
            lr = self.suggest()
        try:
            center = float(np.asarray(lr))
        except (TypeError, ValueError):
            raise ValueError(f"search_space: lr must be a positive finite number, "
                             f"got {lr!r}.") from None
        if not (math.isfinite(center) and center > 0):
            raise ValueError(f"search_space: lr must be a positive finite number, got {lr!r}.")
        below, above = SEARCH_RANGE
        return {name: log_uniform(center * below, center * above)}

    def cyclical_bounds(self) -> tuple[float, float]:
        """``(base_lr, max_lr)`` for ``lrjax.cyclic`` (medians over curves).

        Read off each curve's RAW losses before divergence, smoothed by a centred
        (zero-lag) window: ``base_lr`` where the loss has covered 10% of its fall from
        the first point to the minimum, ``max_lr`` where it has covered 90%. Not read
        off ``smoothed_losses``: the EMA lags, and its minimum sits where the raw loss
        already blows up. See ``lrjax.finder.suggest.suggest_cyclical_bounds`` for the full rule.
        """
        pairs = np.asarray([_suggest_cyclical.suggest_cyclical_bounds(self.lrs, row)
                            for row in self._before_divergence(self.losses)])
        return float(np.median(pairs[:, 0])), float(np.median(pairs[:, 1]))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` inverts it exactly (aux is not included)."""
        out: dict[str, Any] = {}
        for name in _ARRAY_FIELDS:
            value = getattr(self, name)
            out[name] = None if value is None else _encode(value)
        diverged = self.diverged_at
        out["diverged_at"] = (diverged if diverged is None or isinstance(diverged, int)
                              else np.asarray(diverged).tolist())
        out.update(batch_axes=list(self.batch_axes), sweep=self.sweep, settings=dict(self.settings))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out["suggestions"] = self.suggestions()
        return out

    @classmethod
    def from_dict(cls, blob: Mapping[str, Any]) -> RangeTestResult:
        """Inverts :meth:`to_dict`, checking the keys and that the shapes fit together."""
        if not isinstance(blob, Mapping):
            raise ValueError(f"a range test result must be a JSON object, got {type(blob).__name__}.")
        missing = [k for k in ("lrs", "losses", "smoothed_losses", "diverged_at") if k not in blob]
        if missing:
            raise ValueError(f"not a range test result: missing keys {missing}.")
        arrays = {name: None if name == "val_losses" and blob.get(name) is None
                  else _decode(name, blob[name]) for name in _ARRAY_FIELDS}
        lrs, losses = arrays["lrs"], arrays["losses"]
        if lrs.ndim != 1 or lrs.size < 2:
            raise ValueError(f"lrs must be 1-D with >= 2 steps, got shape {lrs.shape}.")
        for name in _ARRAY_FIELDS[1:]:
            value = arrays[name]
            if value is not None and (value.ndim < 1 or value.shape[-1] != lrs.size
                                      or value.shape != losses.shape):
                raise ValueError(f"{name} has shape {value.shape}; with {lrs.size} lrs it must "
                                 f"be (*batch, {lrs.size}) like losses {losses.shape}.")
        diverged = blob["diverged_at"]
        batch_shape = losses.shape[:-1]
        if isinstance(diverged, list):
            items = np.asarray(diverged, dtype=object) if _regular(diverged) else None
            if items is None or items.shape != batch_shape or not all(
                    _step_or_never(v, lrs.size) for v in items.reshape(-1)):
                raise ValueError(f"diverged_at must be a list shaped like the curves "
                                 f"{batch_shape} of steps in [-1, {lrs.size - 1}] (-1: never), "
                                 f"got {diverged!r:.80}.")
            diverged = items.astype(np.int64)
        elif diverged is not None and (batch_shape or not _step_or_never(diverged, lrs.size)
                                       or diverged < 0):
            raise ValueError(f"diverged_at must be an int step in [0, {lrs.size - 1}], null or a "
                             f"list shaped like the curves {batch_shape}, got {diverged!r:.80}.")
        axes = blob.get("batch_axes", [])
        if not isinstance(axes, (list, tuple)) or not all(isinstance(a, str) for a in axes):
            raise ValueError(f"batch_axes must be a list of names, got {axes!r:.80}.")
        axes = tuple(axes)
        if len(axes) != len(batch_shape):
            raise ValueError(f"batch_axes {list(axes)} do not name the curves' axes "
                             f"{batch_shape}.")
        settings = blob.get("settings", {})
        settings = {} if settings is None else settings
        if not isinstance(settings, Mapping):
            raise ValueError(f"settings must be an object (name -> value), got "
                             f"{type(settings).__name__}.")
        _baseline.check_baseline(settings.get("baseline_loss"))  # read by every suggest()
        sweep = blob.get("sweep")
        if sweep is not None and not (isinstance(sweep, Mapping) and all(
                isinstance(k, str) and isinstance(v, list) and v and all(
                    isinstance(x, (int, float)) for x in v)  # bools: a static sweep's flags
                for k, v in sweep.items())):
            raise ValueError(f"sweep must be null or an object name -> non-empty list of "
                             f"numbers or bools, got {sweep!r:.80}.")
        return cls(**arrays, diverged_at=diverged, batch_axes=axes,
                   sweep=None if sweep is None else dict(sweep), settings=dict(settings))

    def to_json(self, **kwargs: Any) -> str:
        """Strict JSON (NaN/inf stored as strings); ``kwargs`` go to ``json.dumps``."""
        kwargs.setdefault("allow_nan", False)
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_json(cls, text: str) -> RangeTestResult:
        """Reads :meth:`to_json`'s output; a ValueError says what is wrong with bad input."""
        if not isinstance(text, (str, bytes, bytearray)):
            raise TypeError(f"text must be the JSON text of to_json(), got {type(text).__name__}.")
        try:
            blob = json.loads(text)
        except RecursionError:
            raise ValueError("not a range test result: the JSON is nested too deeply to read."
                             ) from None
        try:
            return cls.from_dict(blob)
        except RecursionError:
            raise ValueError("not a range test result: the JSON is nested too deeply.") from None

    def plot(self, ax: Any = None) -> Any:
        """Plots the curves (needs matplotlib); see ``lrjax.plot_range_test``."""
        from lrjax.plot.figures import plot_range_test

        return plot_range_test(self, ax=ax)

    def __repr__(self) -> str:
        s = self.settings
        steps = self._diverged_array().reshape(-1)
        hit = steps[steps >= 0]
        if hit.size == 0:
            divergence = "did not diverge"
        else:
            divergence = f"diverged at step {int(hit.min())} (lr {self.lrs[int(hit.min())]:.3g})"
            if steps.size > 1:
                divergence += f" in {hit.size} of {steps.size} curves"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = ", ".join(f"{m} {v:.3g}" for m, v in self.suggestions().items())
        batch = f", curves {dict(zip(self.batch_axes, self.batch_shape))}" if self.batch_shape else ""
        return (
            f"RangeTestResult({self.num_steps} steps, lr {self.lrs[0]:.3g} -> {self.lrs[-1]:.3g}"
            f" ({s.get('mode', '?')}){batch}\n"
            f"  {divergence}\n"
            f"  suggestions: {found})"
        )
