"""emcee sampling, summaries, best fit and profiles on a correlated Gaussian with known results."""

from __future__ import annotations

import numpy as np
import pytest

from campaign.errors import ConfigError
from campaign.posterior import (
    ChainRun, SamplerOptions, burn_in_and_thin, initial_walkers, log_probability, min_walkers, run_sampler,
    summarize,
)
from campaign.profile import (
    PROFILE_CHI2_ERROR_LIMIT, find_best_fit, profile_caution, profile_grid, profile_likelihood, wilks_interval,
)
from campaign.space import Parameter, ParameterSpace

MEAN = np.array([1.0, -0.5])
STD = np.array([0.5, 0.8])
RHO = 0.7
COVARIANCE = np.array([[STD[0] ** 2, RHO * STD[0] * STD[1]], [RHO * STD[0] * STD[1], STD[1] ** 2]])
PRECISION = np.linalg.inv(COVARIANCE)
SPACE = ParameterSpace([Parameter("a", -3.0, 5.0), Parameter("b", -5.0, 4.0)])
# Width of the 95% interval of each marginal, the scale of the 5% tolerances.
WIDTH_95 = 2 * 1.959963984540054 * STD


def gaussian_chi2(x: np.ndarray) -> np.ndarray:
    delta = np.atleast_2d(x) - MEAN
    return np.einsum("ni,ij,nj->n", delta, PRECISION, delta)


def _start(n_walkers: int = 16, seed: int = 2) -> np.ndarray:
    design = SPACE.design(256, seed=1)
    return initial_walkers(SPACE, design, gaussian_chi2(design), n_walkers, seed)


@pytest.fixture(scope="module")
def converged_run() -> ChainRun:
    options = SamplerOptions(n_walkers=16, max_steps=20000, seed=3, check_every=500)
    return run_sampler(log_probability(gaussian_chi2, SPACE), _start(), options)


def test_chain_converges(converged_run):
    assert converged_run.converged
    assert converged_run.n_steps > 50 * converged_run.tau.max()
    assert 0.1 < converged_run.acceptance_fraction < 0.9


def test_posterior_matches_gaussian(converged_run):
    burn_in, thin = burn_in_and_thin(converged_run.tau, converged_run.n_steps)
    samples = converged_run.chain[burn_in::thin].reshape(-1, 2)
    summaries = summarize(samples, SPACE.names)
    for i, row in enumerate(summaries):
        assert abs(row["mean"] - MEAN[i]) < 0.05 * WIDTH_95[i]
        assert abs(row["std"] - STD[i]) < 0.05 * WIDTH_95[i]
        assert abs(row["q02_5"] - (MEAN[i] - 1.96 * STD[i])) < 0.05 * WIDTH_95[i]
        assert abs(row["q84"] - (MEAN[i] + STD[i])) < 0.05 * WIDTH_95[i]


def test_best_fit_finds_minimum():
    design = SPACE.design(64, seed=4)
    starts = design[np.argsort(gaussian_chi2(design))[:3]]
    best_x, best_chi2 = find_best_fit(gaussian_chi2, SPACE, starts)
    np.testing.assert_allclose(best_x, MEAN, atol=1e-3)
    assert best_chi2 < 1e-5


@pytest.mark.parametrize("index", [0, 1])
def test_profile_intervals_match_wilks(index, converged_run):
    samples = converged_run.chain[converged_run.n_steps // 2:].reshape(-1, 2)
    grid = profile_grid(SPACE, index, samples)
    profile = profile_likelihood(gaussian_chi2, SPACE, index, MEAN.copy(), 0.0, grid)
    # For a Gaussian, the profile of one parameter is a parabola of width its marginal std.
    low_68, high_68 = profile.interval_68
    low_95, high_95 = profile.interval_95
    tolerance = 0.05 * 2 * STD[index]
    assert abs(low_68 - (MEAN[index] - STD[index])) < tolerance
    assert abs(high_68 - (MEAN[index] + STD[index])) < tolerance
    tolerance = 0.05 * WIDTH_95[index]
    assert abs(low_95 - (MEAN[index] - 1.96 * STD[index])) < tolerance
    assert abs(high_95 - (MEAN[index] + 1.96 * STD[index])) < tolerance


def test_wilks_interval_open_side():
    grid = np.linspace(0.0, 1.0, 11)
    low, high = wilks_interval(grid, 10.0 * grid ** 2, 1.0)
    assert low is None
    assert high == pytest.approx(np.sqrt(0.1), abs=0.01)


def test_same_seed_same_chain():
    options = SamplerOptions(n_walkers=8, max_steps=300, seed=11, check_every=100)
    first = run_sampler(log_probability(gaussian_chi2, SPACE), _start(8), options)
    second = run_sampler(log_probability(gaussian_chi2, SPACE), _start(8), options)
    np.testing.assert_array_equal(first.chain, second.chain)
    other = run_sampler(log_probability(gaussian_chi2, SPACE), _start(8), SamplerOptions(8, 300, seed=12, check_every=100))
    assert not np.array_equal(first.chain, other.chain)


def test_interrupted_chain_resumes_exactly():
    options = SamplerOptions(n_walkers=8, max_steps=400, seed=5, check_every=100)
    whole = run_sampler(log_probability(gaussian_chi2, SPACE), _start(8), options)

    checkpoints: list[bytes] = []
    calls = {"n": 0}

    def interrupted_chi2(x):
        calls["n"] += 1
        if calls["n"] == 2 * 250:  # two half-ensemble calls per step: stop in step 250
            raise KeyboardInterrupt
        return gaussian_chi2(x)

    with pytest.raises(KeyboardInterrupt):
        run_sampler(log_probability(interrupted_chi2, SPACE), _start(8), options,
                    checkpoint=lambda run: checkpoints.append(run.to_bytes()))
    stored = ChainRun.from_bytes(checkpoints[-1])
    assert stored.n_steps == 200

    resumed = run_sampler(log_probability(gaussian_chi2, SPACE), None, options, previous=stored)
    np.testing.assert_array_equal(resumed.chain, whole.chain)
    np.testing.assert_array_equal(resumed.log_prob, whole.log_prob)
    assert resumed.acceptance_fraction == pytest.approx(whole.acceptance_fraction)


def test_log_probability_outside_box():
    log_prob = log_probability(gaussian_chi2, SPACE)
    values = log_prob(np.array([[1.0, -0.5], [6.0, 0.0]]))
    assert values[0] == pytest.approx(0.0)
    assert values[1] == -np.inf


def test_odd_walkers_rejected():
    with pytest.raises(ConfigError, match="even number of at least 4"):
        SamplerOptions(n_walkers=5).check(2)


def test_min_walkers_one_parameter():
    # With one parameter, 2 walkers satisfy 2 per parameter, but the DE move
    # needs two walkers in the other half and the snooker move 4 groups.
    assert min_walkers(1) == 4
    assert min_walkers(3) == 6
    for walkers in (0, 2, -4):
        with pytest.raises(ConfigError, match=f"at least 4 .*got {walkers}"):
            SamplerOptions(n_walkers=walkers).check(1)
    SamplerOptions(n_walkers=4).check(1)


def test_seed_out_of_range_rejected():
    for seed in (-1, 2**32):
        with pytest.raises(ConfigError, match=f"seed: must be an integer from 0 to 4294967295.*got {seed}"):
            SamplerOptions(n_walkers=8, seed=seed).check(2)
    SamplerOptions(n_walkers=8, seed=2**32 - 1).check(2)


def test_no_finite_chi2_rejected():
    with pytest.raises(ConfigError, match="no evaluated point has a finite chi2"):
        initial_walkers(SPACE, np.zeros((3, 2)), np.full(3, np.inf), 8, 0)


def test_profile_caution_threshold():
    assert profile_caution({}, 3) is None
    assert profile_caution({"regressor_mae_low": float("nan")}, 3) is None
    assert profile_caution({"regressor_mae_low": PROFILE_CHI2_ERROR_LIMIT}, 3) is None
    message = profile_caution({"regressor_mae_low": 0.8}, 3)
    assert message is not None
    assert "chi2 error near the minimum is 0.8 (model version 3)" in message


VALLEY_SPACE = ParameterSpace([Parameter("a", -1.0, 3.0), Parameter("b", -2.0, 2.0), Parameter("c", -2.0, 2.0)])


def valley_chi2(x: np.ndarray) -> np.ndarray:
    """Return the chi2 of a narrow valley along b - c = a - 1 on a plateau of chi2 = 10.

    The plateau imitates a tree surrogate's flat regions. The profile of
    ``a`` is ((a - 1) / 0.5)**2 along the valley, and the valley moves by
    more than its width between neighbouring grid values of ``a``.
    """
    a, b, c = np.atleast_2d(x).T
    return np.minimum(((a - 1) / 0.5) ** 2 + (b + c) ** 2 + ((b - c - (a - 1)) / 0.05) ** 2, 10.0)


def _valley_samples(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.normal(1.0, 0.5, 5000)
    along = rng.normal(0.0, 0.7, 5000)
    return np.column_stack([a, along + (a - 1) / 2, along - (a - 1) / 2])


def test_minimization_never_ends_above_start():
    # Powell's line search can end on the plateau above a start at the minimum.
    best = np.array([1.0, 0.0, 0.0])
    _, best_chi2 = find_best_fit(valley_chi2, VALLEY_SPACE, best[None, :])
    assert best_chi2 == 0.0
    profile = profile_likelihood(valley_chi2, VALLEY_SPACE, 0, best, 0.0, np.array([0.9, 1.0, 1.1]))
    assert profile.chi2[1] == 0.0


def test_profile_starts_from_samples():
    grid = np.linspace(0.5, 1.5, 11)
    best = np.array([1.0, 0.0, 0.0])
    profile = profile_likelihood(valley_chi2, VALLEY_SPACE, 0, best, 0.0, grid, _valley_samples())
    truth = ((grid - 1) / 0.5) ** 2
    # Without samples the walk from the neighbour's optimum stays on the plateau (chi2 = 10).
    assert np.all(profile.chi2 < 3.0)
    assert np.all(profile.chi2 >= truth - 1e-9)


def test_profile_grid_gets_best_fit_value():
    # The grid misses a = 1, where the plateau-bound walk would otherwise never reach chi2 = 0.
    best = np.array([1.0, 0.0, 0.0])
    profile = profile_likelihood(valley_chi2, VALLEY_SPACE, 0, best, 0.0, np.linspace(0.55, 1.45, 10))
    assert len(profile.grid) == 11
    assert profile.grid[5] == 1.0
    assert profile.chi2[5] == 0.0
    assert profile.interval_68[0] is not None
    assert profile.interval_68[1] is not None
