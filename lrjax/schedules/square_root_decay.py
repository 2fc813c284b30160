"""Inverse square-root decay after a linear warmup (Hugging Face ``get_inverse_sqrt_schedule``).

The Transformer's schedule in the form T5, big_vision and Hugging Face use it: the rate is
given directly (not as ``d_model**-0.5``, see :func:`lrjax.noam`), reached at the end of the
warmup, and decays as ``1 / sqrt(t)`` on a ``timescale`` of its own. It has no end, which
is why it is paired with a cooldown (:func:`lrjax.wsd_cooldown`) when a run must stop.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from lrjax._engine.checks import check_static, check_steps, check_value
from lrjax._engine.schedule_math import _MAX_COUNT, _as_float, _compiled, _count_array, _float_dtype, _fraction

__all__ = ["inverse_sqrt"]


def inverse_sqrt(peak_value: float, warmup_steps: int, timescale: float | None = None) -> optax.Schedule:
    r"""Linear warmup to ``peak_value``, then inverse square-root decay.

    With ``p = peak_value``, ``W = warmup_steps`` and ``tau = timescale``:

    .. math::
        value(t) = \begin{cases}
          p \, t / W & t < W \\
          p / \sqrt{(t - W + \tau) / \tau} & t \ge W
        \end{cases}

    so the peak is at ``t = W`` exactly and the value halves every time ``t - W + tau``
    grows fourfold. Equal to Hugging Face ``get_inverse_sqrt_schedule(optimizer,
    num_warmup_steps=W, timescale=tau)`` with the optimizer's ``lr = p``, including its
    default ``timescale``: ``W``, or 10,000 when ``W = 0``.

    Args:
      peak_value: ``p``, the value at the end of the warmup, ``>= 0`` (may be traced).
      warmup_steps: ``W``, an integer ``>= 0``.
      timescale: ``tau``, steps, a number ``> 0``; default ``W`` (10,000 when ``W = 0``).

    Returns:
      An optax schedule ``count -> value``, values in ``[0, p]``.

    Example:
      >>> schedule = inverse_sqrt(1e-3, warmup_steps=1_000)
      >>> [round(float(schedule(t)), 7) for t in (0, 500, 1_000, 4_000, 16_000)]
      [0.0, 0.0005, 0.001, 0.0005, 0.00025]

    References:
      Vaswani et al., `Attention Is All You Need <https://arxiv.org/abs/1706.03762>`_,
      NeurIPS 2017 (eq. 3); Raffel et al., `T5 <https://arxiv.org/abs/1910.10683>`_, JMLR
      2020 (inverse square root with a constant warmup); Zhai et al., `Scaling Vision
      Transformers <https://arxiv.org/abs/2106.04560>`_, CVPR 2022 (the ``timescale`` form).
    """
    check_value("peak_value", peak_value, low=0.0)
    warmup_steps = check_steps("warmup_steps", warmup_steps, minimum=0)
    if timescale is None:
        timescale = warmup_steps or 10_000
    timescale = check_static("timescale", timescale, low=0.0, low_open=True)

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        count = jnp.clip(_count_array(count), 0, _MAX_COUNT)  # int32 or the caller's float
        peak = _as_float(peak_value)
        # Steps past the warmup in the count's own dtype (exact for int32), 0 at t = W, so
        # the square root is of exactly 1 there and the peak is exact under jit.
        after = jnp.maximum(count - warmup_steps, 0).astype(_float_dtype())
        decayed = peak / jnp.sqrt(1.0 + after / timescale)
        if warmup_steps == 0:
            return decayed
        w = jnp.minimum(count, warmup_steps).astype(_float_dtype())
        return jnp.where(count < warmup_steps, peak * _fraction(w, warmup_steps), decayed)

    return _compiled(schedule)
