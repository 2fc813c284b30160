"""Search spaces and the samplers that need no Optuna: grid, random and quasi-random.

A space maps names to dimensions: :func:`uniform`, :func:`log_uniform` or :func:`choice`.
A sampler turns a space into a list of parameter dicts (host numbers); :func:`as_arrays`
stacks them into the dict of arrays a vmapped ``train_fn`` receives. Random and quasi-random
draws go through the unit cube: ``u in [0, 1)`` maps to ``low + u (high - low)`` for
:func:`uniform`, ``exp(log low + u (log high - log low))`` for :func:`log_uniform`, and the
``floor(u k)``-th value for a :func:`choice` of ``k`` values.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import numbers
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Union

import numpy as np

SEARCH_EXTRA = "pip install 'lrjax[search]'"


@dataclasses.dataclass(frozen=True)
class Uniform:
    """A float drawn uniformly from ``[low, high]``."""

    low: float
    high: float
    log = False


@dataclasses.dataclass(frozen=True)
class LogUniform:
    """A float whose logarithm is uniform on ``[log low, log high]``."""

    low: float
    high: float
    log = True


@dataclasses.dataclass(frozen=True)
class Choice:
    """One of a fixed tuple of numbers, each equally likely."""

    values: tuple
    log = False


Dimension = Union[Uniform, LogUniform, Choice]
Space = Mapping[str, Dimension]
Params = dict[str, Any]


def _finite_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}.")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}.")
    return value


_F32_MAX = float(np.finfo(np.float32).max)
_F32_TINY = float(np.finfo(np.float32).tiny)
_I32 = np.iinfo(np.int32)


def _float32_bounds(kind: str, low: float, high: float, smallest: float = 0.0) -> None:
    """Trials train with float32 values: the bounds must be float32 numbers, and distinct."""
    for name, value in (("low", low), ("high", high)):
        if abs(value) > _F32_MAX or (smallest and value < smallest):
            raise ValueError(f"{kind}: {name}={value!r} is outside float32's range "
                             f"[{smallest or -_F32_MAX:.3g}, {_F32_MAX:.3g}] (trials get float32 "
                             "values: it would train with inf or 0).")
    if not np.float32(low) < np.float32(high):
        raise ValueError(f"{kind}: low={low!r} and high={high!r} are equal in float32.")


def uniform(low: float, high: float) -> Uniform:
    """A hyperparameter drawn uniformly from ``[low, high]``.

    Args:
        low: the smallest value, a finite float32 number.
        high: the largest value, a float32 number > ``low`` (in float32).

    Returns:
        A :class:`Uniform` dimension for a search space.

    Example:
        >>> uniform(0.8, 0.99)
        Uniform(low=0.8, high=0.99)

    References:
        Bergstra & Bengio, "Random Search for Hyper-Parameter Optimization", JMLR 2012.
    """
    low, high = _finite_number("low", low), _finite_number("high", high)
    if not low < high:
        raise ValueError(f"uniform: low must be < high, got low={low!r}, high={high!r}.")
    _float32_bounds("uniform", low, high)
    return Uniform(low, high)


def log_uniform(low: float, high: float) -> LogUniform:
    """A positive hyperparameter whose logarithm is uniform: ``exp(U(log low, log high))``.

    The usual prior for learning rates and weight decays, which matter by orders of magnitude.

    Args:
        low: the smallest value, >= float32's smallest normal number (1.2e-38).
        high: the largest value, > ``low`` (in float32), at most float32's largest.

    Returns:
        A :class:`LogUniform` dimension for a search space.

    Example:
        >>> log_uniform(1e-4, 1e-1)
        LogUniform(low=0.0001, high=0.1)

    References:
        Bergstra & Bengio, "Random Search for Hyper-Parameter Optimization", JMLR 2012.
    """
    low, high = _finite_number("low", low), _finite_number("high", high)
    if low <= 0:
        raise ValueError(f"log_uniform: low must be > 0, got {low!r}.")
    if not low < high:
        raise ValueError(f"log_uniform: low must be < high, got low={low!r}, high={high!r}.")
    _float32_bounds("log_uniform", low, high, smallest=_F32_TINY)
    return LogUniform(low, high)


def choice(values: Sequence[float]) -> Choice:
    """A hyperparameter that takes one of ``values`` (numbers; at least one, no repeats).

    Args:
        values: the numbers to choose from. All integers give int32 arrays (each must fit),
            else float32 (each must fit and stay distinct when rounded to float32).

    Returns:
        A :class:`Choice` dimension for a search space.

    Example:
        >>> choice([0.9, 0.95, 0.99])
        Choice(values=(0.9, 0.95, 0.99))

    References:
        Bergstra & Bengio, "Random Search for Hyper-Parameter Optimization", JMLR 2012.
    """
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        raise TypeError(f"choice: values must be a sequence of numbers, got {values!r}.")
    checked = []
    for value in list(values):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise TypeError(f"choice: values must be numbers, got {value!r}.")
        if not math.isfinite(float(value)):
            raise ValueError(f"choice: values must be finite, got {value!r}.")
        checked.append(int(value) if isinstance(value, numbers.Integral) else float(value))
    if not checked:
        raise ValueError("choice: values must not be empty.")
    if len(set(checked)) != len(checked):
        raise ValueError(f"choice: values must be distinct, got {checked!r}.")
    # Trials get int32 (all integers) or float32 values: each must be one, and stay distinct.
    if all(isinstance(v, int) for v in checked):
        if any(not _I32.min <= v <= _I32.max for v in checked):
            raise ValueError(f"choice: integer values must fit in int32 [{_I32.min}, {_I32.max}], "
                             f"got {checked!r}.")
    else:
        if any(abs(v) > _F32_MAX for v in checked):
            raise ValueError(f"choice: values must fit in float32 (|v| <= {_F32_MAX:.3g}), got "
                             f"{checked!r}.")
        rounded = [float(np.float32(v)) for v in checked]
        if len(set(rounded)) != len(rounded):
            raise ValueError(f"choice: values {checked!r} are not distinct in float32 (trials "
                             f"would train with {rounded!r}).")
    return Choice(tuple(checked))


def check_space(space: Any) -> dict[str, Dimension]:
    """``space`` as a plain dict, or a ValueError/TypeError saying what is wrong with it."""
    if not isinstance(space, Mapping):
        raise TypeError(f"space must be a dict name -> uniform/log_uniform/choice, got {space!r}.")
    if not space:
        raise ValueError("space is empty: give at least one hyperparameter.")
    for name, dim in space.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"space: names must be non-empty strings, got {name!r}.")
        if not isinstance(dim, (Uniform, LogUniform, Choice)):
            raise TypeError(
                f"space[{name!r}] must be uniform(...), log_uniform(...) or choice(...), "
                f"got {dim!r}."
            )
    return dict(space)


def _dtype(dim: Dimension) -> np.dtype:
    if isinstance(dim, Choice) and all(isinstance(v, int) for v in dim.values):
        return np.dtype(np.int32)
    return np.dtype(np.float32)


def as_arrays(space: Space, params: Sequence[Params]) -> dict[str, np.ndarray]:
    """Stack parameter dicts into ``name -> (n,)`` arrays (float32, int32 for integer choices)."""
    return {
        name: np.asarray([p[name] for p in params], dtype=_dtype(dim))
        for name, dim in space.items()
    }


def from_unit(space: Space, unit: np.ndarray) -> list[Params]:
    """Map points of the unit cube, shape ``(n, len(space))``, to parameter dicts."""
    out: list[Params] = [{} for _ in range(len(unit))]
    for column, (name, dim) in enumerate(space.items()):
        u = np.clip(unit[:, column], 0.0, np.nextafter(1.0, 0.0))
        if isinstance(dim, Choice):
            values = [dim.values[int(i)] for i in np.floor(u * len(dim.values))]
        elif isinstance(dim, LogUniform):
            low, high = math.log(dim.low), math.log(dim.high)
            values = [min(max(math.exp(low + x * (high - low)), dim.low), dim.high) for x in u]
        else:
            values = [dim.low + float(x) * (dim.high - dim.low) for x in u]
        for params, value in zip(out, values):
            params[name] = value
    return out


def random_params(space: Space, num: int, seed: int, start: int = 0) -> list[Params]:
    """Independent uniform draws for trials ``start .. start+num-1``.

    Trial ``i``'s point comes from its own stream, numpy's PCG64 seeded by ``(seed, i)``, so
    it depends only on the seed and the trial number (also when processes share a study).
    """
    unit = np.stack([np.random.default_rng([seed, i]).random(len(space))
                     for i in range(start, start + num)])
    return from_unit(space, unit)


def quasirandom_params(space: Space, num: int, seed: int, start: int = 0) -> list[Params]:
    """Points ``start .. start+num-1`` of a scrambled Sobol sequence (scipy), mapped to the space.

    Scrambling (Owen) keeps the low discrepancy and makes the points an unbiased, seedable
    sample; point ``i`` is the ``i``-th of the sequence fixed by ``seed``. Sobol points are
    balanced for powers of two; other counts are still far more even than random draws, so
    scipy's warning about them is silenced.
    """
    try:
        from scipy.stats import qmc
    except ImportError as error:
        raise ImportError(f"method='quasirandom' needs scipy ({SEARCH_EXTRA}): {error}") from error
    sampler = qmc.Sobol(d=len(space), scramble=True, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if start:
            sampler.fast_forward(start)
        unit = sampler.random(num)
    return from_unit(space, unit)


def grid_axes(space: Space, num_trials: int, grid_points: int | None = None) -> dict[str, list]:
    """The values of each axis of the grid: all values of a choice, ``k`` points per float axis.

    ``k`` is ``grid_points`` if given, else the largest with ``prod(choices) * k**floats <=
    num_trials``. Float axes are evenly spaced (geometrically for :func:`log_uniform`) and
    include both ends; a single point is the (geometric) midpoint.
    """
    floats = [name for name, dim in space.items() if not isinstance(dim, Choice)]
    num_choices = math.prod(len(dim.values) for dim in space.values() if isinstance(dim, Choice))
    if grid_points is None:
        if num_choices > num_trials:
            raise ValueError(
                f"num_trials={num_trials} is smaller than the {num_choices} combinations of the "
                "choice dimensions: method='grid' needs num_trials >= their product."
            )
        k = 1
        while floats and num_choices * (k + 1) ** len(floats) <= num_trials:
            k += 1
    else:
        if isinstance(grid_points, bool) or not isinstance(grid_points, int) or grid_points < 1:
            raise ValueError(f"grid_points must be an integer >= 1, got {grid_points!r}.")
        k = grid_points
    axes: dict[str, list] = {}
    for name, dim in space.items():
        if isinstance(dim, Choice):
            axes[name] = list(dim.values)
        elif isinstance(dim, LogUniform):
            axes[name] = (
                [math.sqrt(dim.low * dim.high)] if k == 1
                else [float(v) for v in np.geomspace(dim.low, dim.high, k)]
            )
        else:
            axes[name] = (
                [(dim.low + dim.high) / 2] if k == 1
                else [float(v) for v in np.linspace(dim.low, dim.high, k)]
            )
    return axes


def grid_params(space: Space, num_trials: int, grid_points: int | None = None) -> list[Params]:
    """Every combination of :func:`grid_axes`, the first name varying slowest."""
    axes = grid_axes(space, num_trials, grid_points)
    names = list(axes)
    return [dict(zip(names, combo)) for combo in itertools.product(*axes.values())]


def space_to_spec(space: Space) -> dict[str, dict]:
    """A JSON-able description of the space (for :meth:`SearchResult.to_json`)."""
    spec = {}
    for name, dim in space.items():
        if isinstance(dim, Choice):
            spec[name] = {"kind": "choice", "values": list(dim.values)}
        else:
            kind = "log_uniform" if dim.log else "uniform"
            spec[name] = {"kind": kind, "low": dim.low, "high": dim.high}
    return spec


def space_from_spec(spec: Mapping[str, Mapping]) -> dict[str, Dimension]:
    """The inverse of :func:`space_to_spec`."""
    makers = {"uniform": uniform, "log_uniform": log_uniform}
    space: dict[str, Dimension] = {}
    for name, item in spec.items():
        if item["kind"] == "choice":
            space[name] = choice(item["values"])
        else:
            space[name] = makers[item["kind"]](item["low"], item["high"])
    return space


HOST_METHODS = ("grid", "random", "quasirandom")


def sample_params(method: str, space: Space, num_trials: int, seed: int,
                  grid_points: int | None = None) -> list[Params]:
    """The parameters of a host method's trials: the whole grid, or ``num_trials`` draws."""
    if method == "grid":
        return grid_params(space, num_trials, grid_points)
    if method == "quasirandom":
        return quasirandom_params(space, num_trials, seed)
    return random_params(space, num_trials, seed)


class HostPoints:
    """Trial number -> point of a host method, for any number (trials shared by processes).

    The grid's points are numbered in :func:`grid_params` order (numbers past the grid wrap
    around); random and quasi-random points are those of :func:`random_params` and
    :func:`quasirandom_params` for that number, so a study gives the same trials as a search
    without storage.
    """

    def __init__(self, method: str, space: Space, seed: int, grid: list[Params] | None) -> None:
        self.method, self.space, self.seed, self.grid = method, space, seed, grid

    def __call__(self, number: int) -> Params:
        if self.method == "grid":
            assert self.grid is not None
            return dict(self.grid[number % len(self.grid)])
        draw = quasirandom_params if self.method == "quasirandom" else random_params
        return draw(self.space, 1, self.seed, start=number)[0]


def center(space: Space) -> Params:
    """A valid point of the space (the middle of the unit cube), for tracing shapes."""
    return from_unit(space, np.full((1, len(space)), 0.5))[0]
