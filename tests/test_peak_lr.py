"""``RangeTestResult.peak_lr`` (a schedule's peak) and where the ``train_steps`` hint applies.

The factor and the narrowing were chosen on the development half of
benchmarks/finder_quality.py and reported on its held-out half; these tests pin the rule
itself against its definition on synthetic curves.
"""

import warnings

import numpy as np
import pytest
from test_readability import X, pure_noise, range_curve, result_of

import lrjax
from lrjax.finder.suggest.vote import PEAK_FACTOR


def test_peak_of_a_training_curve_is_twice_the_constant_rate_reading():
    result = result_of(range_curve(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a readable curve: no warning
        peak, constant = result.peak_lr(), result.suggest()
    assert PEAK_FACTOR == 2.0
    assert peak == pytest.approx(2.0 * constant)


def test_peak_of_a_readable_validation_curve_is_the_turn_reading():
    train, val = range_curve(1), range_curve(2, noise=0.02)
    result = result_of(train, val)
    assert result.peak_lr() == pytest.approx(result.suggest())
    # Without the validation curve the training curve's x2 applies.
    assert result_of(train).peak_lr() == pytest.approx(2 * result_of(train).suggest())


def early_turn(seed, noise=0.01):
    """A validation curve that falls around 1e-5 and turns up past 1e-4: held-out loss
    that bumps while the output layer calibrates, before the training curve's fall."""
    clean = 1 + 1 / (1 + np.exp((X + 5) / 0.25)) + 5 * np.maximum(X + 4, 0) ** 2
    return clean + np.random.default_rng(seed).normal(scale=noise, size=X.size)


def test_a_validation_peak_is_never_below_its_training_curves_peak():
    """Per curve, peak_lr() with a validation curve is the larger of the turn's reading and
    the peak its training curve gives without the validation curve; the seeds vote after."""
    train = np.stack([range_curve(s) for s in range(3)])
    trained = result_of(train)
    for val, turn_wins in ((np.stack([early_turn(s) for s in range(3)]), False),
                           (np.stack([range_curve(s + 10, noise=0.02) for s in range(3)]), True)):
        result = result_of(train, val)
        turn = result.suggest(per_curve=True)  # Adam-like: the turn reading, no factor
        expected = np.maximum(turn, trained.peak_lr(per_curve=True))
        np.testing.assert_allclose(result.peak_lr(per_curve=True), expected, rtol=1e-12)
        assert result.peak_lr() == pytest.approx(np.sort(expected)[1])  # lower median of 3
        assert bool(np.all(turn >= trained.peak_lr(per_curve=True))) == turn_wins
    # The early turn reads more than a decade below the training curve's peak, which wins.
    assert result_of(train, val := np.stack([early_turn(s) for s in range(3)])).suggest() < (
        trained.peak_lr() / 10)
    assert result_of(train, val).peak_lr() == pytest.approx(trained.peak_lr())


def test_the_training_curves_noise_is_warned_once_by_a_validation_peak():
    """peak_lr() reads the training curves twice with a validation curve (for the turn and
    for the floor); a noisy training curve is warned about once, as by suggest()."""
    train = np.stack([pure_noise(s) for s in range(3)])
    val = np.stack([range_curve(s + 20, noise=0.02) for s in range(3)])
    result = result_of(train, val)
    with warnings.catch_warnings(record=True) as peak_warnings:
        warnings.simplefilter("always")
        result.peak_lr()
    with warnings.catch_warnings(record=True) as suggest_warnings:
        warnings.simplefilter("always")
        result.suggest()
    noisy = [w for w in peak_warnings if "too noisy" in str(w.message)]
    assert len(noisy) == 1
    assert len(noisy) == len([w for w in suggest_warnings if "too noisy" in str(w.message)])


def test_peak_per_curve_and_vote():
    result = result_of(np.stack([range_curve(s) for s in range(3)]))
    per_curve = result.peak_lr(per_curve=True)
    np.testing.assert_allclose(per_curve, 2 * result.suggest(per_curve=True))
    assert result.peak_lr() == pytest.approx(np.sort(per_curve)[1])  # lower median of 3


def test_peak_of_pure_noise_warns_with_the_documented_reading():
    result = result_of(pure_noise(3))
    with pytest.warns(lrjax.UnreadableCurveWarning):
        peak = result.peak_lr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert peak == pytest.approx(2 * result.suggest())


def test_hint_is_not_applied_to_an_unreadable_training_curve():
    """On pure noise the hint would read a noise dip: suggest(train_steps=T) keeps the
    plain reading (and warns), whatever T."""
    result = result_of(pure_noise(4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = result.suggest()
        for steps in (10, 10_000, 10**7):
            assert result.suggest(train_steps=steps) == pytest.approx(plain)


def test_hint_still_applies_to_a_readable_training_curve():
    """A short training is raised (up to 3/4 of the fall); a very long one keeps the
    plain reading: the hint never lowers it."""
    result = result_of(range_curve(5))
    short = result.suggest(train_steps=10, valley_weight=0)
    assert short > 2 * result.suggest(valley_weight=0)
    assert short == pytest.approx(lrjax.finder.suggest.suggest_fall(result.lrs, result.losses, fraction=0.75))
    assert result.suggest(train_steps=10**7, valley_weight=0) == pytest.approx(result.suggest(valley_weight=0))


def test_a_linear_ramp_that_clearly_falls_is_readable():
    """The fall on a linear ramp happens inside the first tenth of its steps: read on the
    log-spaced ramp with the same ends, it is a readable curve (no noise warning)."""
    lrs = np.linspace(1e-4, 1.0, 100)
    x = np.log10(lrs)
    train = 1 + 2 / (1 + np.exp((x + 2.0) / 0.2)) + np.random.default_rng(0).normal(0, 0.02, 100)
    result = lrjax.RangeTestResult(lrs=lrs, losses=train, smoothed_losses=train,
                                   diverged_at=None, batch_axes=())
    assert result.readability.readable
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lr = result.suggest()
    assert 1e-3 < lr < 0.1


@pytest.mark.parametrize("update_scaling", [None, 1.0])
def test_peak_of_an_unreadable_curve_is_suggests_fallback(update_scaling):
    """A curve no rule can read (flat, or diverged at once) falls back to the smallest rate
    tested, with a warning; the peak is that same rate, not 2x or 4x of it (a rate the
    ramp never tried, derived from no reading)."""
    lrs = np.logspace(-7, 1, 100)
    for losses in (np.ones(100), np.r_[np.nan, np.ones(99)]):
        result = lrjax.RangeTestResult(
            lrs=lrs, losses=losses, smoothed_losses=losses,
            diverged_at=None, batch_axes=(), settings={"update_scaling": update_scaling})
        with pytest.warns(UserWarning, match="peak_lr: no curve is readable"):
            assert result.peak_lr() == pytest.approx(lrs[0])
    # In a batch the unreadable curve keeps lrs[0] and does not vote.
    rows = np.stack([range_curve(0), np.ones(100)])
    batch = result_of(rows)
    with pytest.warns(UserWarning, match="does not vote|do not vote"):
        vote = batch.peak_lr()
    with pytest.warns(UserWarning, match="peak_lr"):
        per_curve = batch.peak_lr(per_curve=True)
    assert per_curve[1] == pytest.approx(batch.lrs[0])
    assert vote == pytest.approx(per_curve[0]) == pytest.approx(2 * result_of(range_curve(0)).suggest())


def test_a_compiled_range_test_with_validation_peaks_at_least_at_its_training_peak():
    """On a real (jitted) range test of an Adam least-squares fit with a validation batch."""
    import dataclasses

    import jax
    import jax.numpy as jnp
    import optax

    x = jax.random.normal(jax.random.key(1), (100, 16, 4))
    y = x @ jnp.arange(1.0, 5.0) + 0.3 * jax.random.normal(jax.random.key(2), (100, 16))
    xv = jax.random.normal(jax.random.key(3), (64, 4))
    yv = xv @ jnp.arange(1.0, 5.0)

    def loss_fn(params, batch):
        bx, by = batch
        return jnp.mean((bx @ params - by) ** 2)

    result = lrjax.range_test(loss_fn, jnp.zeros(4), optax.adam, (x, y), val_data=(xv, yv),
                              min_lr=1e-5, max_lr=10.0, num_steps=100)
    trained = dataclasses.replace(result, val_losses=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peak, floor, turn = result.peak_lr(), trained.peak_lr(), result.suggest()
    assert peak == pytest.approx(max(turn, floor), rel=1e-12)


def test_peak_lr_says_its_noise_warning_at_the_callers_line():
    import warnings

    rng = np.random.default_rng(0)
    lrs = np.logspace(-6, 1, 100)
    noise = (2 + rng.normal(0, 0.3, 100)).astype(np.float32)
    result = lrjax.RangeTestResult(lrs=lrs.astype(np.float32), losses=noise,
                                   smoothed_losses=noise, diverged_at=None,
                                   settings={"mode": "exp", "num_steps": 100})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result.peak_lr()
    noisy = [w for w in caught if issubclass(w.category, lrjax.UnreadableCurveWarning)]
    assert noisy and all(w.filename == __file__ for w in noisy), [
        (w.filename, str(w.message)[:60]) for w in caught]


def test_suggestions_and_spread_say_their_warnings_at_the_callers_line():
    import warnings

    rng = np.random.default_rng(1)
    lrs = np.logspace(-6, 1, 100).astype(np.float32)
    rows = (2 + rng.normal(0, 0.3, (2, 100))).astype(np.float32)
    result = lrjax.RangeTestResult(lrs=lrs, losses=rows, smoothed_losses=rows,
                                   diverged_at=np.full(2, -1), batch_axes=("seed",),
                                   settings={"mode": "exp", "num_steps": 100})
    for call in (result.suggestions, result.spread):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call()
        noisy = [w for w in caught if issubclass(w.category, lrjax.UnreadableCurveWarning)]
        assert noisy and all(w.filename == __file__ for w in noisy), [
            (w.filename, str(w.message)[:60]) for w in caught]
