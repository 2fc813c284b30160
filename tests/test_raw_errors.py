"""Regression tests for a hostile review's "unclear crashes": each bad input gave a raw JAX
or Python error (or was silently misread) and is now a ValueError/TypeError naming the
argument and what it accepts. Every test failed before its fix.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lrjax
from lrjax._engine.checks import as_prng_key, check_transformation
from lrjax._engine.data import check_numeric_leaves


def mse(w, batch):
    return jnp.mean((batch["x"] * w - batch["y"]) ** 2)


X = np.linspace(-1, 1, 12 * 4, dtype=np.float32).reshape(12, 4)
DATA = {"x": X, "y": 2 * X}
W = jnp.float32(0.0)
RANGE = dict(min_lr=1e-3, max_lr=1.0, num_steps=4)
SNAP = dict(num_steps=4, num_cycles=2, init_value=0.1)


def range_test(**kwargs):
    call = dict(loss_fn=mse, params=W, optimizer=optax.sgd, data=DATA, **RANGE)
    call.update(kwargs)
    return lrjax.range_test(call.pop("loss_fn"), call.pop("params"), call.pop("optimizer"),
                            call.pop("data"), **call)


def snapshots(**kwargs):
    call = dict(loss_fn=mse, params=W, optimizer=optax.sgd, data=DATA, **SNAP)
    call.update(kwargs)
    return lrjax.train_snapshots(call.pop("loss_fn"), call.pop("params"), call.pop("optimizer"),
                                 call.pop("data"), **call)


def quadratic(hparams, key):
    return (hparams["lr"] - 0.5) ** 2


def search(**kwargs):
    return lrjax.search(quadratic, {"lr": lrjax.uniform(0.0, 1.0)}, num_trials=2, **kwargs)


STRINGS = {"x": X, "y": np.full((12, 4), "a")}
OBJECTS = {"x": X, "y": (2 * X).astype(object)}


# --- 12a. data of str or object dtype ---------------------------------------------------
@pytest.mark.parametrize("data, dtype", [(STRINGS, "<U1"), (OBJECTS, "object")])
def test_range_test_refuses_non_numeric_data(data, dtype):
    with pytest.raises(TypeError, match=rf"data\['y'\] has dtype {dtype}"):
        range_test(data=data)


def test_range_test_refuses_non_numeric_batches_of_an_iterable():
    batches = [{"x": X[0], "y": np.array(["a"] * 4)}] * 4
    with pytest.raises(TypeError, match=r"data \(batch 0\)\['y'\] has dtype <U1"):
        range_test(data=batches)


def test_range_test_refuses_non_numeric_val_data():
    with pytest.raises(TypeError, match=r"val_data\['y'\] has dtype object"):
        range_test(val_data={"x": X[0], "y": X[0].astype(object)})


@pytest.mark.parametrize("data", [STRINGS, OBJECTS, [{"x": X[0], "y": np.array(["a"] * 4)}] * 4])
def test_train_snapshots_refuses_non_numeric_data(data):
    with pytest.raises(TypeError, match=r"data.*\['y'\] has dtype"):
        snapshots(data=data)


def test_the_shared_dtype_check_accepts_numbers_bools_and_keys():
    check_numeric_leaves("data", {"a": np.zeros(2, np.int8), "b": np.ones(2, bool),
                                  "c": jnp.zeros(2, jnp.bfloat16), "d": 1.5,
                                  "k": jax.random.key(0)})
    with pytest.raises(TypeError, match=r"data\[1\]\['z'\] has dtype datetime64"):
        check_numeric_leaves("data", (X, {"z": np.zeros(2, "datetime64[s]")}))


@pytest.mark.parametrize("data", [STRINGS, OBJECTS])
def test_make_train_fn_refuses_non_numeric_data(data):
    with pytest.raises(TypeError, match=r"data\['y'\] has dtype"):
        lrjax.make_train_fn(mse, lambda k: W, lambda h: optax.sgd(h["lr"]),
                            {k: v[:, None] for k, v in data.items()}, num_steps=2)


# --- 12b. one key check -----------------------------------------------------------------
@pytest.mark.parametrize("key, error, message", [
    ("abc", TypeError, "key must be an int seed"),
    (1.5, TypeError, "key must be an int seed"),
    (True, TypeError, "key must be an int seed"),
    (2**64, ValueError, "key: an int seed must fit in 64 bits"),
    (-(2**63) - 1, ValueError, "key: an int seed must fit in 64 bits"),
    (jnp.zeros(3, jnp.uint32), TypeError, "uint32 of shape \\(2,\\)"),
    (jax.random.split(jax.random.key(0), 2), TypeError, "a single JAX PRNG key"),
])
def test_train_snapshots_refuses_bad_keys(key, error, message):
    with pytest.raises(error, match=message):
        snapshots(key=key)


@pytest.mark.parametrize("key, error", [(2**70, ValueError), ("abc", TypeError),
                                        (1.5, TypeError)])
def test_search_and_halving_refuse_bad_keys(key, error):
    with pytest.raises(error, match="key"):
        search(key=key)
    train_fn = lrjax.make_train_fn(mse, lambda k: W, lambda h: optax.sgd(h["lr"]),
                                   {k: v[:, None] for k, v in DATA.items()}, num_steps=2)
    with pytest.raises(error, match="key"):
        lrjax.successive_halving(train_fn, {"lr": lrjax.uniform(0.1, 1.0)}, num_trials=2,
                                 key=key)


def test_every_key_form_gives_the_same_key():
    typed = jax.random.key(7)
    for key in (7, np.int64(7), typed, jax.random.PRNGKey(7), np.asarray(jax.random.PRNGKey(7))):
        got = as_prng_key(key)
        assert got.shape == () and jax.dtypes.issubdtype(got.dtype, jax.dtypes.prng_key)
        np.testing.assert_array_equal(jax.random.key_data(got), jax.random.key_data(typed))
    np.testing.assert_array_equal(jax.random.key_data(as_prng_key(None)),
                                  jax.random.key_data(jax.random.key(0)))


def test_train_snapshots_takes_a_raw_key_like_its_seed():
    loss = lambda w, b, key: mse(w, b) + 0.1 * jax.random.normal(key)  # noqa: E731
    seeded = snapshots(loss_fn=loss, stochastic=True, key=3)
    raw = snapshots(loss_fn=loss, stochastic=True, key=jax.random.PRNGKey(3))
    np.testing.assert_array_equal(seeded.losses, raw.losses)


# --- 12c. storage -----------------------------------------------------------------------
@pytest.mark.parametrize("storage", [5, ["sqlite:///x.db"], ""])
def test_search_refuses_a_storage_it_cannot_open(storage):
    with pytest.raises((TypeError, ValueError), match="storage must be"):
        search(storage=storage)


def test_search_refuses_a_non_str_study_name():
    with pytest.raises(TypeError, match="study_name must be a str"):
        search(storage="journal.log", study_name=5)


# --- 12d. an optimizer factory that returns no transformation ---------------------------
def _returns_none(learning_rate):
    return None


def test_range_test_refuses_a_factory_returning_none():
    with pytest.raises(TypeError, match=r"optimizer\(learning_rate=\.\.\.\) must return an "
                                        "optax GradientTransformation.*NoneType"):
        range_test(optimizer=_returns_none)


def test_train_snapshots_refuses_a_factory_returning_none():
    with pytest.raises(TypeError, match=r"optimizer\(learning_rate=\.\.\.\) must return"):
        snapshots(optimizer=lambda learning_rate: "sgd")


def test_check_transformation():
    tx = optax.adam(0.1)
    assert check_transformation("optimizer_fn(hparams)", tx) is tx
    with pytest.raises(TypeError, match=r"optimizer_fn\(hparams\) must return .* got dict"):
        check_transformation("optimizer_fn(hparams)", {"init": 1})


def test_make_train_fn_refuses_an_optimizer_fn_returning_none():
    train_fn = lrjax.make_train_fn(mse, lambda k: W, lambda h: None,
                                   {k: v[:, None] for k, v in DATA.items()}, num_steps=2)
    with pytest.raises(TypeError, match=r"optimizer_fn\(hparams\) must return"):
        train_fn({"lr": jnp.float32(0.1)}, jax.random.key(0))


# --- 12e. SearchResult.from_json --------------------------------------------------------
def _search_json():
    return {"format": "lrjax.SearchResult/1", "objective": "value", "direction": "minimize",
            "method": "random", "space": {"lr": {"kind": "uniform", "low": 0.0, "high": 1.0}},
            "best_params": None, "best_value": None,
            "trials": [{"number": 0, "params": {"lr": 0.5}, "value": 0.1,
                        "metrics": {"value": 0.1}, "state": "complete"}]}


@pytest.mark.parametrize("text, message", [
    ("[]", "must be an object with format"),
    ("  [1, 2]", "must be an object with format"),
    ('{"format": "lrjax.SearchResult/1"}', "missing"),
    (json.dumps(dict(_search_json(), space={"lr": {"kind": "normal"}})), "kinds \\['normal'\\]"),
    (json.dumps(dict(_search_json(), space={"lr": 3})), "space must map names"),
    (json.dumps(dict(_search_json(), trials={})), "trials must be a list"),
    (json.dumps(dict(_search_json(), trials=[{"number": 0}])), "trial 0 needs"),
    (json.dumps(dict(_search_json(), direction="down")), "direction must be"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
])
def test_search_result_from_json_says_what_it_needs(text, message):
    with pytest.raises(ValueError, match=message):
        lrjax.SearchResult.from_json(text)


def test_search_result_from_json_still_reads_its_own_output(tmp_path):
    back = lrjax.SearchResult.from_json(json.dumps(_search_json()))
    assert back.best_value == 0.1 and back.best_params == {"lr": 0.5}
    (tmp_path / "r.json").write_text(back.to_json())
    assert lrjax.SearchResult.from_json(str(tmp_path / "r.json")).best_value == 0.1


# --- 12f. flags must be bools -----------------------------------------------------------
@pytest.mark.parametrize("flag", ["has_aux", "stochastic"])
@pytest.mark.parametrize("value", ["no", 1, None])
def test_range_test_flags_must_be_bools(flag, value):
    with pytest.raises(TypeError, match=f"{flag} must be True or False"):
        range_test(**{flag: value})


@pytest.mark.parametrize("flag", ["has_aux", "stochastic"])
def test_train_snapshots_flags_must_be_bools(flag):
    with pytest.raises(TypeError, match=f"{flag} must be True or False"):
        snapshots(**{flag: "no"})


# --- 12g. RangeTestResult.from_json validates the decoded blob --------------------------
@pytest.fixture(scope="module")
def blob():
    return json.loads(lrjax.range_test(mse, W, optax.sgd, DATA, **RANGE).to_json())


@pytest.mark.parametrize("field", ["lrs", "losses", "smoothed_losses"])
@pytest.mark.parametrize("dtype", ["int8", "U5", "complex64", "object", "bogus", 3])
def test_range_result_arrays_must_be_float(blob, field, dtype):
    bad = dict(blob, **{field: dict(blob[field], dtype=dtype)})
    with pytest.raises(ValueError, match=f"{field}: not an encoded array.*float dtype"):
        lrjax.RangeTestResult.from_json(json.dumps(bad))


@pytest.mark.parametrize("change, message", [
    (dict(shape=[-1]), "sizes >= 0"),
    (dict(data="1234"), "data must be a list"),
    (dict(data=[1, 2, 3, True]), "not a number"),
    (dict(data=[1, 2, 3, "x"]), "not a number"),
])
def test_range_result_arrays_must_be_well_formed(blob, change, message):
    bad = dict(blob, losses=dict(blob["losses"], **change))
    with pytest.raises(ValueError, match=message):
        lrjax.RangeTestResult.from_dict(bad)


@pytest.mark.parametrize("change, message", [
    (dict(settings=[1, 2]), "settings must be an object"),
    (dict(batch_axes="ab"), "batch_axes must be a list"),
    (dict(sweep=[1]), "sweep must be null or an object"),
    (dict(diverged_at=1.5), "diverged_at must be an int"),
    (dict(diverged_at=99), "diverged_at must be an int"),
    (dict(diverged_at=True), "diverged_at must be an int"),
    (dict(lrs=None), "lrs: not an encoded array"),
])
def test_range_result_fields_are_checked(blob, change, message):
    with pytest.raises(ValueError, match=message):
        lrjax.RangeTestResult.from_dict(dict(blob, **change))


def test_range_result_refuses_absurd_nesting():
    with pytest.raises(ValueError, match="nested too deeply"):
        lrjax.RangeTestResult.from_json("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="nested too deeply"):
        lrjax.RangeTestResult.from_json('{"settings": ' + "[" * 100_000 + "]" * 100_000 + "}")


def test_range_result_round_trip_still_exact(blob):
    back = lrjax.RangeTestResult.from_dict(blob)
    again = json.loads(back.to_json())
    assert again["losses"] == blob["losses"] and again["lrs"] == blob["lrs"]


# --- own hostile pass -------------------------------------------------------------------
def test_range_test_warns_when_the_loss_is_nan_at_step_0():
    bad = {"x": X, "y": 2 * X}
    bad["y"][0, 0] = np.nan  # a NaN in the first batch
    with pytest.warns(RuntimeWarning, match="not finite at step 0.*NaN/inf values"):
        result = range_test(data=bad)
    assert result.diverged_at == 0 and np.isnan(result.losses[0])


def test_range_test_warns_on_empty_batches():
    batches = [{"x": X[0, :0], "y": X[0, :0]}] * 4
    with pytest.warns(RuntimeWarning, match="not finite at step 0.*empty batches"):
        assert range_test(data=batches).diverged_at == 0


def _function_data(key, i):
    return {"x": jnp.ones(4), "y": jnp.ones(4)}


def test_range_test_refuses_steps_past_int32():
    # Before: a 16 GiB MemoryError for the ramp table (or int32 step counters wrapping).
    with pytest.raises(ValueError, match=r"num_steps must be in \[2, 2\*\*31 - 1\]"):
        range_test(data=_function_data, num_steps=2**31)
    with pytest.raises(ValueError, match="num_steps \\* accumulation_steps = 4294967296"):
        range_test(data=_function_data, num_steps=2**30, accumulation_steps=4)


def test_train_snapshots_refuses_micro_batches_past_int32():
    # Before: buffers of 2**30 steps allocated, then 2**32 micro-batch indices in int32.
    with pytest.raises(ValueError, match="num_steps \\* accumulation_steps = 4294967296"):
        snapshots(data=_function_data, num_steps=2**30, accumulation_steps=4)


@pytest.mark.parametrize("kwargs, message", [
    (dict(params={"w": "abc"}), r"params\['w'\] has a str"),
    (dict(params=np.zeros(2, object)), "params has dtype object"),
    (dict(loss_fn=lambda w, s, b: (mse(w, b), s), state={"n": np.array(["x"])}),
     r"state\['n'\] has dtype <U1"),
])
def test_train_snapshots_refuses_non_numeric_params_and_state(kwargs, message):
    with pytest.raises(TypeError, match=message):
        snapshots(**kwargs)


def test_train_snapshots_data_axis_must_be_a_str():
    with pytest.raises(TypeError, match="data_axis must be a str"):
        snapshots(devices=lrjax.Devices(data_axis=3))


def test_search_refuses_trial_numbers_past_int32():
    with pytest.raises(ValueError, match=r"num_trials must be in \[1, 2\*\*31 - 1\]"):
        lrjax.search(quadratic, {"lr": lrjax.uniform(0.0, 1.0)}, num_trials=2**40)


def test_range_result_keeps_a_sweep_of_bools(blob):
    kept = dict(blob, losses=dict(blob["losses"], shape=[1, 4]),
                smoothed_losses=dict(blob["smoothed_losses"], shape=[1, 4]), diverged_at=[-1],
                batch_axes=["nesterov"], sweep={"nesterov": [True]})
    assert lrjax.RangeTestResult.from_dict(kept).sweep == {"nesterov": [True]}
