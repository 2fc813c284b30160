"""The three data forms, chunking, early stop, progress, seeds and per-seed data."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lrjax

STEPS = 24
RNG = np.random.default_rng(1)
X = RNG.normal(size=(STEPS, 5, 2)).astype(np.float32)  # batch 5: never split over devices
Y = (X @ np.array([2.0, -1.0], np.float32)).astype(np.float32)
PARAMS = {"w": jnp.zeros(2, jnp.float32)}
RANGE = dict(min_lr=1e-3, max_lr=30.0, num_steps=STEPS, smoothing=0.7)


def mse(params, batch):
    x, y = batch
    return jnp.mean((x @ params["w"] - y) ** 2)


def rows(n=STEPS):
    return [(X[i], Y[i]) for i in range(n)]


def from_table(key, i):
    """The function form serving the same batches as the stacked arrays."""
    return jnp.asarray(X)[i], jnp.asarray(Y)[i]


def random_batch(key, i):
    """A function form that depends on the key: fresh data per step and per seed."""
    x = jax.random.normal(key, (5, 2))
    return x, x @ jnp.array([2.0, -1.0])


def init(key):
    return {"w": jax.random.normal(key, (2,))}


STACKED = lrjax.range_test(mse, PARAMS, optax.sgd, (X, Y), **RANGE)


def assert_same(a, b):
    np.testing.assert_array_equal(a.losses, b.losses)
    np.testing.assert_array_equal(a.smoothed_losses, b.smoothed_losses)
    np.testing.assert_array_equal(a.lrs, b.lrs)
    assert np.array_equal(np.asarray(a.diverged_at), np.asarray(b.diverged_at))


def test_the_curve_diverges_inside_the_range():
    # The other tests rely on a divergence within the range, with steps skipped after it.
    assert STACKED.diverged_at is not None and STACKED.diverged_at < STEPS - 2


@pytest.mark.parametrize("chunk_size", [None, 5, 24, 100])
def test_iterables_equal_stacked(chunk_size):
    assert_same(lrjax.range_test(mse, PARAMS, optax.sgd, rows(), chunk_size=chunk_size, **RANGE), STACKED)


def test_generator_and_function_forms_equal_stacked():
    generator = ((X[i], Y[i]) for i in range(STEPS))
    assert_same(lrjax.range_test(mse, PARAMS, optax.sgd, generator, chunk_size=7, **RANGE), STACKED)
    # On-device data is a different program: equal up to float rounding (XLA fuses differently).
    generated = lrjax.range_test(mse, PARAMS, optax.sgd, from_table, **RANGE)
    np.testing.assert_allclose(generated.losses, STACKED.losses, rtol=1e-6)
    assert generated.diverged_at == STACKED.diverged_at


def test_chunked_stacked_and_progress():
    calls = []
    result = lrjax.range_test(mse, PARAMS, optax.sgd, (X, Y), chunk_size=5,
                              progress=lambda done, total: calls.append((done, total)), **RANGE)
    assert_same(result, STACKED)
    # Stops after the chunk where it diverged; the last call reports completion.
    chunks_run = STACKED.diverged_at // 5 + 1
    assert calls[:-1] == [(5 * (i + 1), STEPS) for i in range(chunks_run - 1)]
    assert calls[-1] == (STEPS, STEPS) and len(calls) == chunks_run


def test_iterator_is_not_pulled_after_divergence():
    pulled = []

    def batches():
        for i in itertools.count():
            pulled.append(i)
            yield X[i % STEPS], Y[i % STEPS]

    result = lrjax.range_test(mse, PARAMS, optax.sgd, batches(), chunk_size=4, **RANGE)
    assert_same(result, STACKED)
    assert len(pulled) == 4 * (STACKED.diverged_at // 4 + 1)


def test_accumulation_with_function_and_iterable_forms():
    # Micro-batch i of step t is index t*k + j in every form.
    micro_x, micro_y = RNG.normal(size=(2 * STEPS, 5, 2)).astype(np.float32), None
    micro_y = micro_x @ np.array([2.0, -1.0], np.float32)

    def table(key, i):
        return jnp.asarray(micro_x)[i], jnp.asarray(micro_y)[i]

    options = dict(accumulation_steps=2, **RANGE)
    stacked = lrjax.range_test(mse, PARAMS, optax.sgd, (micro_x, micro_y), **options)
    listed = lrjax.range_test(mse, PARAMS, optax.sgd, list(zip(micro_x, micro_y)), chunk_size=5, **options)
    generated = lrjax.range_test(mse, PARAMS, optax.sgd, table, **options)
    assert_same(listed, stacked)
    np.testing.assert_allclose(generated.losses, stacked.losses, rtol=1e-6)


def test_short_and_empty_iterables_raise():
    with pytest.raises(ValueError, match="ran out after 10 batches"):
        lrjax.range_test(mse, PARAMS, optax.sgd, rows(10), **{**RANGE, "diverge_threshold": np.inf})
    with pytest.raises(ValueError, match="empty"):
        lrjax.range_test(mse, PARAMS, optax.sgd, iter([]), **RANGE)
    with pytest.raises(ValueError, match="structure"):
        bad = rows(3) + [(X[0],)] + rows(20)
        lrjax.range_test(mse, PARAMS, optax.sgd, bad, **RANGE)
    with pytest.raises(TypeError, match="data must be"):
        lrjax.range_test(mse, PARAMS, optax.sgd, "batches", **RANGE)


@pytest.mark.filterwarnings("ignore:valley")  # a seed may start near the optimum
def test_seeds_reproducible_and_each_seed_is_a_single_run():
    key = jax.random.key(3)
    first = lrjax.range_test(mse, None, optax.sgd, (X, Y), init_fn=init, num_seeds=3, key=key, **RANGE)
    again = lrjax.range_test(mse, None, optax.sgd, (X, Y), init_fn=init, num_seeds=3, key=key, **RANGE)
    other = lrjax.range_test(mse, None, optax.sgd, (X, Y), init_fn=init, num_seeds=3,
                             key=jax.random.key(4), **RANGE)
    assert first.losses.shape == (3, STEPS) and first.batch_axes == ("seed",)
    assert_same(first, again)
    assert not np.array_equal(first.losses[:, :3], other.losses[:, :3])
    # Seed s is the single test run with key = split(key, S)[s] (documented derivation).
    seed_key = jax.random.split(key, 3)[1]
    single = lrjax.range_test(mse, None, optax.sgd, (X, Y), init_fn=init, key=seed_key, **RANGE)
    np.testing.assert_allclose(first.losses[1], single.losses, rtol=1e-6)
    per_seed = first.suggest(per_curve=True)
    assert first.spread() == pytest.approx(np.log10(per_seed.max() / per_seed.min()))
    # The same seeds fed from an iterable, in chunks; an int key is jax.random.key(int).
    listed = lrjax.range_test(mse, None, optax.sgd, rows(), init_fn=init, num_seeds=3, key=3,
                              chunk_size=10, **RANGE)
    np.testing.assert_allclose(listed.losses, first.losses, rtol=1e-6)


def test_per_seed_data_order_from_a_data_function():
    key = jax.random.key(5)
    result = lrjax.range_test(mse, PARAMS, optax.sgd, random_batch, num_seeds=2, key=key, **RANGE)
    assert not np.array_equal(result.losses[0, 1:4], result.losses[1, 1:4])
    single = lrjax.range_test(mse, PARAMS, optax.sgd, random_batch, key=jax.random.split(key, 2)[0], **RANGE)
    # A vmapped and a lone program round differently; near divergence it grows to ~2e-6.
    np.testing.assert_allclose(result.losses[0], single.losses, rtol=1e-5)
    # Step t's batch is data_fn(fold_in(data_key, t), t) with data_key = split(seed_key)[1].
    data_key = jax.random.split(jax.random.split(key, 2)[0])[1]
    x, y = random_batch(jax.random.fold_in(data_key, 0), 0)
    assert result.losses[0, 0] == pytest.approx(float(jnp.mean(y**2)), rel=1e-6)


def test_function_data_in_chunks_with_progress():
    calls = []
    result = lrjax.range_test(mse, PARAMS, optax.sgd, from_table, chunk_size=10,
                              progress=lambda done, total: calls.append(done), **RANGE)
    np.testing.assert_allclose(result.losses, STACKED.losses, rtol=1e-6)
    assert calls[-1] == STEPS and calls == sorted(calls)


def test_validation_with_an_iterable():
    val = (X[0], Y[0])
    listed = lrjax.range_test(mse, PARAMS, optax.sgd, rows(), val_data=val, chunk_size=6, **RANGE)
    stacked = lrjax.range_test(mse, PARAMS, optax.sgd, (X, Y), val_data=val, **RANGE)
    np.testing.assert_array_equal(listed.val_losses, stacked.val_losses)
    stop = stacked.diverged_at
    assert np.all(np.isfinite(stacked.val_losses[:stop])) and np.all(np.isnan(stacked.val_losses[stop + 1:]))
