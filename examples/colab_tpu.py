# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # lrjax on a Colab TPU
#
# Learning-rate tools for JAX and Optax, each a compiled program: schedules, the LR range
# test, a vmapped hyperparameter search and a snapshot ensemble. This notebook runs on a
# free Colab TPU (one v5e chip), on a GPU and on a CPU, as it is.
#
# **Runtime**: *Runtime > Change runtime type > TPU* (or GPU). Colab's TPU runtime pins
# jax/jaxlib 0.7.2; do **not** upgrade jax there (a newer jax breaks libtpu). lrjax supports
# that version, so the install cell below leaves jax alone. There is no `setup_tpu()` to call
# any more: on a TPU runtime, `jax.devices()` lists the TPU directly.

# %%
import os

import jax

print("jax", jax.__version__, "on", jax.default_backend())
print(jax.devices())
if jax.default_backend() == "cpu":
    print("CPU only: everything below runs, just slower. For a TPU: Runtime > Change runtime type.")
# Small mode (CI runs the notebook on a CPU with LRJAX_NOTEBOOK_SMALL=1): fewer steps, same code.
SMALL = os.environ.get("LRJAX_NOTEBOOK_SMALL") == "1"

# %% [markdown]
# ## Install
# lrjax needs only `jax`, `optax` and `numpy`, which Colab already has; the `examples` extra
# adds Flax, scikit-learn (its bundled digits data set) and matplotlib. pip keeps the
# installed jax because it satisfies `jax>=0.7.2`. Set `LRJAX_SOURCE` to install from
# another place (a git URL or a local checkout).

# %%
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("lrjax") is None:
    source = os.environ.get("LRJAX_SOURCE", "lrjax[examples]")
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", source])

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import lrjax
from lrjax.data import digits

# %% [markdown]
# ## Schedules
# Every schedule is an `optax.Schedule` (`count -> value`), so it drops into any optax
# optimizer. Here four of them over 1,000 steps.

# %%
fig, axes = plt.subplots(1, 4, figsize=(16, 3))
schedules = {
    "one_cycle": lrjax.one_cycle(1e-2, 1000),
    "sgdr (period 200, mult 2)": lrjax.sgdr(1e-2, 200, period_mult=2.0),
    "cyclic triangular2": lrjax.cyclic(1e-3, 1e-2, 125, mode="triangular2"),
    "warmup + cosine": lrjax.warmup(lrjax.cosine_annealing(1e-2, 900), 100),
}
for ax, (name, schedule) in zip(axes, schedules.items()):
    lrjax.plot_schedule(schedule, 1000, ax=ax)
    ax.set_title(name)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The LR range test on a Flax model
# A Flax nnx MLP on the digits (8x8 images, 10 classes). `lrjax.range_test` ramps the learning
# rate from `min_lr` to `max_lr` and records the loss, the whole sweep one compiled
# `while_loop` that stops at divergence; three seeds run at once under `vmap`. With several
# devices the batch is sharded over them.

# %%
steps = 60 if SMALL else 200
loss_fn, params, data, init_fn = digits.digits_problem(hidden=64, num_steps=steps)
result = lrjax.range_test(
    loss_fn, params, optax.adam, data, num_steps=steps, num_seeds=3, init_fn=init_fn
)
print(result)
lr = result.suggest()
print(f"suggested learning rate: {lr:.3g}")
result.plot()
plt.show()

# %% [markdown]
# ## A vmapped hyperparameter search
# 16 trials of AdamW on a cosine schedule, learning rate and weight decay drawn from a
# scrambled Sobol sequence. `lrjax.search` compiles `vmap(train_fn)` once and runs a whole
# batch of trials as one program: on one TPU chip many small trainings fill the device.

# %%
split = digits.load_digits_split()
train_steps = 50 if SMALL else 300
train_data = digits.stacked_batches(split.x_train, split.y_train, 64, 20, seed=0)
x_test, y_test = jnp.asarray(split.x_test), jnp.asarray(split.y_test)
apply_fn, _ = digits.apply_and_params(digits.make_mlp(64, 0))


def optimizer_fn(hparams):
    schedule = lrjax.cosine_annealing(hparams["learning_rate"], train_steps)
    return lrjax.adamw(schedule, weight_decay=hparams["weight_decay"])


def test_loss(p):
    return digits.cross_entropy_loss(apply_fn)(p, {"x": x_test, "y": y_test})


train_fn = lrjax.make_train_fn(
    loss_fn, init_fn, optimizer_fn, train_data, num_steps=train_steps, eval_fn=test_loss
)
space = {
    "learning_rate": lrjax.log_uniform(1e-4, 1e-1),
    "weight_decay": lrjax.log_uniform(1e-5, 1e-1),
}
found = lrjax.search(train_fn, space, num_trials=8 if SMALL else 16, method="quasirandom")
print(found)
print("best:", found.best_params, f"test loss {found.best_value:.4f}")
found.plot()  # a matplotlib Figure: objective against each hyperparameter, best so far

# %% [markdown]
# ## A snapshot ensemble
# Huang et al. 2017: train once on a cosine schedule with warm restarts and keep the weights at
# the end of every cycle; the mean of their softmax probabilities is an ensemble for the cost
# of one training.

# %%
snapshot_steps = 60 if SMALL else 600
snapshot_data = digits.stacked_batches(split.x_train, split.y_train, 64, snapshot_steps, seed=1)
snapshots = lrjax.train_snapshots(
    loss_fn,
    params,
    optax.sgd,
    snapshot_data,
    num_steps=snapshot_steps,
    num_cycles=3,
    init_value=0.1,
)
probabilities = lrjax.ensemble_predict(apply_fn, snapshots.params, x_test)
members = jax.vmap(lambda p: jnp.argmax(apply_fn(p, x_test), -1))(snapshots.params)
for i, predicted in enumerate(members):
    print(f"snapshot {i + 1}: test accuracy {float(jnp.mean(predicted == y_test)):.3f}")
ensemble_accuracy = float(jnp.mean(jnp.argmax(probabilities, -1) == y_test))
print(f"ensemble of {len(members)}: test accuracy {ensemble_accuracy:.3f}")
