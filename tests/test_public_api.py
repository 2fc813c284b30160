"""The public names: the contract imports from ``lrjax`` without a warning, every name has
its documented home, ``lrjax.__all__`` is complete and exact, and every deprecated name
still works (the same object as its new spelling) with a DeprecationWarning naming it."""

from __future__ import annotations

import importlib
import inspect
import types
import warnings

import pytest

import lrjax

# The contract: names that code outside the project imports from lrjax, with the keyword
# arguments it passes (a rename of either is a break).
CONTRACT: dict[str, tuple[str, ...]] = {
    "constant": ("value",),
    "step_decay": ("init_value", "step_size", "gamma"),
    "multistep_decay": ("init_value", "milestones", "gamma"),
    "exponential_decay": ("init_value", "decay_rate", "decay_steps", "staircase"),
    "inverse_time_decay": ("init_value", "decay_rate", "decay_steps", "staircase"),
    "polynomial_decay": ("init_value", "end_value", "total_steps", "power"),
    "cosine_annealing": ("init_value", "total_steps", "min_value"),
    "sgdr": ("max_value", "period", "period_mult", "min_value", "decay"),
    "cyclic": ("base_value", "max_value", "step_size_up", "step_size_down", "mode", "gamma",
               "scale_fn", "scale_mode"),
    "cyclic_momentum": (),
    "one_cycle": ("max_value", "total_steps", "pct_start", "div_factor", "final_div_factor",
                  "anneal", "three_phase"),
    "one_cycle_momentum": (),
    "noam": ("d_model", "warmup_steps", "factor"),
    "warmup": ("schedule", "warmup_steps", "init_value", "mode"),
    "wsd": ("peak_value", "total_steps", "warmup_steps", "decay_steps", "decay_fraction",
            "decay", "min_value", "warmup"),
    "inverse_sqrt": ("peak_value", "warmup_steps", "timescale"),
    "adamw": ("learning_rate", "b1", "b2", "eps", "weight_decay", "mask", "multiplier"),
    "sgdw": ("learning_rate", "momentum", "nesterov", "weight_decay", "mask", "multiplier"),
    "normalized_weight_decay": ("weight_decay_norm", "steps_per_period"),
    "adamwr": (),
    "sgdwr": (),
    "amsgrad": ("learning_rate", "b1", "b2", "eps", "bias_correction"),
    "powersign": ("learning_rate", "base", "beta", "sign_decay"),
    "addsign": ("learning_rate", "alpha", "beta", "sign_decay"),
    "linear_sign_decay": ("decay_steps",),
    "cosine_sign_decay": ("decay_steps", "num_periods", "zero_after"),
    "restart_sign_decay": ("decay_steps", "num_periods", "zero_after"),
    "range_test": ("loss_fn", "params", "optimizer", "data", "min_lr", "max_lr", "num_steps",
                   "mode", "smoothing", "diverge_threshold", "state", "stochastic", "eval_fn",
                   "val_data", "key", "has_aux", "accumulation_steps", "execution"),
    "RangeTestResult": (),
    "search": ("train_fn", "space", "num_trials", "batch_size", "method", "objective",
               "direction", "key", "storage", "study_name", "progress"),
    "uniform": ("low", "high"),
    "log_uniform": ("low", "high"),
    "choice": ("values",),
    "make_train_fn": ("loss_fn", "init_fn", "optimizer_fn", "data", "num_steps", "eval_fn",
                      "has_state", "stochastic", "has_aux", "accumulation_steps", "execution"),
    "SearchResult": (),
    "successive_halving": (),
    "hyperband": (),
    "snapshot_schedule": ("init_value", "total_steps", "num_cycles"),
    "train_snapshots": ("loss_fn", "params", "optimizer", "data", "num_steps", "num_cycles",
                        "init_value", "state", "has_aux", "stochastic", "accumulation_steps",
                        "key", "execution"),
    "ensemble_predict": ("apply_fn", "stacked_params", "x", "last"),
    "swa": ("inner", "start_step", "every_steps"),
    "swa_params": (),  # its one argument is named opt_state (passed positionally)
    "noise_scale": ("learning_rate", "dataset_size", "batch_size", "momentum"),
    # the first argument is named learning_rate (passed positionally)
    "scale_learning_rate": ("batch_size", "base_batch_size", "rule"),
    "scale_adam": ("kappa", "learning_rate", "b1", "b2", "eps"),
    "batch_size_schedule": ("lr_schedule", "base_batch_size", "max_batch_size"),
    "gradient_noise_scale": ("loss_fn", "params", "batch", "num_splits"),
    "clear_caches": (),
}

# Where each public name lives (its documented home); lrjax.X is the same object.
HOMES = ("lrjax.schedules", "lrjax.optim", "lrjax.finder", "lrjax.finder.suggest",
         "lrjax.plot", "lrjax.engine", "lrjax.tuning", "lrjax.ensembles", "lrjax.batch")


def _home_names() -> dict[str, str]:
    homes = {}
    for home in HOMES:
        for name in importlib.import_module(home).__all__:
            assert name not in homes, f"{name} has two homes: {homes[name]} and {home}"
            homes[name] = home
    return homes


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_contract_name_imports_from_lrjax_without_a_warning(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        obj = getattr(importlib.import_module("lrjax"), name)
        exec(f"from lrjax import {name}", {})
    assert name in lrjax.__all__
    if CONTRACT[name]:
        parameters = inspect.signature(obj).parameters
        missing = [arg for arg in CONTRACT[name] if arg not in parameters]
        assert not missing, f"lrjax.{name} lost the contract's arguments {missing}"


def test_all_is_exact_and_every_name_has_one_home():
    homes = _home_names()
    public = [name for name in lrjax.__all__ if name != "__version__"]
    assert len(public) == len(set(public)), "a name is listed twice in lrjax.__all__"
    for name in public:
        assert name in homes, f"lrjax.{name} has no home subpackage"
        assert getattr(lrjax, name) is getattr(importlib.import_module(homes[name]), name)
    # every name at a home is either lrjax.X or deliberately home-only
    home_only = set(lrjax._HOME_ONLY_NAMES)
    assert set(homes) == set(public) | home_only
    assert not home_only & set(public)
    # nothing public at the top level is missing from __all__ (subpackages aside)
    extra = {n for n, v in vars(lrjax).items()
             if not n.startswith("_") and not isinstance(v, types.ModuleType)} - set(public)
    assert not extra, f"public at lrjax.X but not in lrjax.__all__: {sorted(extra)}"


def test_star_import_gives_the_public_names_and_no_warning():
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exec("from lrjax import *", namespace)
    assert set(lrjax.__all__) <= set(namespace)


@pytest.mark.parametrize("old", sorted(lrjax._DEPRECATED))
def test_deprecated_name_warns_and_is_its_new_spelling(old):
    home, new = lrjax._DEPRECATED[old]
    target = getattr(importlib.import_module(home), new)
    with pytest.warns(DeprecationWarning, match=rf"lrjax\.{old} is deprecated.*{home}\.{new}"):
        got = getattr(lrjax, old)
    assert got is target
    with pytest.warns(DeprecationWarning):
        namespace: dict = {}
        exec(f"from lrjax import {old}", namespace)
    assert namespace[old] is target
    assert old not in lrjax.__all__


def test_deprecated_aliases_behave_as_the_new_names():
    import numpy as np

    lrs = np.logspace(-4, 0, 41)
    losses = (np.log10(lrs) + 2) ** 2
    with pytest.warns(DeprecationWarning):
        old = lrjax.suggest_minimum(lrs, losses)
    assert old == lrjax.suggest_lr(lrs, losses, "minimum")
    with pytest.warns(DeprecationWarning):
        assert lrjax.trial_key(0, 3).shape == lrjax.tuning.trial_key(0, 3).shape


def test_digits_pure_model_is_a_deprecated_alias():
    from lrjax.data import digits

    with pytest.warns(DeprecationWarning, match="apply_and_params"):
        assert digits.pure_model is digits.apply_and_params


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        lrjax.not_a_name  # noqa: B018


def _tiny_range_test(**kwargs):
    import jax.numpy as jnp
    import numpy as np
    import optax

    x = np.linspace(-1, 1, 10 * 8, dtype=np.float32).reshape(10, 8)
    return lrjax.range_test(lambda p, b: jnp.mean((b[0] * p - b[1]) ** 2), jnp.float32(0.0),
                            optax.sgd, (x, 3 * x), min_lr=1e-3, max_lr=1.0, num_steps=10,
                            **kwargs)


def test_devices_groups_mesh_and_data_axis_and_the_old_keywords_warn():
    import jax
    import numpy as np

    mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("batch",))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = _tiny_range_test(devices=lrjax.Devices(mesh, "batch"))
    with pytest.warns(DeprecationWarning, match=r"range_test\(mesh=, data_axis=\).*Devices"):
        old = _tiny_range_test(mesh=mesh, data_axis="batch")
    np.testing.assert_array_equal(new.losses, old.losses)
    assert lrjax.Devices() == lrjax.engine.Devices(None, "data")
    with pytest.raises(TypeError, match="not both"):
        _tiny_range_test(devices=lrjax.Devices(mesh), mesh=mesh)
    with pytest.raises(TypeError, match="unexpected keyword argument 'meshes'"):
        _tiny_range_test(meshes=mesh)
    with pytest.raises(TypeError, match="devices must be an lrjax.Devices"):
        _tiny_range_test(devices=mesh)
    with pytest.raises(TypeError, match="unexpected keyword argument 'mesh_'"):
        lrjax.train_snapshots(lambda p, b: (p * b).sum(), np.float32(0.0), lambda learning_rate: None,
                              np.ones((4, 2), np.float32), num_steps=4, num_cycles=2,
                              init_value=0.1, mesh_=mesh)
