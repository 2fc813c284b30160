"""Search spaces and host samplers: counts, bounds, log spacing, grids, low discrepancy, bad input."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats
from scipy.stats import qmc

import lrjax
from lrjax.tuning.space import (
    as_arrays,
    grid_axes,
    grid_params,
    quasirandom_params,
    random_params,
    space_from_spec,
    space_to_spec,
)

SPACE = {
    "lr": lrjax.log_uniform(1e-4, 1e-1),
    "b1": lrjax.uniform(0.8, 0.99),
    "width": lrjax.choice([16, 32, 64]),
}


@pytest.mark.parametrize("sampler", [random_params, quasirandom_params])
def test_samples_count_bounds_and_distribution(sampler):
    params = sampler(SPACE, 1024, 0)
    assert len(params) == 1024
    arrays = as_arrays(SPACE, params)
    assert arrays["lr"].dtype == np.float32 and arrays["width"].dtype == np.int32
    lr, b1 = np.array([p["lr"] for p in params]), np.array([p["b1"] for p in params])
    assert lr.min() >= 1e-4 and lr.max() <= 1e-1
    assert b1.min() >= 0.8 and b1.max() <= 0.99
    # log_uniform: log10(lr) is uniform on [-4, -1] (KS test against that law, not a log of
    # lrjax's own formula), so each decade holds a third of the points.
    assert stats.kstest(np.log10(lr), stats.uniform(-4, 3).cdf).pvalue > 1e-3
    assert stats.kstest(b1, stats.uniform(0.8, 0.19).cdf).pvalue > 1e-3
    decades = np.histogram(np.log10(lr), bins=[-4, -3, -2, -1])[0]
    np.testing.assert_allclose(decades / 1024, 1 / 3, atol=0.05)
    counts = np.bincount([[16, 32, 64].index(p["width"]) for p in params], minlength=3)
    np.testing.assert_allclose(counts / 1024, 1 / 3, atol=0.05)


def test_samplers_are_reproducible_from_the_seed():
    assert random_params(SPACE, 8, 3) == random_params(SPACE, 8, 3)
    assert random_params(SPACE, 8, 3) != random_params(SPACE, 8, 4)
    assert quasirandom_params(SPACE, 8, 3) == quasirandom_params(SPACE, 8, 3)


def test_quasirandom_is_low_discrepancy():
    space = {"a": lrjax.uniform(0.0, 1.0), "b": lrjax.uniform(0.0, 1.0)}
    as_unit = lambda ps: np.array([[p["a"], p["b"]] for p in ps])  # noqa: E731
    quasi = [qmc.discrepancy(as_unit(quasirandom_params(space, 64, s))) for s in range(5)]
    rand = [qmc.discrepancy(as_unit(random_params(space, 64, s))) for s in range(20)]
    # Scrambled Sobol's centred L2 discrepancy is several times below iid points' at n = 64.
    assert max(quasi) < 0.5 * min(rand)


def test_grid_enumerates_the_product():
    params = grid_params(SPACE, num_trials=4 * 4 * 3)
    assert len(params) == 48
    expected = itertools.product(np.geomspace(1e-4, 1e-1, 4), np.linspace(0.8, 0.99, 4),
                                 [16, 32, 64])
    got = sorted((p["lr"], p["b1"], p["width"]) for p in params)
    np.testing.assert_allclose(got, sorted(expected), rtol=1e-12)
    # Evenly spaced in log for a log dimension: constant ratio between neighbours.
    lrs = grid_axes(SPACE, 48)["lr"]
    np.testing.assert_allclose(np.diff(np.log(lrs)), math.log(10), rtol=1e-12)
    # The largest full grid within num_trials; a single point is the geometric midpoint.
    assert len(grid_params(SPACE, num_trials=47)) == 27
    assert grid_axes(SPACE, 3)["lr"] == [pytest.approx(math.sqrt(1e-5))]
    assert len(grid_params(SPACE, 1000, grid_points=2)) == 12


def test_space_spec_round_trip():
    assert space_from_spec(space_to_spec(SPACE)) == SPACE


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: lrjax.uniform(1.0, 1.0), "low must be < high"),
        (lambda: lrjax.uniform(2.0, 1.0), "low must be < high"),
        (lambda: lrjax.log_uniform(0.0, 1.0), "low must be > 0"),
        (lambda: lrjax.log_uniform(-1.0, 1.0), "low must be > 0"),
        (lambda: lrjax.uniform(0.0, math.inf), "high must be finite"),
        (lambda: lrjax.log_uniform(math.nan, 1.0), "low must be finite"),
        (lambda: lrjax.choice([]), "must not be empty"),
        (lambda: lrjax.choice([1, 1]), "distinct"),
        (lambda: lrjax.choice([1.0, math.nan]), "finite"),
        (lambda: lrjax.choice(["adam"]), "numbers"),
        (lambda: lrjax.choice("abc"), "sequence of numbers"),
        (lambda: lrjax.uniform("0", 1), "low must be a real number"),
        (lambda: grid_params({"a": lrjax.choice([1, 2, 3])}, 2), "num_trials=2"),
    ],
)
def test_bad_dimensions(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()
