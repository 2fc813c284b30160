"""Benchmark: the engine's trainers against the loops a user would write, on CPU.

Three trainers run on the engine (``lrjax/_engine/``): ``lrjax.range_test``,
``lrjax.search`` with ``lrjax.make_train_fn``, and ``lrjax.train_snapshots``. Each is timed
on two models, against two baselines measured in the same run that do the same work:

* **cnn**: two 3x3 convolutions (``jax.lax.conv_general_dilated``, 8 and 16 channels,
  SAME, ReLU) and a dense layer, on 8x8x1 synthetic images, batch 64, 10 classes;
* **mlp**: a 64-256-256-10 ReLU MLP on the same images, flattened.

The labels come from a fixed random linear teacher, so the losses fall and stay finite.

Per trainer (sizes by default; ``--quick`` shrinks them):

* **range test**, 100 steps, Adam, lr from 1e-5 to 1e-1 (exponential ramp). Divergence
  checks are off (``diverge_threshold=inf``: only a NaN would stop it), so that lrjax
  runs every step, as the baselines do; the table notes any curve that stopped early.
* **search**, 4 random trials x 60 steps, ``{"lr": log_uniform(1e-4, 1e-1)}``, Adam,
  ``shuffle=False`` (so the baselines train trial ``i`` on the same batches in the same
  order, without a per-trial permutation), the objective the mean of the last 10 losses.
  Trial ``i`` starts from ``init_fn(split(fold_in(key(0), i))[0])`` everywhere.
* **snapshots**, 100 steps, 4 cycles of the snapshot schedule, SGD with momentum 0.9; the
  params at each cycle's end are kept on device, stacked, and the losses returned.

Methods of each block:

* **lrjax**: the trainer with ``execution="auto"`` (the default) and, where its signature
  has the keyword, with ``"compiled"`` (one ``while_loop``) and ``"host"`` (a Python loop
  over a compiled step) forced; the strategy auto picked is shown (the result's, or
  ``lrjax.choose_execution``'s rule applied to the step when the result does not say).
* **(a)** a plain Python loop over one ``jax.jit``-ed step ``(params, opt_state, batch) ->
  (params, opt_state, loss)``, written as a user would (batches sliced once beforehand,
  losses kept on device and fetched once at the end; in the search the step also takes
  the trial's lr, and each trial's init is one jitted call).
* **(b)** one compiled loop written by hand: ``jax.jit`` of a ``lax.scan`` over the steps
  (search: a whole trial, init to objective, as one jitted program called per trial, all
  queued before any result is read, as ``search``'s CPU default ``vectorize="loop"`` does;
  snapshots: an outer scan over the cycles, whose outputs are the cycle-end params,
  around an inner scan over each cycle's steps).

Where the work necessarily differs: lrjax validates and plans on the host every call,
returns the per-step learning rates (range test, snapshots), smooths and checks
divergence on device, draws the search's points (host numpy) each call and, in snapshots,
writes a (masked) snapshot row every step; the baselines only smooth the range test's
curve on the host and stack the snapshots. That is lrjax's overhead, and it is measured.
lrjax's range-test ramp is a float64 host table, the baselines' the schedule formula in
float32 (the diff column's ~1e-6). In (a) the optimizer state is made by eager
``optimizer.init(params)`` (range test, snapshots), as a user writes it.

Each method is timed on its first call (after ``lrjax.clear_caches()`` and
``jax.clear_caches()``: compilation included) and warm: one untimed call, then the best
of ``--repeats`` (default 3) calls, interleaved across the block's methods with a
rotating order so load changes hit all alike. Every call ends in ``block_until_ready``
(and the host results lrjax returns); times are ``time.perf_counter`` with the garbage
collector paused. Ratios are lrjax / (a) and lrjax / (b) of those times; targets are
printed under their blocks and at the end, the warm ones also as the median of the
per-round ratios (paired: the calls of a round run back to back, so load drifting on a
shared machine cancels). The "diff" column is the largest absolute difference of the method's
losses (range test, snapshots: every step; search: each trial's objective) from (a)'s:
the check that the methods trained the same thing.

Usage:
    .venv/bin/python benchmarks/engine.py [--repeats 3] [--quick]
        [--only range search snapshots] [--models cnn mlp]

A full run takes about 4 minutes on a 2-core CPU; ``--quick`` about 2.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import inspect
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import lrjax

BATCH, SIDE, CLASSES = 64, 8, 10
RANGE_MIN_LR, RANGE_MAX_LR = 1e-5, 1e-1
SEARCH_SPACE = {"lr": lrjax.log_uniform(1e-4, 1e-1)}
LOSS_WINDOW = 10  # make_train_fn's default: the objective is the mean of the last 10 losses
SNAPSHOT_LR = 0.05
SNAPSHOT_OPTIMIZER = functools.partial(optax.sgd, momentum=0.9)

FULL = dict(range_steps=100, trials=4, search_steps=60, snapshot_steps=100, cycles=4)
QUICK = dict(range_steps=40, trials=2, search_steps=30, snapshot_steps=40, cycles=4)

# (trainer, model, lrjax method, versus, bound, first call?): printed beside the ratios.
TARGETS = (
    ("range", "cnn", "lrjax auto", "(a)", 1.25, False),
    ("range", "cnn", "lrjax auto", "(a)", 1.5, True),
    ("search", "cnn", "lrjax auto", "(a)", 1.3, False),
    ("range", "mlp", "lrjax auto", "(b)", 1.1, False),
)


# --------------------------------------------------------------------------------------
# The two models (module-level functions: lrjax's caches key on them, so warm calls hit).
# --------------------------------------------------------------------------------------
def _cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def _conv(x: jax.Array, w: jax.Array) -> jax.Array:
    return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def cnn_init(key: jax.Array) -> dict:
    k1, k2, k3 = jax.random.split(key, 3)
    he = lambda k, shape, fan_in: jax.random.normal(k, shape) * jnp.sqrt(2.0 / fan_in)  # noqa: E731
    return {
        "c1": he(k1, (3, 3, 1, 8), 9), "b1": jnp.zeros(8),
        "c2": he(k2, (3, 3, 8, 16), 72), "b2": jnp.zeros(16),
        "w": he(k3, (SIDE * SIDE * 16, CLASSES), SIDE * SIDE * 16), "b": jnp.zeros(CLASSES),
    }


def cnn_loss(params: dict, batch: tuple) -> jax.Array:
    x, y = batch  # x: (64, 8, 8, 1)
    h = jax.nn.relu(_conv(x, params["c1"]) + params["b1"])
    h = jax.nn.relu(_conv(h, params["c2"]) + params["b2"])
    return _cross_entropy(h.reshape(h.shape[0], -1) @ params["w"] + params["b"], y)


MLP_SIZES = (SIDE * SIDE, 256, 256, CLASSES)


def mlp_init(key: jax.Array) -> dict:
    keys = jax.random.split(key, len(MLP_SIZES) - 1)
    return {f"l{i}": {"w": jax.random.normal(k, (m, n)) * jnp.sqrt(2.0 / m), "b": jnp.zeros(n)}
            for i, (k, m, n) in enumerate(zip(keys, MLP_SIZES[:-1], MLP_SIZES[1:]))}


def mlp_loss(params: dict, batch: tuple) -> jax.Array:
    x, y = batch  # x: (64, 64)
    layers = [params[f"l{i}"] for i in range(len(MLP_SIZES) - 1)]
    for layer in layers[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    return _cross_entropy(x @ layers[-1]["w"] + layers[-1]["b"], y)


class Model(NamedTuple):
    name: str
    loss_fn: Callable[[Any, Any], jax.Array]
    init_fn: Callable[[jax.Array], Any]
    image_shape: tuple[int, ...]  # one example's input shape


MODELS = {
    "cnn": Model("cnn", cnn_loss, cnn_init, (SIDE, SIDE, 1)),
    "mlp": Model("mlp", mlp_loss, mlp_init, (SIDE * SIDE,)),
}


def stacked_data(model: Model, num_batches: int, seed: int = 0) -> tuple[jax.Array, jax.Array]:
    """``(x, y)`` on device, a leading batch axis: ``x`` (n, 64, *image), ``y`` (n, 64) int32."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((num_batches, BATCH, SIDE * SIDE)).astype(np.float32)
    teacher = np.random.default_rng(1234).standard_normal((SIDE * SIDE, CLASSES))
    y = np.argmax(x @ teacher, axis=-1).astype(np.int32)
    return jnp.asarray(x.reshape((num_batches, BATCH) + model.image_shape)), jnp.asarray(y)


def split_batches(data: Any, count: int) -> list:
    """The first ``count`` batches as a list (what a Python loop iterates over)."""
    return [jax.tree.map(lambda leaf, i=i: leaf[i], data) for i in range(count)]


def has_keyword(fn: Callable[..., Any], name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def execution_kwargs(fn: Callable[..., Any], execution: str | None) -> dict:
    """``{"execution": execution}`` when ``fn`` takes it (and one is asked for), else ``{}``."""
    return {} if execution is None or not has_keyword(fn, "execution") else {"execution": execution}


def reported_execution(*objects: Any) -> str | None:
    """The strategy a result (or train_fn) says it ran with, if it says."""
    for obj in objects:
        for name in ("execution", "strategy"):
            value = getattr(obj, name, None)
            if isinstance(value, str) and value in ("compiled", "host"):
                return value
        settings = getattr(obj, "settings", None)
        if isinstance(settings, dict) and settings.get("execution") in ("compiled", "host"):
            return settings["execution"]
    return None


def rule_execution(model: Model, optimizer: optax.GradientTransformation, params: Any,
                   batch: Any) -> str:
    """``lrjax.choose_execution("auto", ...)`` applied to this model's train step."""
    def step(params: Any, opt_state: Any, batch: Any) -> Any:
        loss, grads = jax.value_and_grad(model.loss_fn)(params, batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return lrjax.choose_execution("auto", step, params, optimizer.init(params), batch)


class Method(NamedTuple):
    """``first()`` builds everything (fresh jit objects) and runs once; ``warm()`` reruns.

    Both return ``(losses as numpy, what to block on)``; ``info()`` reports, after the
    first call, the strategy lrjax ran with and how many steps it recorded.
    """

    first: Callable[[], tuple[np.ndarray, Any]]
    warm: Callable[[], tuple[np.ndarray, Any]]
    info: Callable[[], dict]


def two_phase(build: Callable[[], Callable[[], tuple[np.ndarray, Any]]],
              info: Callable[[], dict] | None = None) -> Method:
    """A :class:`Method` from ``build() -> run``: ``first`` builds and runs, ``warm`` reruns."""
    holder: dict[str, Any] = {}

    def first() -> tuple[np.ndarray, Any]:
        holder["run"] = build()
        return holder["run"]()

    return Method(first, lambda: holder["run"](), info or dict)


# --------------------------------------------------------------------------------------
# Range test.
# --------------------------------------------------------------------------------------
def exponential_ramp(num_steps: int) -> optax.Schedule:
    """The range test's ramp ``min * (max / min) ** (t / (N - 1))`` as a user writes it."""
    ratio = RANGE_MAX_LR / RANGE_MIN_LR
    return lambda count: RANGE_MIN_LR * ratio ** (count / (num_steps - 1))


def smoothed(losses: np.ndarray, beta: float = 0.98) -> np.ndarray:
    """The range test's bias-corrected EMA, on the host (the baselines' share of the work)."""
    out, average = np.empty_like(losses), 0.0
    for t, value in enumerate(losses):
        average = beta * average + (1 - beta) * float(value)
        out[t] = average / (1 - beta ** (t + 1))
    return out


def range_methods(model: Model, num_steps: int,
                  executions: list[str]) -> tuple[dict[str, Method], str]:
    params = model.init_fn(jax.random.key(0))
    data = stacked_data(model, num_steps)
    batches = split_batches(data, num_steps)
    methods: dict[str, Method] = {}

    for execution in executions:
        seen: dict[str, Any] = {}

        def build(execution: str = execution, seen: dict = seen) -> Callable:
            kwargs = execution_kwargs(lrjax.range_test, execution)

            def run() -> tuple[np.ndarray, Any]:
                result = lrjax.range_test(model.loss_fn, params, optax.adam, data,
                                          min_lr=RANGE_MIN_LR, max_lr=RANGE_MAX_LR,
                                          num_steps=num_steps, diverge_threshold=math.inf,
                                          **kwargs)
                seen["result"] = result
                return np.asarray(result.losses), result.losses

            return run

        def info(seen: dict = seen) -> dict:
            result = seen.get("result")
            steps = int(np.sum(np.isfinite(result.losses))) if result is not None else None
            return {"execution": reported_execution(result), "steps": steps}

        methods[f"lrjax {execution}"] = two_phase(build, info)

    def python_loop() -> Callable:
        optimizer = optax.adam(exponential_ramp(num_steps))

        @jax.jit
        def step(params: Any, opt_state: Any, batch: Any) -> tuple[Any, Any, jax.Array]:
            loss, grads = jax.value_and_grad(model.loss_fn)(params, batch)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        def run() -> tuple[np.ndarray, Any]:
            current, opt_state, losses = params, optimizer.init(params), []
            for batch in batches:
                current, opt_state, loss = step(current, opt_state, batch)
                losses.append(loss)
            losses = np.asarray(jax.device_get(losses), np.float32)
            smoothed(losses)  # lrjax returns the smoothed curve too
            return losses, None

        return run

    def compiled_loop() -> Callable:
        optimizer = optax.adam(exponential_ramp(num_steps))

        @jax.jit
        def train(params: Any, data: Any) -> jax.Array:
            def step(carry: tuple, batch: Any) -> tuple[tuple, jax.Array]:
                params, opt_state = carry
                loss, grads = jax.value_and_grad(model.loss_fn)(params, batch)
                updates, opt_state = optimizer.update(grads, opt_state, params)
                return (optax.apply_updates(params, updates), opt_state), loss

            return jax.lax.scan(step, (params, optimizer.init(params)), data)[1]

        def run() -> tuple[np.ndarray, Any]:
            losses = np.asarray(train(params, data), np.float32)
            smoothed(losses)
            return losses, None

        return run

    methods["(a)"] = two_phase(python_loop)
    methods["(b)"] = two_phase(compiled_loop)
    rule = rule_execution(model, optax.adam(1e-3), params, batches[0])
    return methods, rule


# --------------------------------------------------------------------------------------
# Search.
# --------------------------------------------------------------------------------------
def adam_from_hparams(hparams: dict) -> optax.GradientTransformation:
    return optax.adam(hparams["lr"])


def trial_lrs(num_trials: int) -> list[float]:
    """The learning rates ``search(method="random", key=0)`` gives its trials (read off a
    search whose train_fn returns the lr: nothing is trained)."""
    result = lrjax.search(lambda hparams, key: hparams["lr"], SEARCH_SPACE,
                          num_trials=num_trials, method="random", key=0)
    return [float(trial["params"]["lr"]) for trial in result.trials]


def trial_init_key(number: int) -> jax.Array:
    """The init key of trial ``number``, as make_train_fn splits ``fold_in(key(0), number)``."""
    return jax.random.split(jax.random.fold_in(jax.random.key(0), number))[0]


def search_methods(model: Model, num_trials: int, num_steps: int,
                   executions: list[str]) -> tuple[dict[str, Method], str]:
    data = stacked_data(model, num_steps, seed=1)  # one batch per step: shuffle=False
    batches = split_batches(data, num_steps)
    lrs = trial_lrs(num_trials)
    methods: dict[str, Method] = {}

    for execution in executions:
        seen: dict[str, Any] = {}

        def build(execution: str = execution, seen: dict = seen) -> Callable:
            # make_train_fn takes ``execution``; were it only on search, it would go there.
            make_kwargs = execution_kwargs(lrjax.make_train_fn, execution)
            search_kwargs = {} if make_kwargs else execution_kwargs(lrjax.search, execution)
            train_fn = lrjax.make_train_fn(model.loss_fn, model.init_fn, adam_from_hparams, data,
                                           num_steps=num_steps, shuffle=False,
                                           loss_window=LOSS_WINDOW, **make_kwargs)
            seen["train_fn"] = train_fn

            def run() -> tuple[np.ndarray, Any]:
                result = lrjax.search(train_fn, SEARCH_SPACE, num_trials=num_trials,
                                      method="random", key=0, **search_kwargs)
                seen["result"] = result
                values = [t["value"] for t in result.trials]
                return np.asarray([np.nan if v is None else v for v in values], np.float32), None

            return run

        def info(seen: dict = seen) -> dict:
            return {"execution": reported_execution(seen.get("result"), seen.get("train_fn"))}

        methods[f"lrjax {execution}"] = two_phase(build, info)

    # Both baselines build adam_from_hparams's optimizer with the lr as a runtime argument,
    # so one compiled step (or loop) serves every trial, as make_train_fn's program does.
    # So (a)'s step takes the lr as a fourth argument. optax.inject_hyperparams would keep
    # it in the state instead, at the same cost but with a differently rounded update
    # (1e-4 apart after 60 steps), which would blur the "diff" column's check.
    keys = [trial_init_key(n) for n in range(num_trials)]

    def python_loop() -> Callable:
        @jax.jit
        def step(params: Any, opt_state: Any, batch: Any,
                 lr: jax.Array) -> tuple[Any, Any, jax.Array]:
            loss, grads = jax.value_and_grad(model.loss_fn)(params, batch)
            updates, opt_state = optax.adam(lr).update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        @jax.jit
        def init(key: jax.Array) -> tuple[Any, Any]:
            params = model.init_fn(key)
            return params, optax.adam(1e-3).init(params)  # adam's state holds no lr

        def run() -> tuple[np.ndarray, Any]:
            last = []
            for lr, key in zip(lrs, keys):  # every trial queued before any result is read
                lr = np.float32(lr)
                params, opt_state = init(key)
                losses = []
                for batch in batches:
                    params, opt_state, loss = step(params, opt_state, batch, lr)
                    losses.append(loss)
                last.append(losses[-LOSS_WINDOW:])
            window = np.asarray(jax.device_get(last), np.float32)
            return np.nanmean(window, axis=1), None

        return run

    def compiled_loop() -> Callable:
        @jax.jit
        def trial(lr: jax.Array, key: jax.Array, data: Any) -> jax.Array:
            optimizer = adam_from_hparams({"lr": lr})
            params = model.init_fn(key)

            def step(carry: tuple, batch: Any) -> tuple[tuple, jax.Array]:
                params, opt_state = carry
                loss, grads = jax.value_and_grad(model.loss_fn)(params, batch)
                updates, opt_state = optimizer.update(grads, opt_state, params)
                return (optax.apply_updates(params, updates), opt_state), loss

            losses = jax.lax.scan(step, (params, optimizer.init(params)), data)[1]
            return jnp.nanmean(losses[-LOSS_WINDOW:])

        def run() -> tuple[np.ndarray, Any]:
            outs = [trial(np.float32(lr), key, data) for lr, key in zip(lrs, keys)]
            return np.asarray(jax.device_get(outs), np.float32), None

        return run

    methods["(a)"] = two_phase(python_loop)
    methods["(b)"] = two_phase(compiled_loop)
    params = model.init_fn(jax.random.key(0))
    rule = rule_execution(model, optax.adam(1e-3), params, batches[0])
    return methods, rule


# --------------------------------------------------------------------------------------
# Snapshot ensembles.
# --------------------------------------------------------------------------------------
def snapshot_methods(model: Model, num_steps: int, num_cycles: int,
                     executions: list[str]) -> tuple[dict[str, Method], str]:
    if num_steps % num_cycles:
        raise ValueError("the hand-written loops need num_cycles to divide num_steps")
    params = model.init_fn(jax.random.key(0))
    data = stacked_data(model, num_steps, seed=2)
    batches = split_batches(data, num_steps)
    cycle = num_steps // num_cycles
    ends = set(int(t) for t in lrjax.snapshot_cycle_ends(num_steps, num_cycles))
    methods: dict[str, Method] = {}

    for execution in executions:
        seen: dict[str, Any] = {}

        def build(execution: str = execution, seen: dict = seen) -> Callable:
            kwargs = execution_kwargs(lrjax.train_snapshots, execution)

            def run() -> tuple[np.ndarray, Any]:
                result = lrjax.train_snapshots(model.loss_fn, params, SNAPSHOT_OPTIMIZER, data,
                                               num_steps=num_steps, num_cycles=num_cycles,
                                               init_value=SNAPSHOT_LR, **kwargs)
                seen["result"] = result
                return np.asarray(result.losses), result.params

            return run

        def info(seen: dict = seen) -> dict:
            return {"execution": reported_execution(seen.get("result"))}

        methods[f"lrjax {execution}"] = two_phase(build, info)

    def optimizer() -> optax.GradientTransformation:
        return SNAPSHOT_OPTIMIZER(learning_rate=lrjax.snapshot_schedule(SNAPSHOT_LR, num_steps,
                                                                        num_cycles))

    def python_loop() -> Callable:
        tx = optimizer()

        @jax.jit
        def step(params: Any, opt_state: Any, batch: Any) -> tuple[Any, Any, jax.Array]:
            loss, grads = jax.value_and_grad(model.loss_fn)(params, batch)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        def run() -> tuple[np.ndarray, Any]:
            current, opt_state, losses, snaps = params, tx.init(params), [], []
            for t, batch in enumerate(batches):
                current, opt_state, loss = step(current, opt_state, batch)
                losses.append(loss)
                if t in ends:
                    snaps.append(current)
            stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *snaps)  # on device, as lrjax's
            return np.asarray(jax.device_get(losses), np.float32), stacked

        return run

    def compiled_loop() -> Callable:
        tx = optimizer()

        @jax.jit
        def train(params: Any, data: Any) -> tuple[Any, jax.Array]:
            # An outer scan over cycles whose output is each cycle's last params, an inner
            # scan over the cycle's steps: the snapshots fall out of the loop structure.
            def step(carry: tuple, batch: Any) -> tuple[tuple, jax.Array]:
                params, opt_state = carry
                loss, grads = jax.value_and_grad(model.loss_fn)(params, batch)
                updates, opt_state = tx.update(grads, opt_state, params)
                return (optax.apply_updates(params, updates), opt_state), loss

            def one_cycle(carry: tuple, cycle_data: Any) -> tuple[tuple, tuple]:
                carry, losses = jax.lax.scan(step, carry, cycle_data)
                return carry, (carry[0], losses)

            by_cycle = jax.tree.map(lambda x: x.reshape((num_cycles, cycle) + x.shape[1:]), data)
            _, (snaps, losses) = jax.lax.scan(one_cycle, (params, tx.init(params)), by_cycle)
            return snaps, losses.reshape(-1)

        def run() -> tuple[np.ndarray, Any]:
            snaps, losses = train(params, data)
            return np.asarray(losses, np.float32), snaps

        return run

    methods["(a)"] = two_phase(python_loop)
    methods["(b)"] = two_phase(compiled_loop)
    rule = rule_execution(model, optimizer(), params, batches[0])
    return methods, rule


# --------------------------------------------------------------------------------------
# Timing and the report.
# --------------------------------------------------------------------------------------
def timed(run: Callable[[], tuple[np.ndarray, Any]]) -> tuple[float, np.ndarray]:
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        losses, device = run()
        jax.block_until_ready(device)
        return time.perf_counter() - start, losses
    finally:
        gc.enable()


def clear_all_caches() -> None:
    lrjax.clear_caches()
    jax.clear_caches()


def measure(methods: dict[str, Method], repeats: int) -> dict[str, dict[str, Any]]:
    """First call after cleared caches, then one untimed warm-up each (the next method's
    cache clearing threw away the earlier ones' executables), then ``repeats`` interleaved."""
    rows: dict[str, dict[str, Any]] = {}
    for name, method in methods.items():
        clear_all_caches()
        first, losses = timed(method.first)
        rows[name] = {"first": first, "losses": losses, "warm": [], **method.info()}
    for method in methods.values():
        method.warm()
    names = list(methods)
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            rows[name]["warm"].append(timed(methods[name].warm)[0])
    for row in rows.values():
        row["best"] = min(row["warm"])
    return rows


def _ratio(x: float, y: float | None) -> str:
    return "" if y is None or not y else f"{x / y:.2f}x"


def format_block(title: str, rows: dict[str, dict[str, Any]], auto: str | None,
                 auto_source: str) -> list[str]:
    a, b = rows.get("(a)"), rows.get("(b)")
    lines = [f"### {title}", "",
             "| method | first call | warm (best) | warm / (a) | warm / (b) | first / (a) "
             "| first / (b) | diff vs (a) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, row in rows.items():
        label = name
        if name == "lrjax auto" and auto:
            label += f" (picked {auto}{'' if auto_source == 'result' else ', by the rule'})"
        elif name.startswith("lrjax") and row.get("execution") not in (None, name[6:]):
            label += f" (ran {row['execution']})"  # a forced strategy the trainer did not run
        diff = np.nanmax(np.abs(row["losses"] - a["losses"])) if a is not None else math.nan
        lines.append(
            f"| {label} | {row['first']:.2f} s | {row['best'] * 1e3:.1f} ms | "
            f"{_ratio(row['best'], a and a['best'])} | {_ratio(row['best'], b and b['best'])} | "
            f"{_ratio(row['first'], a and a['first'])} | "
            f"{_ratio(row['first'], b and b['first'])} | {diff:.1e} |")
    for name, row in rows.items():
        if row.get("steps") is not None and row["steps"] < len(row["losses"]):
            lines.append(f"note: {name} recorded {row['steps']} of {len(row['losses'])} steps")
    compiled, host = rows.get("lrjax compiled"), rows.get("lrjax host")
    if auto and compiled and host:
        other = "compiled" if auto == "host" else "host"
        chosen, rejected = rows[f"lrjax {auto}"], rows[f"lrjax {other}"]
        verdict = "right" if chosen["best"] <= rejected["best"] else "WRONG (the other is faster)"
        lines.append(f"auto picked {auto}: warm {other}/{auto} = "
                     f"{rejected['best'] / chosen['best']:.2f}x, first call {other}/{auto} = "
                     f"{rejected['first'] / chosen['first']:.2f}x -> {verdict} on warm time")
    return lines + [""]


def target_lines(trainer: str, model_name: str, rows: dict[str, dict[str, Any]]) -> list[str]:
    """The targets of this block: the best-time ratio, and beside it the median of the
    per-round ratios (the two calls of a round ran back to back: a paired statistic that
    load drifting on a shared machine disturbs less)."""
    lines = []
    for t_trainer, t_model, name, versus, bound, first in TARGETS:
        if (t_trainer, t_model) != (trainer, model_name) or name not in rows:
            continue
        if first:
            ratio, paired = rows[name]["first"] / rows[versus]["first"], ""
        else:
            ratio = rows[name]["best"] / rows[versus]["best"]
            pairs = [x / y for x, y in zip(rows[name]["warm"], rows[versus]["warm"])]
            paired = f", paired median {statistics.median(pairs):.2f}x"
        lines.append(f"target {trainer} {model_name}: {name} / {versus} "
                     f"{'first call' if first else 'warm'} = {ratio:.2f}x{paired} "
                     f"(target <= {bound}): {'met' if ratio <= bound else 'MISSED'}")
    return lines


def _cpu_name() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as file:
        for line in file:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def machine_line() -> str:
    return (f"machine: processor {platform.processor() or 'n/a'!r} ({_cpu_name()}), "
            f"{os.cpu_count()} cores, backend {jax.default_backend()}, python "
            f"{platform.python_version()}, jax {jax.__version__}, jaxlib "
            f"{getattr(sys.modules.get('jaxlib'), '__version__', '?')}, optax {optax.__version__}, "
            f"lrjax {lrjax.__version__}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="warm calls per method (best kept)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke test")
    parser.add_argument("--only", nargs="+", choices=("range", "search", "snapshots"),
                        help="trainers to run (default: all)")
    parser.add_argument("--models", nargs="+", choices=tuple(MODELS), default=list(MODELS))
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    started = time.perf_counter()
    print(machine_line())
    print(f"repeats {args.repeats}; sizes {sizes}; batch {BATCH}, images {SIDE}x{SIDE}x1, "
          f"{CLASSES} classes")
    trainers = {
        "range": (lrjax.range_test,
                  lambda m, ex: range_methods(m, sizes["range_steps"], ex),
                  f"range test, {sizes['range_steps']} steps, Adam"),
        "search": (lrjax.make_train_fn,
                   lambda m, ex: search_methods(m, sizes["trials"], sizes["search_steps"], ex),
                   f"search, {sizes['trials']} trials x {sizes['search_steps']} steps, Adam"),
        "snapshots": (lrjax.train_snapshots,
                      lambda m, ex: snapshot_methods(m, sizes["snapshot_steps"], sizes["cycles"],
                                                     ex),
                      f"train_snapshots, {sizes['snapshot_steps']} steps, {sizes['cycles']} "
                      "cycles, SGD momentum 0.9"),
    }
    results: dict[tuple[str, str], dict] = {}
    for trainer, (fn, build, title) in trainers.items():
        if args.only and trainer not in args.only:
            continue
        keyword = has_keyword(fn, "execution") or (
            trainer == "search" and has_keyword(lrjax.search, "execution"))
        executions = ["auto", "compiled", "host"] if keyword else ["auto"]
        if not keyword:
            print(f"note: {fn.__name__} has no execution= keyword yet: lrjax runs its default")
        for model_name in args.models:
            methods, rule = build(MODELS[model_name], executions)
            rows = measure(methods, args.repeats)
            auto_row = rows["lrjax auto"]
            auto, source = (auto_row["execution"], "result") if auto_row.get("execution") \
                else (rule if keyword else None, "rule")
            if not keyword:
                print(f"note: choose_execution's rule would pick {rule} for {model_name}")
            for line in format_block(f"{title}: {model_name}", rows, auto, source):
                print(line)
            for line in target_lines(trainer, model_name, rows):
                print(line)
            if target_lines(trainer, model_name, rows):
                print()
            sys.stdout.flush()
            results[(trainer, model_name)] = rows
    print("targets (all blocks):")
    for (trainer, model_name), rows in results.items():
        for line in target_lines(trainer, model_name, rows):
            print("  " + line)
    print(f"total wall time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
