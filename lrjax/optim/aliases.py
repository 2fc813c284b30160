"""Decoupled-weight-decay optimizers (AdamW, SGDW and their warm-restart forms) and AMSGrad.

Each optimizer is an ``optax.chain`` of a direction block and a scaling block:

========  =========================================  ===========================================
alias     direction                                  scaling
========  =========================================  ===========================================
adamw     ``optax.scale_by_adam``                    :func:`lrjax.decoupled_weight_decay`
sgdw      ``optax.trace`` (raw-gradient momentum)    :func:`lrjax.decoupled_weight_decay`
adamwr    as adamw                                   SGDR multiplier, period-normalized decay
sgdwr     as sgdw                                    SGDR multiplier, period-normalized decay
amsgrad   :func:`lrjax.scale_by_amsgrad`             ``optax.scale_by_learning_rate``
========  =========================================  ===========================================

Every float hyperparameter may be a traced array, so the aliases work inside
``optax.inject_hyperparams``; static arguments are validated only when they are Python
numbers. Moments are stored in the params' dtype (``mu_dtype`` overrides the first
moment), and updates come back in the params' dtype. As in optax, the arithmetic runs in
the moments' dtype: with float16 params, ``eps=1e-8`` rounds to 0 and tiny squared
gradients underflow, so keep float32 master params (or raise ``eps``) for float16 training.
"""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lrjax._engine.checks import check_flag, check_steps, check_value, concrete_float
from lrjax.schedules.cyclical import sgdr, sgdr_cycle
from lrjax.optim.weight_decay import (
    MaskOrFn,
    _check_rate,
    decoupled_weight_decay,
    normalized_weight_decay,
)

__all__ = [
    "ScaleByAmsgradState",
    "adamw",
    "adamwr",
    "amsgrad",
    "scale_by_amsgrad",
    "sgdw",
    "sgdwr",
]


def _check_decay_rate(name: str, value: Any) -> Any:
    """A moment decay in [0, 1), also below 1 once rounded to float32.

    ``b2 = 1 - 1e-9`` is below 1 as a Python float but is 1.0 in float32, where Adam's
    bias correction ``1 - b2**t`` is 0 and the update NaN: refused here.
    """
    check_value(name, value, low=0.0, high=1.0, high_open=True)
    number = concrete_float(name, value)
    if number is not None and np.float32(number) >= 1:
        raise ValueError(f"{name} must be in [0, 1) in float32, got {number!r} (rounds to 1.0).")
    return value


def _check_dtype(name: str, dtype: Any) -> Any:
    """None or a floating dtype (an int moment would truncate every update to 0)."""
    if dtype is None:
        return None
    try:
        floating = jnp.issubdtype(jnp.dtype(dtype), jnp.floating)
    except TypeError:
        floating = False
    if not floating:
        raise TypeError(f"{name} must be None or a floating dtype (float32, bfloat16, ...), "
                        f"got {dtype!r}.")
    return dtype


def _check_adam_args(b1: Any, b2: Any, eps: Any) -> Any:
    _check_decay_rate("b1", b1)
    _check_decay_rate("b2", b2)
    return check_value("eps", eps, low=0.0)


def adamw(
    learning_rate: optax.ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: optax.ScalarOrSchedule = 1e-4,
    *,
    mask: MaskOrFn = None,
    multiplier: optax.ScalarOrSchedule | None = None,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
) -> optax.GradientTransformation:
    r"""Adam with decoupled weight decay (AdamW).

    With ``d_t = mhat_t / (sqrt(vhat_t + eps_root) + eps)`` Adam's bias-corrected
    direction and ``theta_{t-1}`` the params passed to ``update``:

    .. math::
        u_t = -\alpha_t (d_t + \lambda \theta_{t-1})              \quad (multiplier = None)
        u_t = -\eta_t (\alpha_t d_t + \lambda \theta_{t-1})        \quad (multiplier = \eta)

    The first is optax's and PyTorch's ``AdamW`` (this equals ``optax.adamw``); the
    second is the paper's, where the decay does not scale with the learning rate.

    Args:
      learning_rate: ``alpha``, a float or a schedule.
      b1: first-moment decay, in [0, 1).
      b2: second-moment decay, in [0, 1).
      eps: added to the denominator outside the square root, >= 0.
      weight_decay: ``lambda`` (>= 0), a float or a schedule.
      mask: which params decay, as in optax (pytree of bools or a callable).
      multiplier: the paper's schedule multiplier ``eta`` (float or schedule), or None.
      eps_root: added inside the square root (for meta-gradients), >= 0.
      mu_dtype: dtype of the first moment (default: the params' dtype).

    Returns:
      An ``optax.GradientTransformation``.

    Example:
      >>> opt = adamw(1e-3, weight_decay=1e-2, multiplier=sgdr(1.0, period=1000))

    References:
      Loshchilov & Hutter, `Decoupled Weight Decay Regularization
      <https://arxiv.org/abs/1711.05101>`_, ICLR 2019 (Algorithm 2).
    """
    eps = _check_adam_args(b1, b2, eps)
    eps_root = check_value("eps_root", eps_root, low=0.0)
    mu_dtype = _check_dtype("mu_dtype", mu_dtype)
    return optax.chain(
        optax.scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype),
        decoupled_weight_decay(learning_rate, weight_decay, multiplier=multiplier, mask=mask),
    )


def sgdw(
    learning_rate: optax.ScalarOrSchedule,
    momentum: float = 0.9,
    nesterov: bool = False,
    weight_decay: optax.ScalarOrSchedule = 1e-4,
    *,
    mask: MaskOrFn = None,
    multiplier: optax.ScalarOrSchedule | None = None,
    accumulator_dtype: Any = None,
) -> optax.GradientTransformation:
    r"""SGD with momentum and decoupled weight decay (SGDW).

    The momentum buffer holds raw gradients (``optax.trace``, PyTorch ``SGD`` with
    ``dampening=0``): ``b_t = mu b_{t-1} + g_t``, direction ``d_t = b_t`` or, with
    Nesterov, ``d_t = g_t + mu b_t``. Then, with ``theta_{t-1}`` the params passed in:

    .. math::
        u_t = -\alpha_t (d_t + \lambda \theta_{t-1})              \quad (multiplier = None)
        u_t = -\eta_t (\alpha_t d_t + \lambda \theta_{t-1})        \quad (multiplier = \eta)

    Args:
      learning_rate: ``alpha``, a float or a schedule.
      momentum: ``mu``, in [0, 1).
      nesterov: use Nesterov momentum.
      weight_decay: ``lambda`` (>= 0), a float or a schedule.
      mask: which params decay, as in optax (pytree of bools or a callable).
      multiplier: the paper's schedule multiplier ``eta`` (float or schedule), or None.
      accumulator_dtype: dtype of the momentum buffer (default: the params' dtype).

    Returns:
      An ``optax.GradientTransformation``.

    Example:
      >>> opt = sgdw(0.1, momentum=0.9, weight_decay=5e-4)

    References:
      Loshchilov & Hutter, `Decoupled Weight Decay Regularization
      <https://arxiv.org/abs/1711.05101>`_, ICLR 2019 (Algorithm 1).
    """
    _check_decay_rate("momentum", momentum)
    nesterov = check_flag("nesterov", nesterov)
    accumulator_dtype = _check_dtype("accumulator_dtype", accumulator_dtype)
    return optax.chain(
        optax.trace(decay=momentum, nesterov=nesterov, accumulator_dtype=accumulator_dtype),
        decoupled_weight_decay(learning_rate, weight_decay, multiplier=multiplier, mask=mask),
    )


# The restart table is built at construction, so these must be Python numbers.
_STATIC_RESTART_ARGS = ("period_epochs", "steps_per_epoch", "period_mult")


def _period_steps(period_epochs: float, steps_per_epoch: int) -> int:
    check_value("period_epochs", period_epochs, low=0.0, low_open=True)
    steps_per_epoch = check_steps("steps_per_epoch", steps_per_epoch)
    steps = float(period_epochs) * steps_per_epoch
    if not steps.is_integer():
        raise ValueError(
            "period_epochs * steps_per_epoch must be a whole number of steps, "
            f"got {period_epochs!r} * {steps_per_epoch!r} = {steps!r}"
        )
    return check_steps("period_epochs * steps_per_epoch", steps)


def _warm_restarts(
    period_epochs: float,
    steps_per_epoch: int,
    period_mult: float,
    weight_decay_norm: Any,
    min_multiplier: Any,
    restart_decay: Any,
) -> tuple[optax.Schedule, optax.Schedule]:
    """The SGDR multiplier and the weight decay normalized by the current cycle's length."""
    static = dict(period_epochs=period_epochs, steps_per_epoch=steps_per_epoch, period_mult=period_mult)
    for name, value in static.items():
        # They fix the restart table when the schedule is traced, so arrays cannot work.
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(
                f"{name} must be a Python number, got {type(value).__name__}; under "
                f"optax.inject_hyperparams pass static_args={_STATIC_RESTART_ARGS}"
            )
    period = _period_steps(period_epochs, steps_per_epoch)
    period_mult = float(check_value("period_mult", period_mult, low=1.0))
    weight_decay_norm = check_value("weight_decay_norm", weight_decay_norm, low=0.0)
    check_value("min_multiplier", min_multiplier, low=0.0, high=1.0)
    check_value("restart_decay", restart_decay, low=0.0, high=1.0, low_open=True)
    multiplier = sgdr(1.0, period, period_mult, min_value=min_multiplier, decay=restart_decay)

    def weight_decay(count: jax.Array) -> jax.Array:
        _, _, cycle_length = sgdr_cycle(count, period, period_mult)
        return normalized_weight_decay(weight_decay_norm, cycle_length)

    return multiplier, weight_decay


def adamwr(
    learning_rate: optax.ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    *,
    period_epochs: float,
    steps_per_epoch: int,
    weight_decay_norm: float,
    period_mult: float = 1.0,
    min_multiplier: float = 0.0,
    restart_decay: float = 1.0,
    mask: MaskOrFn = None,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
) -> optax.GradientTransformation:
    r"""AdamW with warm restarts and normalized weight decay (AdamWR).

    :func:`adamw` with ``multiplier`` an SGDR schedule and weight decay normalized by
    the length of the current restart period:

    .. math::
        \eta_t = m + (1 - m) (1 + \cos(\pi \, t_{cur} / S_i)) / 2, \quad
        \lambda_t = \lambda_{norm} / \sqrt{S_i}, \quad
        u_t = -\eta_t (\alpha_t d_t + \lambda_t \theta_{t-1})

    where cycle ``i`` lasts ``S_i = period_epochs * period_mult**i * steps_per_epoch``
    steps, ``t_cur`` steps of it have passed and ``m = min_multiplier``.

    Under ``optax.inject_hyperparams`` pass ``static_args=("period_epochs",
    "steps_per_epoch", "period_mult")``: they fix the restart table at construction.
    The effective learning rate ``eta_t * alpha_t`` of each step is in the state: read it
    with :func:`lrjax.effective_learning_rate` (e.g. to log it).

    Args:
      learning_rate: ``alpha``, a float or a schedule (the multiplier scales it).
      b1: first-moment decay, in [0, 1).
      b2: second-moment decay, in [0, 1).
      eps: added to the denominator outside the square root, >= 0.
      period_epochs: length of the first cycle in epochs, > 0.
      steps_per_epoch: optimizer steps per epoch (``B / b``), > 0; the first cycle
        must be a whole number of steps.
      weight_decay_norm: ``lambda_norm``, >= 0.
      period_mult: growth of the cycle length per restart, >= 1.
      min_multiplier: the multiplier's minimum ``m``, in [0, 1].
      restart_decay: factor on the multiplier's maximum at each restart, in (0, 1].
      mask: which params decay, as in optax.
      eps_root: added inside the square root, >= 0.
      mu_dtype: dtype of the first moment (default: the params' dtype).

    Returns:
      An ``optax.GradientTransformation``.

    Example:
      >>> opt = adamwr(1e-3, period_epochs=10, steps_per_epoch=390, period_mult=2.0,
      ...              weight_decay_norm=0.05)

    References:
      Loshchilov & Hutter, `Decoupled Weight Decay Regularization
      <https://arxiv.org/abs/1711.05101>`_, ICLR 2019 (Sections 3-4, Appendix B).
    """
    multiplier, weight_decay = _warm_restarts(
        period_epochs,
        steps_per_epoch,
        period_mult,
        weight_decay_norm,
        min_multiplier,
        restart_decay,
    )
    return adamw(
        learning_rate, b1, b2, eps, weight_decay,
        mask=mask, multiplier=multiplier, eps_root=eps_root, mu_dtype=mu_dtype,
    )  # fmt: skip


def sgdwr(
    learning_rate: optax.ScalarOrSchedule,
    momentum: float = 0.9,
    nesterov: bool = False,
    *,
    period_epochs: float,
    steps_per_epoch: int,
    weight_decay_norm: float,
    period_mult: float = 1.0,
    min_multiplier: float = 0.0,
    restart_decay: float = 1.0,
    mask: MaskOrFn = None,
    accumulator_dtype: Any = None,
) -> optax.GradientTransformation:
    r"""SGDW with warm restarts and normalized weight decay (SGDWR).

    :func:`sgdw` with the same SGDR multiplier and period-normalized weight decay as
    :func:`adamwr`:

    .. math::
        u_t = -\eta_t (\alpha_t d_t + \lambda_{norm} \theta_{t-1} / \sqrt{S_i})

    Under ``optax.inject_hyperparams`` pass the same ``static_args`` as for
    :func:`adamwr`; :func:`lrjax.effective_learning_rate` reads ``eta_t * alpha_t``.

    Args:
      learning_rate: ``alpha``, a float or a schedule.
      momentum: ``mu``, in [0, 1).
      nesterov: use Nesterov momentum.
      period_epochs: length of the first cycle in epochs, > 0.
      steps_per_epoch: optimizer steps per epoch, > 0.
      weight_decay_norm: ``lambda_norm``, >= 0.
      period_mult: growth of the cycle length per restart, >= 1.
      min_multiplier: the multiplier's minimum, in [0, 1].
      restart_decay: factor on the multiplier's maximum at each restart, in (0, 1].
      mask: which params decay, as in optax.
      accumulator_dtype: dtype of the momentum buffer (default: the params' dtype).

    Returns:
      An ``optax.GradientTransformation``.

    Example:
      >>> opt = sgdwr(0.05, period_epochs=1, steps_per_epoch=390, period_mult=2.0,
      ...             weight_decay_norm=0.025)

    References:
      Loshchilov & Hutter, `Decoupled Weight Decay Regularization
      <https://arxiv.org/abs/1711.05101>`_, ICLR 2019 (Sections 3-4, Appendix B).
    """
    multiplier, weight_decay = _warm_restarts(
        period_epochs,
        steps_per_epoch,
        period_mult,
        weight_decay_norm,
        min_multiplier,
        restart_decay,
    )
    return sgdw(
        learning_rate, momentum, nesterov, weight_decay,
        mask=mask, multiplier=multiplier, accumulator_dtype=accumulator_dtype,
    )  # fmt: skip


class ScaleByAmsgradState(NamedTuple):
    """AMSGrad's state: step count, first and second moments, running max of the second."""

    count: jax.Array  # int32 scalar
    mu: optax.Updates
    nu: optax.Updates
    nu_max: optax.Updates


def scale_by_amsgrad(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    *,
    bias_correction: bool = True,
    mu_dtype: Any = None,
) -> optax.GradientTransformation:
    r"""Rescale gradients by AMSGrad: Adam's direction with a non-decreasing denominator.

    .. math::
        m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t, \quad
        v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2, \quad
        \hat v_t = \max(\hat v_{t-1}, v_t)

    The maximum is taken over the *raw* second moment. With ``bias_correction=True``
    (PyTorch ``Adam(amsgrad=True)``) the direction is
    ``(m_t / (1 - b1^t)) / (sqrt(vhat_t / (1 - b2^t)) + eps)``; with ``False`` it is the
    paper's ``m_t / (sqrt(vhat_t) + eps)``. (``optax.scale_by_amsgrad`` takes the max of
    the bias-corrected moment instead, which matches neither.)

    Args:
      b1: first-moment decay, in [0, 1).
      b2: second-moment decay, in [0, 1).
      eps: added to the denominator, >= 0.
      bias_correction: PyTorch's bias-corrected form (True) or the paper's (False).
      mu_dtype: dtype of the first moment (default: the params' dtype); the second
        moment and its max keep the params' dtype.

    Returns:
      An ``optax.GradientTransformation`` whose updates have the gradients' dtypes.

    Example:
      >>> opt = optax.chain(scale_by_amsgrad(), optax.scale_by_learning_rate(1e-3))

    References:
      Reddi, Kale & Kumar, `On the Convergence of Adam and Beyond
      <https://openreview.net/forum?id=ryQu7f-RZ>`_, ICLR 2018 (Algorithm 2).
    """
    eps = _check_adam_args(b1, b2, eps)
    bias_correction = check_flag("bias_correction", bias_correction)
    mu_dtype = _check_dtype("mu_dtype", mu_dtype)

    def init_fn(params: optax.Params) -> ScaleByAmsgradState:
        return ScaleByAmsgradState(
            count=jnp.zeros([], jnp.int32),
            mu=optax.tree.zeros_like(params, dtype=mu_dtype),
            nu=optax.tree.zeros_like(params),
            nu_max=optax.tree.zeros_like(params),
        )

    def update_fn(
        updates: optax.Updates, state: ScaleByAmsgradState, params: optax.Params = None
    ) -> tuple[optax.Updates, ScaleByAmsgradState]:
        del params
        count = optax.safe_increment(state.count)
        mu = optax.tree.update_moment(updates, state.mu, b1, 1)
        nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
        nu_max = jax.tree.map(jnp.maximum, state.nu_max, nu)
        # (m / c1) / (sqrt(v_max / c2) + eps) = m / (sqrt(v_max) * c1 / sqrt(c2) + c1 eps)
        # with c_i = 1 - b_i^t: the corrections fold into two scalars, so each element
        # costs no more than optax's Adam.
        if bias_correction:
            c1 = 1 - b1**count
            sqrt_scale, shift = c1 * jax.lax.rsqrt(1 - b2**count), c1 * eps
        else:
            sqrt_scale, shift = None, eps

        def direction(g: Any, m: jax.Array, v_max: jax.Array) -> jax.Array:
            g = jnp.asarray(g)  # Python-float leaves work as in optax
            root = jnp.sqrt(v_max)
            if sqrt_scale is not None:
                root = root * jnp.asarray(sqrt_scale, root.dtype)
            return (m / (root + jnp.asarray(shift, root.dtype))).astype(g.dtype)

        new_updates = jax.tree.map(direction, updates, mu, nu_max)
        new_state = ScaleByAmsgradState(
            count=count,
            mu=optax.tree.cast(mu, mu_dtype),
            nu=optax.tree.cast_like(nu, state.nu),
            nu_max=optax.tree.cast_like(nu_max, state.nu_max),
        )
        return new_updates, new_state

    return optax.GradientTransformation(init_fn, update_fn)


def amsgrad(
    learning_rate: optax.ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    *,
    bias_correction: bool = True,
    mu_dtype: Any = None,
) -> optax.GradientTransformation:
    r"""AMSGrad: Adam whose second-moment denominator never decreases.

    .. math:: u_t = -\alpha_t \, \hat m_t / (\sqrt{\hat v_t} + \epsilon)

    with the moments of :func:`scale_by_amsgrad`. The default is PyTorch's
    ``Adam(amsgrad=True)`` (max over the raw ``v``, bias-corrected after);
    ``bias_correction=False`` is the paper's algorithm.

    Args:
      learning_rate: ``alpha``, a float or a schedule.
      b1: first-moment decay, in [0, 1).
      b2: second-moment decay, in [0, 1).
      eps: added to the denominator, >= 0.
      bias_correction: PyTorch's form (True) or the paper's (False).
      mu_dtype: dtype of the first moment (default: the params' dtype).

    Returns:
      An ``optax.GradientTransformation``.

    Example:
      >>> opt = amsgrad(1e-3)

    References:
      Reddi, Kale & Kumar, `On the Convergence of Adam and Beyond
      <https://openreview.net/forum?id=ryQu7f-RZ>`_, ICLR 2018.
    """
    learning_rate = _check_rate("learning_rate", learning_rate)
    return optax.chain(
        scale_by_amsgrad(b1, b2, eps, bias_correction=bias_correction, mu_dtype=mu_dtype),
        optax.scale_by_learning_rate(learning_rate),
    )
