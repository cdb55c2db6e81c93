"""Best-fit points and 1-D profile likelihoods of a chi2 function.

The surrogate chi2 of boosted trees is piecewise constant, so gradients are
zero almost everywhere; the minimizations use Powell's derivative-free
method in unit-cube coordinates, where every parameter has bounds [0, 1].
Intervals follow Wilks' theorem for one parameter: delta-chi2 = 1 for 68%
and 3.84 for 95% confidence.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.optimize import minimize

from campaign.space import ParameterSpace

__all__ = [
    "ProfileResult", "find_best_fit", "profile_likelihood", "profile_grid", "wilks_interval", "profile_caution",
    "DELTA_CHI2_68", "DELTA_CHI2_95", "PROFILE_CHI2_ERROR_LIMIT",
]

logger = logging.getLogger(__name__)

DELTA_CHI2_68 = 1.0
DELTA_CHI2_95 = 3.841458820694124  # scipy.stats.chi2.ppf(0.95, 1)
DEFAULT_GRID_POINTS = 41
#: Posterior samples nearest to a grid value among which a profile start is chosen.
SAMPLES_PER_START = 200
#: Surrogate chi2 error above which profile intervals get a caution. For a
#: parabolic profile, an error e in delta-chi2 at the crossing moves an end of
#: the 68% interval by about e/2 of its distance to the best fit, so 0.2 is
#: about a 10% shift.
PROFILE_CHI2_ERROR_LIMIT = 0.2
#: Powell's tolerances in unit-cube coordinates and in chi2.
X_TOLERANCE = 1e-6
CHI2_TOLERANCE = 1e-8

Chi2Function = Callable[[np.ndarray], np.ndarray]


def find_best_fit(chi2: Chi2Function, space: ParameterSpace, starts: np.ndarray) -> tuple[np.ndarray, float]:
    """Minimize ``chi2`` from each start and return the best point and its chi2.

    Args:
        chi2: Vectorized chi2 of physical values, shape (n, dim) -> (n,).
        space: The parameter space; the search stays inside its box.
        starts: Starting points in physical values, shape (n_starts, dim).

    Returns:
        The best point, shape (dim,), and its chi2.
    """
    starts = np.atleast_2d(starts)
    best_x, best_chi2 = starts[0], np.inf
    for start in space.to_unit(starts):
        x, value = _minimize_unit(lambda u: chi2(space.from_unit(u[None, :]))[0], start)
        if value < best_chi2:
            best_x, best_chi2 = space.from_unit(x[None, :])[0], value
    logger.info("best fit chi2 %.6g from %d starts", best_chi2, len(starts))
    return best_x, float(best_chi2)


def _minimize_unit(function: Callable[[np.ndarray], float], start: np.ndarray) -> tuple[np.ndarray, float]:
    """Minimize with Powell's method in the unit cube; returns the start where Powell ends higher.

    Powell's bounded line search (Brent's method, seen with scipy 1.17)
    assumes one minimum per line, so on a piecewise-constant chi2 it can end
    on a plateau above the start.
    """
    start = np.clip(start, 0.0, 1.0)
    bounds = [(0.0, 1.0)] * len(start)
    result = minimize(
        function, start, method="Powell", bounds=bounds,
        options={"xtol": X_TOLERANCE, "ftol": CHI2_TOLERANCE, "maxfev": 2000 * len(start)},
    )
    start_value = float(function(start))
    end_value = float(result.fun)
    # NaN ranks above every number, so a finite value wins over NaN.
    if np.nan_to_num(start_value, nan=np.inf) < np.nan_to_num(end_value, nan=np.inf):
        return start, start_value
    return result.x, end_value


@dataclass(frozen=True)
class ProfileResult:
    """The profile chi2 of one parameter and its Wilks intervals.

    Attributes:
        parameter: Parameter name.
        grid: Parameter values, shape (n_grid,).
        chi2: Minimum of chi2 over the other parameters at each grid value, shape (n_grid,).
        interval_68, interval_95: (low, high); a side is None where the
            interval reaches the end of the grid.
    """

    parameter: str
    grid: np.ndarray
    chi2: np.ndarray
    interval_68: tuple[float | None, float | None]
    interval_95: tuple[float | None, float | None]


def profile_likelihood(
    chi2: Chi2Function,
    space: ParameterSpace,
    index: int,
    best_x: np.ndarray,
    best_chi2: float,
    grid: np.ndarray,
    samples: np.ndarray | None = None,
) -> ProfileResult:
    """Profile chi2 over all parameters but one, on a grid of that parameter.

    Each grid value is minimized from the optimum of its neighbour, walking
    outwards from the grid value nearest the best fit. With ``samples``, it
    is also minimized from the sample of lowest chi2 among those nearest to
    the grid value, and the lower minimum is kept. The second start matters
    for a tree surrogate: its chi2 is piecewise constant, and Powell's
    method can stay on a plateau near the neighbour's optimum.

    Args:
        chi2: Vectorized chi2 of physical values, shape (n, dim) -> (n,).
        space: The parameter space.
        index: Position of the profiled parameter.
        best_x: Best-fit point, shape (dim,).
        best_chi2: chi2 at ``best_x``; delta-chi2 is taken from the lower of
            it and the profile's minimum.
        grid: Increasing values of the profiled parameter, shape (n_grid,).
            The best fit's value is added, so the profile reaches ``best_chi2``
            and both intervals contain the best fit.
        samples: Posterior samples in physical values, shape (n_samples, dim), or None.
    """
    grid = np.union1d(np.asarray(grid, dtype=float), [best_x[index]])
    unit_best = space.to_unit(best_x[None, :])[0]
    others = [i for i in range(space.dim) if i != index]
    unit_grid = space.to_unit(_column(best_x, index, grid))[:, index]
    sample_starts = _sample_starts(chi2, space, index, others, unit_grid, samples)
    values = np.empty(len(grid))
    center = int(np.argmin(np.abs(grid - best_x[index])))
    for order in (range(center, len(grid)), range(center - 1, -1, -1)):
        start = unit_best[others]
        for g in order:
            start, values[g] = _profile_point(chi2, space, index, others, unit_grid[g], start)
            if sample_starts is not None:
                sample_optimum, value = _profile_point(chi2, space, index, others, unit_grid[g], sample_starts[g])
                if value < values[g]:
                    start, values[g] = sample_optimum, value

    minimum = min(float(values.min()), best_chi2)
    delta = values - minimum
    return ProfileResult(
        parameter=space.names[index],
        grid=grid,
        chi2=values,
        interval_68=wilks_interval(grid, delta, DELTA_CHI2_68),
        interval_95=wilks_interval(grid, delta, DELTA_CHI2_95),
    )


def _sample_starts(chi2, space, index, others, unit_grid, samples) -> np.ndarray | None:
    """Return, per grid value, the other coordinates of the lowest-chi2 sample among its nearest ones.

    The nearest samples are the ``SAMPLES_PER_START`` closest in the profiled
    parameter. Returns shape (n_grid, dim - 1), or None without samples.
    """
    if samples is None or len(samples) == 0 or not others:
        return None
    samples = np.asarray(samples, dtype=float)
    unit_samples = space.to_unit(samples)
    sample_chi2 = chi2(samples)
    nearest = min(SAMPLES_PER_START, len(unit_samples))
    starts = np.empty((len(unit_grid), len(others)))
    for g, unit_value in enumerate(unit_grid):
        near = np.argpartition(np.abs(unit_samples[:, index] - unit_value), nearest - 1)[:nearest]
        lowest = near[np.argmin(np.where(np.isfinite(sample_chi2[near]), sample_chi2[near], np.inf))]
        starts[g] = unit_samples[lowest, others]
    return starts


def _column(best_x: np.ndarray, index: int, grid: np.ndarray) -> np.ndarray:
    points = np.tile(best_x, (len(grid), 1))
    points[:, index] = grid
    return points


def _profile_point(chi2, space, index, others, unit_value, start):
    def function(u_others: np.ndarray) -> float:
        u = np.empty(space.dim)
        u[index] = unit_value
        u[others] = u_others
        return float(chi2(space.from_unit(u[None, :]))[0])

    if not others:
        return start, function(start)
    return _minimize_unit(function, start)


def wilks_interval(grid: np.ndarray, delta_chi2: np.ndarray, threshold: float) -> tuple[float | None, float | None]:
    """Return the range where ``delta_chi2 < threshold``, with linear interpolation at the crossings.

    The range runs from the first to the last grid value below the threshold,
    so a profile with two minima gives one range that covers both. A side
    where the profile stays below the threshold up to the end of the grid is None.

    Args:
        grid: Increasing parameter values, shape (n,).
        delta_chi2: Profile chi2 minus its minimum, shape (n,).
        threshold: 1.0 for 68%, 3.84 for 95% confidence in one parameter.
    """
    below = np.flatnonzero(delta_chi2 < threshold)
    if len(below) == 0:
        return None, None
    first, last = below[0], below[-1]
    low = None if first == 0 else _crossing(grid, delta_chi2, first - 1, first, threshold)
    high = None if last == len(grid) - 1 else _crossing(grid, delta_chi2, last, last + 1, threshold)
    return low, high


def _crossing(grid, delta, i, j, threshold) -> float:
    if not np.isfinite(delta[i]) or not np.isfinite(delta[j]):
        return float(grid[i] if np.isfinite(delta[i]) else grid[j])
    fraction = (threshold - delta[i]) / (delta[j] - delta[i])
    return float(grid[i] + fraction * (grid[j] - grid[i]))


def profile_grid(space: ParameterSpace, index: int, samples: np.ndarray | None, n: int = DEFAULT_GRID_POINTS) -> np.ndarray:
    """Choose the grid of a profile: the range of the posterior samples, else the whole box.

    Args:
        samples: Posterior samples, shape (n_samples, dim), or None.
    """
    low, high = space.low[index], space.high[index]
    if samples is not None and len(samples) > 1:
        spread = samples[:, index].max() - samples[:, index].min()
        low = max(low, samples[:, index].min() - 0.1 * spread)
        high = min(high, samples[:, index].max() + 0.1 * spread)
    if space.is_log[index]:
        return np.geomspace(low, high, n)
    return np.linspace(low, high, n)


def profile_caution(metrics: dict, model_version: int | None) -> str | None:
    """Return a caution for profile intervals of a surrogate whose chi2 error is not small, else None.

    Args:
        metrics: A model version's metrics. Their ``regressor_mae_low``, the
            regressor's cross-validated mean absolute chi2 error in the low
            region, is compared with ``PROFILE_CHI2_ERROR_LIMIT``.
        model_version: The version number, named in the message.
    """
    mae_low = metrics.get("regressor_mae_low")
    if mae_low is None or not np.isfinite(mae_low) or mae_low <= PROFILE_CHI2_ERROR_LIMIT:
        return None
    return (
        f"Caution: the regressor's cross-validated chi2 error near the minimum is {mae_low:.3g} "
        f"(model version {model_version}), not small against delta chi2 = 1, so surrogate error can "
        "move the profile interval ends by a large fraction of their width. `campaign validate` compares "
        "the surrogate with the true chi2 at posterior samples, and more evaluations near the minimum "
        "(`campaign run`) reduce the error."
    )
