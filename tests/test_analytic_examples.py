"""The analytic examples: campaign files load, and the exported answers are right.

Each example's likelihood module exports its true minimum and posterior
moments. These tests check them against the chi2 function itself and against
direct draws from the known distribution, and store an evaluated design on
both backends, +inf values included.
"""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest

from campaign.api import create_campaign
from campaign.config import load_campaign_file
from campaign.likelihood import load_likelihood
from campaign.store import models
from campaign.store.points import insert_points

from conftest import REPO

EXAMPLES = ("banana-2d", "bimodal-6d", "infinite-region", "gaussian-4d")


def load_example(name: str):
    path = REPO / "examples" / name / "likelihood.py"
    spec = importlib.util.spec_from_file_location(f"example_{name.replace('-', '_')}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_design_stored(name, db_url, repo_cwd):
    spec = load_campaign_file(f"examples/{name}/campaign.yaml")
    campaign = create_campaign(spec, db_url)
    likelihood = load_likelihood(spec.likelihood, spec.space.names)
    x = spec.space.design(64, "sobol", seed=0)
    chi2 = np.array([likelihood(dict(zip(spec.space.names, row)))[0] for row in x])

    with campaign.store.transaction() as session:
        row = session.get(models.Campaign, campaign.id)
        insert_points(session, row, x, "initial", chi2=chi2)
    stored = campaign.arrays()

    assert stored.x.shape == (64, spec.space.dim)
    np.testing.assert_array_equal(stored.x, x)
    np.testing.assert_array_equal(stored.chi2, chi2)
    assert np.all(chi2 >= 0.0)


@pytest.mark.parametrize("name", ["banana-2d", "bimodal-6d", "infinite-region"])
def test_example_minimum_is_local(name, repo_cwd):
    module = load_example(name)
    space = load_campaign_file(f"examples/{name}/campaign.yaml").space
    minimum = module.TRUE_MINIMUM
    rng = np.random.default_rng(1)
    nearby = minimum + 1e-3 * rng.standard_normal((50, space.dim))

    assert space.contains(minimum)[0]
    assert module.chi2(*minimum) == pytest.approx(module.CHI2_MIN, abs=1e-12)
    assert min(module.chi2(*row) for row in nearby) > module.CHI2_MIN


def test_banana_moments_match_draws():
    module = load_example("banana-2d")
    rng = np.random.default_rng(2)
    x1 = rng.normal(0.0, module.STD1, 400_000)
    x2 = module.CURVATURE * (x1**2 - module.STD1**2) + rng.normal(0.0, module.STD2, x1.size)
    draws = np.column_stack([x1, x2])

    np.testing.assert_allclose(draws.mean(axis=0), module.POSTERIOR_MEAN, atol=0.01)
    np.testing.assert_allclose(np.cov(draws.T), module.POSTERIOR_COVARIANCE, atol=0.03)
    low, high = module.central_interval("x2", 0.95)
    assert np.mean((x2 > low) & (x2 < high)) == pytest.approx(0.95, abs=0.002)
    assert module.central_interval("x1", 0.6826894921) == pytest.approx((-1.0, 1.0), abs=1e-6)


def test_banana_chi2_known_values():
    module = load_example("banana-2d")

    # One standard deviation along x1 at the bottom of the valley costs 1.
    assert module.chi2(1.0, 0.0) == pytest.approx(1.0)
    assert module.chi2(0.0, -1.0 + module.STD2) == pytest.approx(1.0)
    assert module.chi2(2.0, 3.0) == pytest.approx(4.0)


def test_bimodal_both_modes_are_minima():
    module = load_example("bimodal-6d")
    rng = np.random.default_rng(3)

    for mode, chi2_min in zip(module.MODES, module.CHI2_MINIMA):
        nearby = mode + 1e-3 * rng.standard_normal((50, 6))
        assert module.chi2(*mode) == pytest.approx(chi2_min, abs=1e-12)
        assert min(module.chi2(*row) for row in nearby) > chi2_min
    assert module.CHI2_MINIMA[1] == pytest.approx(2 * math.log(1.5))


def test_bimodal_moments_match_draws():
    module = load_example("bimodal-6d")
    rng = np.random.default_rng(4)
    component = (rng.random(400_000) < module.WEIGHTS[1]).astype(int)
    draws = module.MODES[component] + module.STD * rng.standard_normal((component.size, 6))

    np.testing.assert_allclose(draws.mean(axis=0), module.POSTERIOR_MEAN, atol=0.01)
    np.testing.assert_allclose(np.cov(draws.T), module.POSTERIOR_COVARIANCE, atol=0.02)
    np.testing.assert_array_equal(module.nearest_mode(draws), component)


def test_infinite_region_outside_disk():
    module = load_example("infinite-region")

    assert module.chi2(2.0, 0.1) == math.inf
    assert module.chi2(-3.0, -3.0) == math.inf
    assert module.chi2(2.0, 0.0) == pytest.approx(((2.0 - 1.3) / 0.4) ** 2 + (1.0 / 0.4) ** 2)
    assert module.FINITE_FRACTION == pytest.approx(math.pi / 9)


def test_infinite_region_moments_match_draws():
    module = load_example("infinite-region")
    rng = np.random.default_rng(5)
    draws = module.CENTRE + module.STD * rng.standard_normal((1_000_000, 2))
    draws = draws[module.is_finite(draws)]

    np.testing.assert_allclose(draws.mean(axis=0), module.POSTERIOR_MEAN, atol=0.002)
    np.testing.assert_allclose(np.cov(draws.T), module.POSTERIOR_COVARIANCE, atol=0.002)
    # The edge of the disk pulls the mean inwards from the Gaussian's centre.
    assert np.all(module.POSTERIOR_MEAN < module.CENTRE - 0.05)


def test_infinite_region_low_region_cut_by_edge():
    module = load_example("infinite-region")
    grid = np.stack(np.meshgrid(np.linspace(-3, 3, 601), np.linspace(-3, 3, 601)), axis=-1).reshape(-1, 2)
    low = module.in_low_region(grid, 10.0)
    gaussian_only = np.sum(((grid - module.CENTRE) / module.STD) ** 2, axis=1) < 10.0

    assert np.all(module.is_finite(grid[low]))
    assert 0 < low.sum() < 0.9 * gaussian_only.sum()
