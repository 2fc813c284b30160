"""The embedded default problem of ``lrjax find``: a Flax MLP on scikit-learn's digits.

scikit-learn ships the 8x8 handwritten digits (1797 images, 10 classes) inside the
package, so the problem needs no download. The model is written with Flax nnx and
turned into what :func:`lrjax.range_test` wants: a pure ``loss_fn(params, batch)``, a
params pytree (a plain nested dict of arrays) and an ``init_fn(key)`` for seeds.

scikit-learn and Flax are optional (``pip install lrjax[examples]``); they are imported
when a function here is first called, never when lrjax is imported.

Example:
    >>> import optax, lrjax
    >>> from lrjax.data.digits import digits_problem
    >>> loss_fn, params, data, init_fn = digits_problem(num_steps=100)
    >>> result = lrjax.range_test(loss_fn, params, optax.adam, data, num_steps=100)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

Params = dict[str, Any]
Batch = dict[str, jax.Array]

NUM_FEATURES = 64
NUM_CLASSES = 10
_EXTRA_HINT = "pip install lrjax[examples]"


class DigitsSplit(NamedTuple):
    """Standardized digits images (float32) and labels (int32), split into train and test."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


class DigitsProblem(NamedTuple):
    """What :func:`lrjax.range_test` needs; unpacks as ``loss_fn, params, data, init_fn``."""

    loss_fn: Callable[[Params, Batch], jax.Array]
    params: Params
    data: Batch
    init_fn: Callable[[jax.Array], Params]


def _require(module: str, package: str) -> Any:
    """Import an optional dependency, or fail with a message naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"the digits problem needs {package} ({_EXTRA_HINT}): {error}") from error


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


@functools.lru_cache(maxsize=4)
def _cached_split(test_fraction: float, seed: int) -> DigitsSplit:
    datasets = _require("sklearn.datasets", "scikit-learn")
    bunch = datasets.load_digits()
    images = np.asarray(bunch.data, dtype=np.float64)
    labels = np.asarray(bunch.target, dtype=np.int32)
    order = np.random.default_rng(seed).permutation(len(labels))
    num_test = round(test_fraction * len(labels))
    test, train = order[:num_test], order[num_test:]
    # Standardize with train statistics only, so nothing leaks from the test set. Some
    # border pixels are always 0: their std is 0, and dividing by 1 keeps them at 0.
    mean = images[train].mean(axis=0)
    std = images[train].std(axis=0)
    std = np.where(std > 0, std, 1.0)
    standardized = ((images - mean) / std).astype(np.float32)
    split = DigitsSplit(standardized[train], labels[train], standardized[test], labels[test])
    for array in split:
        array.setflags(write=False)  # shared by the cache: nobody may modify it
    return split


def load_digits_split(test_fraction: float = 0.2, seed: int = 0) -> DigitsSplit:
    """Load scikit-learn's digits, split them at random (fixed by ``seed``) and standardize.

    Each pixel is mapped to ``(x - mean) / std`` with the mean and std of the train part.

    Args:
        test_fraction: share of the 1797 images held out for testing, in (0, 1).
        seed: seed of the permutation that decides the split.

    Returns:
        A :class:`DigitsSplit` of read-only numpy arrays: images (n, 64) float32, labels (n,) int32.

    Example:
        >>> x_train, y_train, x_test, y_test = load_digits_split()
        >>> x_train.shape, x_test.shape
        ((1438, 64), (359, 64))

    References:
        Alpaydin & Kaynak, "Optical Recognition of Handwritten Digits", UCI Machine
        Learning Repository, 1998 (the test part, as bundled with scikit-learn).
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    return _cached_split(float(test_fraction), int(seed))


@functools.lru_cache(maxsize=1)
def mlp_class() -> type:
    """The Flax nnx MLP class ``DigitsMLP(hidden, *, rngs)`` (64 -> hidden -> 10, ReLU).

    It is defined on first call, so that importing this module needs no Flax.
    """
    nnx = _require("flax.nnx", "flax")

    class DigitsMLP(nnx.Module):
        """One hidden ReLU layer: ``logits = W2 relu(W1 x + b1) + b2``."""

        def __init__(self, hidden: int, *, rngs: Any) -> None:
            self.hidden = nnx.Linear(NUM_FEATURES, hidden, rngs=rngs)
            self.output = nnx.Linear(hidden, NUM_CLASSES, rngs=rngs)

        def __call__(self, x: jax.Array) -> jax.Array:
            return self.output(nnx.relu(self.hidden(x)))

    return DigitsMLP


def make_mlp(hidden: int = 64, key: jax.Array | int = 0) -> Any:
    """A :func:`mlp_class` model with weights drawn from ``key`` (a PRNG key or an int)."""
    _check_positive_int("hidden", hidden)
    nnx = _require("flax.nnx", "flax")
    return mlp_class()(hidden, rngs=nnx.Rngs(params=key))


def apply_and_params(model: Any) -> tuple[Callable[[Params, jax.Array], jax.Array], Params]:
    """Split an nnx model into a pure ``apply(params, x) -> logits`` and a plain-dict params pytree.

    ``nnx.merge`` rebuilds the module from its static graph and the given arrays at trace
    time, so ``apply`` is a pure function that ``jit``, ``vmap`` and ``grad`` accept.
    """
    nnx = _require("flax.nnx", "flax")
    graphdef, state = nnx.split(model)

    def apply(params: Params, x: jax.Array) -> jax.Array:
        return nnx.merge(graphdef, params)(x)

    return apply, nnx.to_pure_dict(state)


def cross_entropy_loss(
    apply: Callable[[Params, jax.Array], jax.Array],
) -> Callable[[Params, Batch], jax.Array]:
    """The mean softmax cross-entropy of ``apply`` on a batch ``{"x": images, "y": labels}``."""

    def loss_fn(params: Params, batch: Batch) -> jax.Array:
        logits = apply(params, batch["x"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()

    return loss_fn


def accuracy(
    apply: Callable[[Params, jax.Array], jax.Array], params: Params, x: jax.Array, y: jax.Array
) -> float:
    """Share of images whose largest logit is the true label."""
    predictions = jnp.argmax(apply(params, jnp.asarray(x)), axis=-1)
    return float(jnp.mean(predictions == jnp.asarray(y)))


def stacked_batches(
    x: np.ndarray, y: np.ndarray, batch_size: int, num_steps: int, seed: int = 0
) -> Batch:
    """``num_steps`` minibatches stacked along a leading step axis, for a scanned loop.

    Batches are drawn without replacement from a fresh permutation per epoch (the tail
    of an epoch too short for a full batch is dropped), so every step sees a full batch.

    Returns:
        ``{"x": (num_steps, batch_size, 64) float32, "y": (num_steps, batch_size) int32}``.
    """
    _check_positive_int("batch_size", batch_size)
    _check_positive_int("num_steps", num_steps)
    if batch_size > len(y):
        raise ValueError(f"batch_size must be <= {len(y)} (the train set), got {batch_size}")
    per_epoch = len(y) // batch_size
    num_epochs = -(-num_steps // per_epoch)
    rng = np.random.default_rng(seed)
    order = np.concatenate(
        [rng.permutation(len(y))[: per_epoch * batch_size] for _ in range(num_epochs)]
    )[: num_steps * batch_size].reshape(num_steps, batch_size)
    return {"x": jnp.asarray(x[order]), "y": jnp.asarray(y[order])}


def digits_problem(
    hidden: int = 64, batch_size: int = 64, num_steps: int = 100, seed: int = 0
) -> DigitsProblem:
    """The default range-test problem: a ``64 -> hidden -> 10`` ReLU MLP on standardized digits.

    The loss is the mean softmax cross-entropy. ``data`` holds ``num_steps`` train
    batches stacked on a leading step axis (the order fixed by ``seed``); ``params``
    are the weights of ``init_fn(jax.random.key(seed))``.

    Args:
        hidden: width of the hidden layer (>= 1).
        batch_size: images per step, from 1 to the 1438 train images.
        num_steps: number of stacked batches (>= 1), normally the range test's ``num_steps``.
        seed: seed of the weights and of the batch order (the train/test split is fixed).

    Returns:
        A :class:`DigitsProblem` ``(loss_fn, params, data, init_fn)``.

    Example:
        >>> loss_fn, params, data, init_fn = digits_problem(hidden=32, num_steps=50)
        >>> data["x"].shape
        (50, 64, 64)

    References:
        Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017, sec. 3.3
        (the range test this problem is made for).
    """
    _check_positive_int("hidden", hidden)
    split = load_digits_split()
    data = stacked_batches(split.x_train, split.y_train, batch_size, num_steps, seed)
    loss_fn, init_fn = _problem_functions(int(hidden))
    return DigitsProblem(loss_fn, init_fn(jax.random.key(seed)), data, init_fn)


@functools.lru_cache(maxsize=8)
def _problem_functions(hidden: int) -> tuple[Callable[[Params, Batch], jax.Array], Any]:
    """``(loss_fn, init_fn)`` for one width, made once per process.

    The same function objects on every call let ``range_test`` reuse its compiled
    programs, and a jitted ``init_fn`` compiles the initialisation once instead of
    dispatching each random op eagerly (seconds on a small CPU).
    """
    nnx = _require("flax.nnx", "flax")
    abstract = nnx.eval_shape(lambda: make_mlp(hidden, 0))  # the graph, no weights drawn
    apply, _ = apply_and_params(abstract)

    @jax.jit
    def init_fn(key: jax.Array) -> Params:
        return apply_and_params(make_mlp(hidden, key))[1]

    return cross_entropy_loss(apply), init_fn


def validation_metrics(hidden: int = 64) -> Callable[[Params], dict[str, jax.Array]]:
    """``eval_fn(params) -> {"val_loss", "val_accuracy"}`` on the held-out test images.

    The mean softmax cross-entropy and the share of correct argmax predictions of the
    ``64 -> hidden -> 10`` MLP on the 359 test images of :func:`load_digits_split`, as
    an ``eval_fn`` of :func:`lrjax.make_train_fn` (traceable: jit and vmap apply).

    Example:
        >>> eval_fn = validation_metrics(hidden=32)
        >>> _, params, _, _ = digits_problem(hidden=32, num_steps=1)
        >>> sorted(eval_fn(params))
        ['val_accuracy', 'val_loss']

    References:
        Alpaydin & Kaynak, "Optical Recognition of Handwritten Digits", UCI Machine
        Learning Repository, 1998.
    """
    _check_positive_int("hidden", hidden)
    split = load_digits_split()
    x, y = jnp.asarray(split.x_test), jnp.asarray(split.y_test)
    apply = _apply_function(int(hidden))

    def eval_fn(params: Params) -> dict[str, jax.Array]:
        logits = apply(params, x)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return {"val_loss": loss, "val_accuracy": jnp.mean(jnp.argmax(logits, -1) == y)}

    return eval_fn


@functools.lru_cache(maxsize=8)
def _apply_function(hidden: int) -> Callable[[Params, jax.Array], jax.Array]:
    nnx = _require("flax.nnx", "flax")
    return apply_and_params(nnx.eval_shape(lambda: make_mlp(hidden, 0)))[0]


def __getattr__(name: str) -> Any:
    # Deprecated in 0.2: ``pure_model`` named two functions with different signatures
    # (this one and lrjax.pure_model, the engine's model adapter).
    if name == "pure_model":
        import warnings

        warnings.warn("lrjax.data.digits.pure_model is deprecated; use "
                      "lrjax.data.digits.apply_and_params (same function).",
                      DeprecationWarning, stacklevel=2)
        return apply_and_params
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
