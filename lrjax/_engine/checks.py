"""Argument checks shared by every factory: hyperparameters are data, flags are bools.

Two kinds of argument, two rules:

* **Value-like hyperparameters** (learning rates, decay factors, betas, eps, ...) may be
  JAX values, traced or not. A *concrete* value (Python or numpy number, concrete array)
  is checked here at construction: finite, representable in float32, in its documented
  range. A *traced* value (inside ``jit``, ``vmap``, ``grad`` or an
  ``optax.inject_hyperparams`` factory) cannot be inspected and is passed through
  unchanged, so the same factory serves the concrete call and the traced one.
* **Static arguments** (step counts, periods, modes, flags) fix the program's shape and
  must be plain Python values: a traced one is a ``TypeError`` naming the argument.

Every failure names the argument and its allowed range, so a bad value is reported at
construction, never as a NaN or an obscure error at update time.
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import Any

import jax
import numpy as np

__all__ = [
    "FLOAT32_MAX",
    "MAX_COUNT",
    "as_prng_key",
    "check_flag",
    "check_static",
    "check_steps",
    "check_transformation",
    "check_value",
    "concrete_float",
    "is_traced",
]

FLOAT32_MAX = float(np.finfo(np.float32).max)
MAX_COUNT = 2**31 - 1


def is_traced(value: Any) -> bool:
    """Whether ``value`` is a JAX tracer (its number is unknown until the program runs).

    Args:
      value: any argument.

    Returns:
      True for a tracer (under ``jit``, ``vmap``, ``grad``, ...), False otherwise.

    Example:
      >>> is_traced(0.1)
      False
    """
    return isinstance(value, jax.core.Tracer)


def concrete_float(name: str, value: Any) -> float | None:
    """The Python float behind a concrete scalar, or None when ``value`` is traced.

    Accepts Python and numpy numbers and 0-d (or size-1) concrete arrays; rejects bools,
    strings, None and arrays with more than one element with a ``TypeError`` naming
    ``name``.

    Args:
      name: the argument's name, quoted in messages.
      value: the argument.

    Returns:
      ``float(value)``, or None for a tracer.

    Example:
      >>> concrete_float("lr", np.float32(0.5))
      0.5
    """
    if is_traced(value):
        return None
    if isinstance(value, (bool, np.bool_)) or value is None or isinstance(value, str):
        raise TypeError(f"{name} must be a number, got {value!r}.")
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (np.ndarray, jax.Array)):
        if value.size != 1:
            raise TypeError(f"{name} must be a scalar, got an array of shape {value.shape}.")
        if not (np.issubdtype(value.dtype, np.floating) or np.issubdtype(value.dtype, np.integer)):
            raise TypeError(f"{name} must be a real number, got dtype {value.dtype}.")
        return float(np.asarray(value).reshape(()))
    raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}.")


def check_value(
    name: str,
    value: Any,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> Any:
    """Check a value-like hyperparameter when concrete; pass a tracer through.

    A concrete value must be finite, at most float32's largest number in magnitude (a
    larger one becomes inf in float32), and in ``[low, high]`` (an open end when
    ``low_open`` / ``high_open``).

    Args:
      name: the argument's name, quoted in the message.
      value: a Python/numpy number, a concrete or traced JAX scalar.
      low: the smallest allowed value.
      high: the largest allowed value.
      low_open: exclude ``low`` itself.
      high_open: exclude ``high`` itself.

    Returns:
      ``value`` unchanged (so traced values flow on into the schedule or optimizer), except
      a Python int outside int32's range, returned as a float (JAX would overflow on it).

    Example:
      >>> check_value("gamma", 0.5, low=0.0, high=1.0, low_open=True)
      0.5
    """
    number = concrete_float(name, value)
    if number is None:
        return value
    if not math.isfinite(number) or abs(number) > FLOAT32_MAX:
        raise ValueError(f"{name} must be a finite float32 number, got {number!r}.")
    below = number <= low if low_open else number < low
    above = number >= high if high_open else number > high
    if below or above:
        raise ValueError(f"{name} must be in {_interval(low, high, low_open, high_open)}, got {number!r}.")
    if isinstance(value, int) and not -MAX_COUNT - 1 <= value <= MAX_COUNT:
        return number  # a Python int past int32 would overflow JAX's default int dtype
    return value


def check_static(name: str, value: Any, **bounds: Any) -> float:
    """A static (shape-defining) float such as ``period_mult`` or ``pct_start``, checked.

    Like :func:`check_value`, but a traced value is a ``TypeError``: the argument fixes
    the program's shape (restart table, phase boundaries), so it must be known at
    construction.

    Args:
      name: the argument's name, quoted in the message.
      value: a Python/numpy number or a concrete JAX scalar.
      **bounds: ``low``, ``high``, ``low_open``, ``high_open`` as in :func:`check_value`.

    Returns:
      ``float(value)``.

    Example:
      >>> check_static("pct_start", 0.3, low=0.0, high=1.0, low_open=True, high_open=True)
      0.3
    """
    if is_traced(value):
        raise TypeError(f"{name} fixes the schedule's shape and must be a Python number, not a traced value.")
    check_value(name, value, **bounds)
    return concrete_float(name, value)


def check_flag(name: str, value: Any) -> bool:
    """A Python or numpy bool as a Python bool; anything else is a ``TypeError``.

    Truthy strings (``"no"``) and numbers are refused: a flag fixes the program's shape.

    Args:
      name: the argument's name, quoted in the message.
      value: the flag.

    Returns:
      ``bool(value)``.

    Example:
      >>> check_flag("staircase", np.bool_(True))
      True
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}.")
    return bool(value)


def check_steps(name: str, value: Any, minimum: int = 1, maximum: int = MAX_COUNT) -> int:
    """A static whole number of steps in ``[minimum, maximum]``.

    Python ints, integral floats and numpy integers are accepted; bools, tracers,
    non-integral or non-finite values are refused.

    Args:
      name: the argument's name, quoted in the message.
      value: the number of steps.
      minimum: the smallest allowed value.
      maximum: the largest allowed value (``2**31 - 1`` by default).

    Returns:
      ``int(value)``.

    Example:
      >>> check_steps("total_steps", 100.0)
      100
    """
    if is_traced(value):
        raise TypeError(f"{name} fixes the schedule's shape and must be a Python int, not a traced value.")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.ndarray, jax.Array)):
        raise ValueError(f"{name} must be an integer number of steps, got {value!r}.")
    number = concrete_float(name, value)
    if not math.isfinite(number) or not number.is_integer():
        raise ValueError(f"{name} must be an integer number of steps, got {value!r}.")
    if not minimum <= number <= maximum:
        top = "2**31 - 1" if maximum == MAX_COUNT else str(maximum)
        raise ValueError(f"{name} must be in [{minimum}, {top}], got {value!r}.")
    return int(number)


@functools.lru_cache(maxsize=16)
def _seed_key(seed: int) -> jax.Array:
    return jax.random.key(seed)  # cached: creating a key is an eager device op


def as_prng_key(key: Any, name: str = "key") -> jax.Array:
    """A PRNG key argument as a typed JAX key: the one key check of every entry point.

    Accepted: None (seed 0), a Python or numpy int seed in ``[-2**63, 2**63)``, a typed
    key (``jax.random.key(...)``, shape ``()``), or a raw ``uint32`` key of shape ``(2,)``
    (``jax.random.PRNGKey(...)``; wrapped with ``jax.random.wrap_key_data``, the same bits).

    Args:
      name: the argument's name, quoted in messages.
      key: the argument.

    Returns:
      A typed PRNG key of shape ``()``.

    Raises:
      TypeError: anything else (a bool, float, str, a key array of several keys, ...).
      ValueError: an int seed outside 64 bits.

    Example:
      >>> as_prng_key(3).shape
      ()
    """
    if key is None or (isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_))):
        seed = 0 if key is None else int(key)
        if not -(2**63) <= seed < 2**63:
            raise ValueError(f"{name}: an int seed must fit in 64 bits (-2**63 <= seed < 2**63), "
                             f"got {seed}.")
        return _seed_key(seed)
    if isinstance(key, (jax.Array, np.ndarray)):
        dtype = key.dtype
        if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key) and key.shape == ():
            return key
        if dtype == np.uint32 and key.shape == (2,):
            return jax.random.wrap_key_data(key)
        raise TypeError(f"{name} must be an int seed or a single JAX PRNG key (typed, shape (); "
                        f"or raw uint32 of shape (2,)), got an array of dtype {dtype} and shape "
                        f"{key.shape}.")
    raise TypeError(f"{name} must be an int seed in [-2**63, 2**63), a jax.random.key(...) or a "
                    f"raw jax.random.PRNGKey(...), got {type(key).__name__} {key!r:.60}.")


def check_transformation(name: str, value: Any) -> Any:
    """``value`` if it is an optax ``GradientTransformation``; else a ``TypeError``.

    For what an optimizer factory returned: anything with callable ``init`` and ``update``
    passes (optax's transformations, their subclasses and look-alikes).

    Args:
      name: what produced ``value``, quoted in the message (e.g. ``"optimizer_fn(hparams)"``).
      value: the factory's return value.

    Returns:
      ``value`` unchanged.

    Example:
      >>> import optax
      >>> tx = check_transformation("optimizer(learning_rate=...)", optax.sgd(0.1))
    """
    if callable(getattr(value, "init", None)) and callable(getattr(value, "update", None)):
        return value
    raise TypeError(f"{name} must return an optax GradientTransformation (with init and "
                    f"update), got {type(value).__name__} {value!r:.60}.")


def _interval(low: float, high: float, low_open: bool, high_open: bool) -> str:
    left = "(" if low_open or low == -math.inf else "["
    right = ")" if high_open or high == math.inf else "]"
    return f"{left}{_bound(low)}, {_bound(high)}{right}"


def _bound(value: float) -> str:
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:g}"
