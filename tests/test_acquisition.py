"""Candidate generation and batch selection on a known quadratic chi2."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from scipy.spatial.distance import cdist

from campaign.acquisition import exploration_count, propose_batch, refine_minimum, select_exploration, select_fill
from campaign.basins import enclosing_ellipsoid, find_basins
from campaign.errors import ConfigError
from campaign.space import ParameterSpace
from campaign.surrogate.training import DEFAULT_HYPERPARAMETERS, prepare_training_set, train_surrogate

SPACE = ParameterSpace.from_dict({
    "a": {"low": -3, "high": 3}, "b": {"low": -3, "high": 3}, "c": {"low": 0.01, "high": 100, "scale": "log"},
})
MINIMUM = np.array([0.5, -1.0, 1.0])
HYPERPARAMETERS = {"classifier": dict(DEFAULT_HYPERPARAMETERS), "regressor": dict(DEFAULT_HYPERPARAMETERS)}


def chi2_of(x: np.ndarray) -> np.ndarray:
    offset = x[:, :2] - MINIMUM[:2]
    return 4.0 * (offset**2).sum(axis=1) + 4.0 * np.log10(x[:, 2] / MINIMUM[2]) ** 2


@pytest.fixture(scope="module")
def trained():
    x = SPACE.design(200, seed=2)
    chi2 = chi2_of(x)
    model, _ = train_surrogate(SPACE, prepare_training_set(SPACE, x, chi2, 6.0), HYPERPARAMETERS,
                               seed=0, threads=1, committee_size=4)
    return x, chi2, model


@pytest.mark.parametrize("batch, fraction, expected", [(32, 0.1, 3), (10, 0.1, 1), (10, 0.0, 0), (4, 1.0, 4), (1, 0.1, 1)])
def test_exploration_count(batch, fraction, expected):
    assert exploration_count(batch, fraction) == expected


@pytest.mark.parametrize("strategy", ["committee", "gp", "random"])
def test_batch_shape_and_box(trained, strategy):
    x, chi2, model = trained
    batch = propose_batch(SPACE, model, x, chi2, strategy=strategy, batch_size=12, exploration_fraction=0.25,
                          n_candidates=512, rng=np.random.default_rng(1))
    assert batch.x.shape == (12, 3)
    assert SPACE.contains(batch.x).all()
    explored = 12 if strategy == "random" else 3
    assert batch.origins.count("exploration") == explored
    assert batch.origins.count("acquisition") == 12 - explored
    assert len(np.unique(batch.x, axis=0)) == 12


@pytest.mark.parametrize("strategy", ["committee", "gp"])
def test_batch_targets_low_region(trained, strategy):
    x, chi2, model = trained
    batch = propose_batch(SPACE, model, x, chi2, strategy=strategy, batch_size=16, exploration_fraction=0.0,
                          n_candidates=1024, rng=np.random.default_rng(4))
    proposed = chi2_of(batch.x)
    random_draws = chi2_of(SPACE.design(16, seed=9))
    assert np.median(proposed) < np.median(random_draws) / 3
    assert proposed.min() < chi2.min()


@pytest.mark.parametrize("strategy", ["committee", "gp", "random"])
def test_batch_reproducible(trained, strategy):
    x, chi2, model = trained
    first, second = (
        propose_batch(SPACE, model, x, chi2, strategy=strategy, batch_size=8, exploration_fraction=0.1,
                      n_candidates=256, rng=np.random.default_rng(7))
        for _ in range(2)
    )
    np.testing.assert_array_equal(first.x, second.x)


def test_unknown_strategy_raises(trained):
    x, chi2, model = trained
    with pytest.raises(ConfigError, match="unknown acquisition strategy 'ucb'"):
        propose_batch(SPACE, model, x, chi2, strategy="ucb", batch_size=4, exploration_fraction=0.1,
                      n_candidates=64, rng=np.random.default_rng(0))


def test_refine_minimum_of_quadratic():
    rng = np.random.default_rng(0)
    unit = rng.random((100, 3))
    chi2 = ((unit - [0.3, 0.6, 0.45]) ** 2 * [1.0, 4.0, 9.0]).sum(axis=1)
    np.testing.assert_allclose(refine_minimum(unit, chi2), [0.3, 0.6, 0.45], atol=1e-4)


def test_refine_minimum_needs_points():
    unit = np.random.default_rng(0).random((5, 3))
    assert refine_minimum(unit, unit.sum(axis=1)) is None


def test_exploration_far_from_existing():
    existing = np.full((50, 2), 0.1) + np.random.default_rng(0).random((50, 2)) * 0.1
    chosen = select_exploration(existing, 4, np.random.default_rng(1))
    assert chosen.shape == (4, 2)
    assert (np.linalg.norm(chosen - 0.15, axis=1) > 0.4).all()


@pytest.mark.parametrize("strategy", ["committee", "gp"])
def test_single_acquisition_point_is_refined_minimum(trained, strategy):
    x, chi2, model = trained
    batch = propose_batch(SPACE, model, x, chi2, strategy=strategy, batch_size=2, exploration_fraction=0.5,
                          n_candidates=256, rng=np.random.default_rng(3))
    assert batch.origins == ["acquisition", "exploration"]
    assert batch.statistics["refinement"] is True
    refined = SPACE.from_unit(refine_minimum(SPACE.to_unit(x), chi2)[None, :])
    np.testing.assert_allclose(batch.x[0], refined[0])


def test_evaluated_refinement_not_proposed_again(trained):
    x, chi2, model = trained
    refined = SPACE.from_unit(refine_minimum(SPACE.to_unit(x), chi2)[None, :])
    x_after = np.vstack([x, refined])
    chi2_after = np.append(chi2, chi2_of(refined))

    batch = propose_batch(SPACE, model, x_after, chi2_after, strategy="committee", batch_size=6,
                          exploration_fraction=0.0, n_candidates=256, rng=np.random.default_rng(3))

    assert not np.isclose(batch.x, refined).all(axis=1).any()


def test_refinement_off_uses_strategy_only(trained):
    x, chi2, model = trained
    batch = propose_batch(SPACE, model, x, chi2, strategy="committee", batch_size=6, exploration_fraction=0.0,
                          n_candidates=256, rng=np.random.default_rng(3), refine=False)
    assert batch.statistics["refinement"] is False
    assert batch.x.shape == (6, 3)
    refined = SPACE.from_unit(refine_minimum(SPACE.to_unit(x), chi2)[None, :])
    assert not np.isclose(batch.x, refined).all(axis=1).any()


TWO_MODES = np.array([[-1.5, -1.5], [1.5, 1.2]])
PLANE = ParameterSpace.from_dict({"a": {"low": -3, "high": 3}, "b": {"low": -3, "high": 3}})


def two_mode_chi2(x: np.ndarray) -> np.ndarray:
    """chi2 with minima 0 at TWO_MODES[0] and 1 at TWO_MODES[1], quadratic inside each basin."""
    first = 4.0 * ((x - TWO_MODES[0]) ** 2).sum(axis=1)
    second = 4.0 * ((x - TWO_MODES[1]) ** 2).sum(axis=1) + 1.0
    return np.minimum(first, second)


@pytest.fixture(scope="module")
def two_mode_trained():
    x = PLANE.design(200, seed=3)
    chi2 = two_mode_chi2(x)
    model, _ = train_surrogate(PLANE, prepare_training_set(PLANE, x, chi2, 6.0), HYPERPARAMETERS,
                               seed=0, threads=1, committee_size=4)
    return x, chi2, model


def test_basins_separate_two_modes(two_mode_trained):
    x, chi2, _ = two_mode_trained
    basins = find_basins(PLANE.to_unit(x), chi2)
    best = [PLANE.from_unit(PLANE.to_unit(x)[basin.members[0]][None, :])[0] for basin in basins[:2]]
    assert np.linalg.norm(best[0] - TWO_MODES[0]) < 0.6
    assert np.linalg.norm(best[1] - TWO_MODES[1]) < 0.6
    assert basins[0].best_chi2 < basins[1].best_chi2


def test_basins_of_one_quadratic_start_at_best(trained):
    x, chi2, _ = trained
    basins = find_basins(SPACE.to_unit(x), chi2)
    assert basins[0].members[0] == int(np.argmin(chi2))
    assert sum(len(basin.members) for basin in basins) == len(x)


def test_basins_skip_nonfinite():
    unit = np.random.default_rng(0).random((20, 2))
    chi2 = unit.sum(axis=1)
    chi2[:5] = [np.nan, np.inf, np.nan, np.inf, np.inf]
    basins = find_basins(unit, chi2)
    members = np.concatenate([basin.members for basin in basins])
    assert sorted(members.tolist()) == list(range(5, 20))
    assert find_basins(unit, np.full(20, np.inf)) == []


@pytest.mark.parametrize("strategy", ["committee", "gp"])
def test_batch_refines_both_modes(two_mode_trained, strategy):
    x, chi2, model = two_mode_trained
    batch = propose_batch(PLANE, model, x, chi2, strategy=strategy, batch_size=8, exploration_fraction=0.0,
                          n_candidates=1024, rng=np.random.default_rng(5))
    assert batch.statistics["n_refined"] == 2
    np.testing.assert_allclose(batch.x[0], TWO_MODES[0], atol=1e-3)
    np.testing.assert_allclose(batch.x[1], TWO_MODES[1], atol=1e-3)
    nearest_mode = np.argmin(((batch.x[:, None, :] - TWO_MODES[None]) ** 2).sum(axis=2), axis=1)
    assert (nearest_mode == 1).sum() >= 2


def test_enclosing_ellipsoid_contains_points():
    rng = np.random.default_rng(0)
    points = rng.multivariate_normal([0.5, 0.4, 0.6], [[0.01, 0.008, 0], [0.008, 0.01, 0], [0, 0, 0.002]], size=50)
    ellipsoid = enclosing_ellipsoid(points, margin=1.0)
    whitened = np.linalg.solve(ellipsoid.cholesky, (points - ellipsoid.centre).T)
    radii = np.sqrt((whitened**2).sum(axis=0))
    assert radii.max() == pytest.approx(1.0)
    draws = ellipsoid.draw(2000, rng)
    inside = np.sqrt((np.linalg.solve(ellipsoid.cholesky, (draws - ellipsoid.centre).T) ** 2).sum(axis=0))
    assert inside.max() <= 1.0 + 1e-9
    # Uniform in a 3-D ball: the share within half the radius is 1/8.
    assert (inside < 0.5).mean() == pytest.approx(0.125, abs=0.03)
    assert enclosing_ellipsoid(points[:4]) is None


def test_fill_reaches_edge_of_low_region(trained):
    x, chi2, model = trained
    unit = SPACE.to_unit(x)
    fill = select_fill(model, SPACE, unit, chi2, find_basins(unit, chi2), 12, np.random.default_rng(2))
    assert fill.shape == (12, 3)
    filled_chi2 = chi2_of(SPACE.from_unit(fill))
    # The low region is chi2 < chi2_min + 6; fill points spread over it and its edge, not at its minimum.
    assert np.median(filled_chi2) > 3.0
    assert np.median(filled_chi2) < 20.0
    assert cdist(fill, unit).min(axis=1).min() > 0.01


def test_fill_filters_by_low_threshold(trained):
    x, chi2, model = trained
    unit = SPACE.to_unit(x)
    basins = find_basins(unit, chi2)
    # A threshold far above every log-odds classifies nothing low, so every fill candidate is rejected.
    strict = dataclasses.replace(model, low_margin_threshold=100.0)
    assert select_fill(strict, SPACE, unit, chi2, basins, 12, np.random.default_rng(2)).shape == (0, 3)
    # One far below every log-odds keeps all candidates, also those the uncalibrated filter rejects.
    loose = dataclasses.replace(model, low_margin_threshold=-100.0)
    fill = select_fill(loose, SPACE, unit, chi2, basins, 12, np.random.default_rng(2))
    assert fill.shape == (12, 3)
