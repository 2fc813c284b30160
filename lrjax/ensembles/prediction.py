"""The prediction of a snapshot ensemble: the mean of its members' softmax probabilities.

The members are params stacked on a leading axis (``train_snapshots(...).params``, or any
stacked pytree); every function here is vmapped over that axis, so the whole ensemble is one
program.

References:
    Huang, Li, Pleiss, Liu, Hopcroft & Weinberger, `Snapshot Ensembles: Train 1, get M
    for free <https://arxiv.org/abs/1704.00109>`_, ICLR 2017.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lrjax.ensembles.snapshots import SnapshotResult
from lrjax._engine.step import PyTree


def _leading_size(name: str, tree: PyTree) -> int:
    leaves = jax.tree.leaves(tree)
    if not leaves:
        raise ValueError(f"{name} is empty (no arrays).")
    sizes = {np.shape(x)[0] if np.ndim(x) else None for x in leaves}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(f"{name}: every leaf needs the same leading snapshot axis, got "
                         f"sizes {sorted(map(str, sizes))}.")
    return sizes.pop()


def _members(stacked_params: PyTree, state: PyTree, last: int | None) -> tuple[PyTree, PyTree]:
    if isinstance(stacked_params, SnapshotResult):
        stacked_params = stacked_params.params
    count = _leading_size("stacked_params", stacked_params)
    if count == 0:
        raise ValueError("stacked_params holds 0 members (leading snapshot axis of size 0).")
    if state is not None and _leading_size("state", state) != count:
        raise ValueError(f"state must hold {count} members like stacked_params, got "
                         f"{_leading_size('state', state)}.")
    if last is None:
        return stacked_params, state
    if isinstance(last, bool) or not isinstance(last, (int, np.integer)) or not 1 <= last <= count:
        raise ValueError(f"last must be an integer number of members in [1, {count}] (the "
                         f"latest snapshots to use), got {last!r}.")
    tail = lambda tree: jax.tree.map(lambda x: x[count - last:], tree)  # noqa: E731
    return tail(stacked_params), tail(state)


def _check_logits(logits: jax.Array, x: Any) -> None:
    """Classes on the last axis, at least two: a softmax over one logit is always 1, and
    over a ``(B,)`` vector it would mix the examples."""
    if logits.ndim == 0 or logits.shape[-1] < 2:
        raise ValueError(
            f"apply_fn returned logits of shape {logits.shape}: the ensemble averages softmax "
            "probabilities over classes on the last axis, which needs at least 2 classes. For "
            "one logit per example (binary), return the two logits [0, z] (softmax of them is "
            "sigmoid(z)).")
    leaves = jax.tree.leaves(x)
    if logits.ndim == 1 and leaves and np.ndim(leaves[0]) >= 2 and \
            np.shape(leaves[0])[0] == logits.shape[0]:
        raise ValueError(
            f"apply_fn returned logits of shape {logits.shape} for {logits.shape[0]} inputs: "
            "that looks like one logit per example, and a softmax over it would mix the "
            "examples; return (batch, classes) logits (for binary, [0, z] per example).")


def ensemble_members(apply_fn: Callable[..., jax.Array], stacked_params: PyTree, x: Any, *,
                     last: int | None = None, state: PyTree = None) -> jax.Array:
    """Each member's softmax probabilities: ``softmax(apply_fn(params_k, x))`` for every k.

    Args:
      apply_fn: ``(params, x) -> logits`` with classes on the last axis.
      stacked_params: params with a leading member axis (e.g. ``train_snapshots(...).params``,
        or the :class:`SnapshotResult` itself).
      x: the inputs, shared by every member.
      last: use only the last ``m`` members (the latest snapshots), ``1 <= m <= M``.
      state: the members' stacked state (e.g. ``result.state``, linen ``batch_stats``):
        then ``apply_fn(params_k, state_k, x)``.

    Returns:
      float32 probabilities of shape ``(m, *logits.shape)``, vmapped over the members.

    Example:
      >>> w = jnp.stack([jnp.eye(3), -jnp.eye(3)])
      >>> ensemble_members(lambda p, x: x @ p, w, jnp.ones((2, 3))).shape
      (2, 2, 3)

    References:
      Huang et al., `Snapshot Ensembles <https://arxiv.org/abs/1704.00109>`_, ICLR 2017.
    """
    if not callable(apply_fn):
        raise TypeError(f"apply_fn must be a callable (params, x) -> logits, got {apply_fn!r:.60}.")
    members, states = _members(stacked_params, state, last)

    def probabilities(params: PyTree, member_state: PyTree) -> jax.Array:
        args = (params, x) if state is None else (params, member_state, x)
        logits = jnp.asarray(apply_fn(*args))
        _check_logits(logits, x)
        return jax.nn.softmax(logits.astype(jnp.promote_types(logits.dtype, jnp.float32)), axis=-1)

    return jax.vmap(probabilities)(members, states)


def ensemble_predict(apply_fn: Callable[..., jax.Array], stacked_params: PyTree, x: Any, *,
                     last: int | None = None, state: PyTree = None) -> jax.Array:
    """The snapshot ensemble's prediction: the mean of the members' softmax probabilities.

    ``p(y | x) = 1/m * sum_k softmax(apply_fn(params_k, x))`` over the last ``m`` members
    (all by default). Probabilities are averaged, as in the paper, not logits.
    :func:`ensemble_members` gives the members' own probabilities.

    Args:
      apply_fn: ``(params, x) -> logits`` with classes on the last axis.
      stacked_params: params with a leading member axis, or a :class:`SnapshotResult`.
      x: the inputs.
      last: use only the last ``m`` snapshots, ``1 <= m <= M``.
      state: the members' stacked state: then ``apply_fn(params_k, state_k, x)``.

    Returns:
      float32 probabilities with the logits' shape (each row sums to 1).

    Example:
      >>> w = jnp.stack([jnp.eye(3), -jnp.eye(3)])  # two members: logits x and -x
      >>> probs = ensemble_predict(lambda p, x: x @ p, w, jnp.array([[1.0, 0.0, 0.0]]))
      >>> [round(float(v), 3) for v in probs[0]]  # mean of [.576 .212 .212], [.155 .422 .422]
      [0.366, 0.317, 0.317]

    References:
      Huang et al., `Snapshot Ensembles: Train 1, get M for free
      <https://arxiv.org/abs/1704.00109>`_, ICLR 2017, sec. 3.
    """
    return jnp.mean(ensemble_members(apply_fn, stacked_params, x, last=last, state=state), axis=0)

