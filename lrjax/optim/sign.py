"""PowerSign and AddSign (Bello et al., Neural Optimizer Search) and their sign decays.

Semantics follow TensorFlow's contrib optimizers: the moving average ``m`` is updated
first and the *new* ``m``'s sign is compared with the gradient's; ``sign(0) = 0``; the
sign decay is read at the step count before it is incremented (0 on the first step).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lrjax._engine.checks import FLOAT32_MAX, MAX_COUNT, check_steps, check_value, concrete_float
from lrjax._engine.schedule_math import _float_dtype, _integer_count
from lrjax.optim.weight_decay import _check_rate

__all__ = [
    "ScaleBySignState",
    "addsign",
    "cosine_sign_decay",
    "linear_sign_decay",
    "powersign",
    "restart_sign_decay",
    "scale_by_addsign",
    "scale_by_powersign",
]


# --------------------------------------------------------------------------------------
# Sign decays: schedules of the step count, 1 at the start.
# --------------------------------------------------------------------------------------
def _check_periods(num_periods: Any, zero_after: Any) -> tuple[Any, Any]:
    num_periods = check_value("num_periods", num_periods, low=0.0, low_open=True)
    if zero_after is not None:
        zero_after = check_value("zero_after", zero_after, low=0.0)
    return num_periods, zero_after


def _zero_after_fn(
    decay_steps: int, num_periods: Any, zero_after: Any
) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """``(value, count) ->`` value, zeroed from the step where ``num_periods t / D >= zero_after``.

    With both numbers concrete the first zero step is found exactly (in fractions) at
    construction, so the switch lands on the right step even where float32 rounds; a
    traced one is compared in the default float dtype (the value jumps there, so its
    derivative with respect to ``zero_after`` is 0).
    """
    if zero_after is None:
        return lambda value, count: value
    periods, after = concrete_float("num_periods", num_periods), concrete_float("zero_after", zero_after)
    if periods is not None and after is not None:
        step = math.ceil(Fraction(after) * decay_steps / Fraction(periods))
        if step > MAX_COUNT:
            return lambda value, count: value
        return lambda value, count: jnp.where(count >= step, 0.0, value)

    def zero(value: jax.Array, count: jax.Array) -> jax.Array:
        dtype = _float_dtype()
        periods_done = num_periods * (count.astype(dtype) / decay_steps)
        return jnp.where(periods_done >= zero_after, 0.0, value)

    return zero


def _fraction_of_multiple(factor: Any, multiple: jax.Array, max_multiple: int) -> jax.Array:
    """``frac(factor * multiple)`` for an int32 ``multiple`` in ``[0, max_multiple]``.

    ``factor * multiple`` can exceed 2**24, where float32 has no fractional digits left. For
    a concrete ``factor`` the multiple is split into hexadecimal digits ``d_k``, and
    ``frac(factor * 16**k)`` is taken exactly in float64 at construction, so
    ``frac(sum_k frac(c_k d_k))`` only multiplies numbers below 16: the phase stays within
    about 1e-5 for every count up to 2**31 - 1. A traced factor is multiplied directly.
    """
    dtype = _float_dtype()
    number = concrete_float("num_periods", factor)
    if number is None:
        whole = factor * multiple.astype(dtype)
        return whole - jnp.floor(whole)
    total = jnp.zeros(multiple.shape, dtype)
    for k in range(max(1, math.ceil(max_multiple.bit_length() / 4))):
        digit = ((multiple >> (4 * k)) & 15).astype(dtype)
        term = math.fmod(number * 16.0**k, 1.0) * digit  # 16**k scales exactly in float64
        total = total + (term - jnp.floor(term))
    return total - jnp.floor(total)


def linear_sign_decay(decay_steps: int) -> optax.Schedule:
    """Linear sign decay: ``max(0, 1 - t / decay_steps)``.

    Args:
      decay_steps: steps to decay over, an integer >= 1.

    Returns:
      A schedule ``count -> value`` (default float dtype), 0 from ``decay_steps`` on.

    Example:
      >>> opt = powersign(0.1, sign_decay=linear_sign_decay(1000))

    References:
      Bello, Zoph, Vasudevan & Le, `Neural Optimizer Search with Reinforcement
      Learning <https://arxiv.org/abs/1709.07417>`_, ICML 2017 (Section 5).
    """
    decay_steps = check_steps("decay_steps", decay_steps)

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        count = _integer_count(count)
        remaining = jnp.maximum(decay_steps - count, 0).astype(_float_dtype())
        return remaining / decay_steps

    return schedule


def cosine_sign_decay(
    decay_steps: int, num_periods: float = 0.5, zero_after: float | None = None
) -> optax.Schedule:
    """Cosine sign decay: ``(1 + cos(2 pi num_periods t / decay_steps)) / 2``.

    The value is 0 from ``decay_steps`` on, and from the step where
    ``num_periods * t / decay_steps >= zero_after`` (TensorFlow's ``zero_after``).

    Args:
      decay_steps: steps to decay over, an integer >= 1.
      num_periods: cosine periods over ``decay_steps``, > 0 (0.5: one smooth decay).
      zero_after: if set (>= 0), the number of periods after which the value is 0.

    Returns:
      A schedule ``count -> value`` (default float dtype).

    Example:
      >>> opt = addsign(0.1, sign_decay=cosine_sign_decay(1000))

    References:
      Bello, Zoph, Vasudevan & Le, `Neural Optimizer Search with Reinforcement
      Learning <https://arxiv.org/abs/1709.07417>`_, ICML 2017 (Section 5).
    """
    decay_steps = check_steps("decay_steps", decay_steps)
    num_periods, zero_after = _check_periods(num_periods, zero_after)
    zero_after_fn = _zero_after_fn(decay_steps, num_periods, zero_after)

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        count = _integer_count(count)
        # Counts past decay_steps are zeroed below; clamping keeps the cosine's argument small.
        fraction = jnp.minimum(count, decay_steps).astype(_float_dtype()) / decay_steps
        value = 0.5 * (1.0 + jnp.cos(2.0 * jnp.pi * num_periods * fraction))
        value = jnp.where(count >= decay_steps, 0.0, value)
        return zero_after_fn(value, count)

    return schedule


def restart_sign_decay(
    decay_steps: int, num_periods: float = 1.0, zero_after: float | None = None
) -> optax.Schedule:
    """Restart sign decay: ``(1 + cos(pi frac(num_periods t / decay_steps))) / 2``.

    A half cosine from 1 to 0 that restarts every ``decay_steps / num_periods`` steps
    and, unlike TensorFlow (which clamps ``t`` and returns 1 forever), keeps restarting
    past ``decay_steps``. It is 0 once ``num_periods * t / decay_steps >= zero_after``.

    Args:
      decay_steps: steps over which ``num_periods`` restarts happen, an integer >= 1.
      num_periods: restarts per ``decay_steps``, > 0.
      zero_after: if set (>= 0), the number of periods after which the value is 0.

    Returns:
      A schedule ``count -> value`` (default float dtype).

    Example:
      >>> opt = powersign(0.1, sign_decay=restart_sign_decay(1000, num_periods=5))

    References:
      Bello, Zoph, Vasudevan & Le, `Neural Optimizer Search with Reinforcement
      Learning <https://arxiv.org/abs/1709.07417>`_, ICML 2017 (Section 5);
      Loshchilov & Hutter, `SGDR <https://arxiv.org/abs/1608.03983>`_, ICLR 2017.
    """
    decay_steps = check_steps("decay_steps", decay_steps)
    num_periods, zero_after = _check_periods(num_periods, zero_after)
    zero_after_fn = _zero_after_fn(decay_steps, num_periods, zero_after)

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        count = _integer_count(count)
        dtype = _float_dtype()
        # num_periods * t / D = num_periods * q + num_periods * r / D with t = q D + r:
        # the whole blocks q are split off in integers (see _fraction_of_multiple).
        phase = _fraction_of_multiple(num_periods, count // decay_steps, MAX_COUNT // decay_steps)
        phase = phase + num_periods * (count % decay_steps).astype(dtype) / decay_steps
        phase = phase - jnp.floor(phase)
        value = 0.5 * (1.0 + jnp.cos(jnp.pi * phase))
        return zero_after_fn(value, count)

    return schedule


# --------------------------------------------------------------------------------------
# PowerSign / AddSign
# --------------------------------------------------------------------------------------
class ScaleBySignState(NamedTuple):
    """Step count (for the sign decay) and the moving average of the gradients."""

    count: jax.Array  # int32 scalar
    mu: optax.Updates


SignDecay = float | jax.Array | Callable[[jax.Array], jax.Array] | None


def _scale_by_sign_agreement(
    beta: Any, sign_decay: SignDecay, factor: Callable[[Any], Any]
) -> optax.GradientTransformation:
    """Direction ``factor(decay_t * sign(g) * sign(m_t)) * g``, shared by PowerSign and AddSign.

    ``sign(g) * sign(m)`` is -1, 0 or 1, so ``factor`` is evaluated on three scalars and
    each element only selects one: no transcendental per element.
    """
    check_value("beta", beta, low=0.0, high=1.0, high_open=True)
    if sign_decay is not None and not callable(sign_decay):
        check_value("sign_decay", sign_decay)

    def init_fn(params: optax.Params) -> ScaleBySignState:
        return ScaleBySignState(count=jnp.zeros([], jnp.int32), mu=optax.tree.zeros_like(params))

    def update_fn(
        updates: optax.Updates, state: ScaleBySignState, params: optax.Params = None
    ) -> tuple[optax.Updates, ScaleBySignState]:
        del params
        mu = optax.tree.update_moment(updates, state.mu, beta, 1)
        if sign_decay is None:
            decay = 1.0
        else:
            decay = sign_decay(state.count) if callable(sign_decay) else sign_decay
        agree, disagree, neutral = factor(decay), factor(-decay), factor(0.0)

        def direction(g: Any, m: jax.Array) -> jax.Array:
            g = jnp.asarray(g)  # Python-float leaves work as in optax
            agreement = jnp.sign(g) * jnp.sign(m)
            scale = jnp.where(
                agreement > 0,
                jnp.asarray(agree, g.dtype),
                jnp.where(
                    agreement < 0, jnp.asarray(disagree, g.dtype), jnp.asarray(neutral, g.dtype)
                ),
            )
            return scale * g

        new_updates = jax.tree.map(direction, updates, mu)
        new_state = ScaleBySignState(
            count=optax.safe_increment(state.count), mu=optax.tree.cast_like(mu, state.mu)
        )
        return new_updates, new_state

    return optax.GradientTransformation(init_fn, update_fn)


def scale_by_powersign(
    base: float = math.e, beta: float = 0.9, sign_decay: SignDecay = None
) -> optax.GradientTransformation:
    r"""Rescale gradients by PowerSign: ``base ** (decay_t * sign(g) * sign(m_t)) * g``.

    .. math::
        m_t = \beta m_{t-1} + (1 - \beta) g_t, \quad
        d_t = \exp(\ln(base) \, f(t-1) \, \mathrm{sign}(g_t) \mathrm{sign}(m_t)) \, g_t

    where ``f`` is the sign decay read at the count before the step (1 if None).

    Args:
      base: > 0 with base and 1/base finite in float32 (>= 2.9e-39); ``e`` by default.
      beta: decay of the gradients' moving average, in [0, 1).
      sign_decay: a schedule of the count (e.g. :func:`linear_sign_decay`), a float, or
        None for no decay.

    Returns:
      An ``optax.GradientTransformation``; state ``mu`` has the params' dtype.

    Example:
      >>> opt = optax.chain(scale_by_powersign(), optax.scale_by_learning_rate(0.1))

    References:
      Bello, Zoph, Vasudevan & Le, `Neural Optimizer Search with Reinforcement
      Learning <https://arxiv.org/abs/1709.07417>`_, ICML 2017.
    """
    # base and 1/base must both be finite in float32 (the factors at full decay).
    check_value("base", base, low=1.0 / FLOAT32_MAX)
    number = concrete_float("base", base)
    # base**s = exp(ln(base) s) for the three values of s; ln is taken once, at construction.
    log_base = jnp.log(base) if number is None else math.log(number)

    def factor(s: Any) -> Any:
        # base**0 is exactly 1 (neutral agreement), even for a traced base at a boundary
        # where ln(base) is infinite and exp(ln(base) * 0) would be NaN.
        if isinstance(s, float) and s == 0.0:
            return 1.0
        return jnp.exp(log_base * s)

    return _scale_by_sign_agreement(beta, sign_decay, factor)


def scale_by_addsign(
    alpha: float = 1.0, beta: float = 0.9, sign_decay: SignDecay = None
) -> optax.GradientTransformation:
    r"""Rescale gradients by AddSign: ``(alpha + decay_t * sign(g) * sign(m_t)) * g``.

    .. math::
        m_t = \beta m_{t-1} + (1 - \beta) g_t, \quad
        d_t = (\alpha + f(t-1) \, \mathrm{sign}(g_t) \mathrm{sign}(m_t)) \, g_t

    where ``f`` is the sign decay read at the count before the step (1 if None).

    Args:
      alpha: >= 0; 1 by default.
      beta: decay of the gradients' moving average, in [0, 1).
      sign_decay: a schedule of the count, a float, or None for no decay.

    Returns:
      An ``optax.GradientTransformation``; state ``mu`` has the params' dtype.

    Example:
      >>> opt = optax.chain(scale_by_addsign(), optax.scale_by_learning_rate(0.1))

    References:
      Bello, Zoph, Vasudevan & Le, `Neural Optimizer Search with Reinforcement
      Learning <https://arxiv.org/abs/1709.07417>`_, ICML 2017.
    """
    check_value("alpha", alpha, low=0.0)
    return _scale_by_sign_agreement(beta, sign_decay, lambda s: alpha + s)


def powersign(
    learning_rate: optax.ScalarOrSchedule = 0.1,
    base: float = math.e,
    beta: float = 0.9,
    sign_decay: SignDecay = None,
) -> optax.GradientTransformation:
    r"""PowerSign: scale the step up where gradient and momentum agree in sign, down where not.

    .. math:: u_t = -\alpha_t \, base^{f(t-1) \, \mathrm{sign}(g_t) \mathrm{sign}(m_t)} \, g_t

    Equal to TensorFlow's ``tf.contrib.opt.PowerSignOptimizer``.

    Args:
      learning_rate: ``alpha``, a float or a schedule.
      base: > 0 with base and 1/base finite in float32 (>= 2.9e-39); ``e`` by default.
      beta: decay of the gradients' moving average, in [0, 1).
      sign_decay: a schedule of the count, a float, or None for no decay.

    Returns:
      An ``optax.GradientTransformation``.

    Example:
      >>> opt = powersign(0.1, sign_decay=linear_sign_decay(10_000))

    References:
      Bello, Zoph, Vasudevan & Le, `Neural Optimizer Search with Reinforcement
      Learning <https://arxiv.org/abs/1709.07417>`_, ICML 2017.
    """
    learning_rate = _check_rate("learning_rate", learning_rate)
    return optax.chain(
        scale_by_powersign(base, beta, sign_decay), optax.scale_by_learning_rate(learning_rate)
    )


def addsign(
    learning_rate: optax.ScalarOrSchedule = 0.1,
    alpha: float = 1.0,
    beta: float = 0.9,
    sign_decay: SignDecay = None,
) -> optax.GradientTransformation:
    r"""AddSign: add to the step where gradient and momentum agree in sign, subtract where not.

    .. math:: u_t = -\alpha_t \, (a + f(t-1) \, \mathrm{sign}(g_t) \mathrm{sign}(m_t)) \, g_t

    with ``a = alpha``. Equal to TensorFlow's ``tf.contrib.opt.AddSignOptimizer``.

    Args:
      learning_rate: a float or a schedule.
      alpha: ``a``, >= 0; 1 by default.
      beta: decay of the gradients' moving average, in [0, 1).
      sign_decay: a schedule of the count, a float, or None for no decay.

    Returns:
      An ``optax.GradientTransformation``.

    Example:
      >>> opt = addsign(0.1, sign_decay=cosine_sign_decay(10_000))

    References:
      Bello, Zoph, Vasudevan & Le, `Neural Optimizer Search with Reinforcement
      Learning <https://arxiv.org/abs/1709.07417>`_, ICML 2017.
    """
    learning_rate = _check_rate("learning_rate", learning_rate)
    return optax.chain(
        scale_by_addsign(alpha, beta, sign_decay), optax.scale_by_learning_rate(learning_rate)
    )
