"""Candidate generation and batch selection for active learning.

A step scores candidate points with the surrogate and picks a batch that is
promising, uncertain and spread out. Three strategies are offered:

``committee``
    Mean and spread of a committee of boosted regressors, joined with the
    classifier's penalty into a lower confidence bound (LCB). Greedy max-min
    distance among the best-scored candidates fills the batch.
``gp``
    A Gaussian process on the lowest evaluated points (the neighbourhood of
    the low region), expected improvement (EI) weighted by the sigmoid of the
    classifier's log-odds above the model's low threshold (0.5 on the edge of
    the classified low region), and a constant liar: each chosen point is
    added to the GP data with chi2 = chi2_min before the next one is chosen.
``random``
    Space-filling points only, the baseline of the benchmarks.

Whatever the strategy, each step first splits the evaluated points into
basins (:mod:`campaign.basins`). Each of the best MAX_BASINS basins gets its
own local candidates, the minimum of a quadratic through its lowest points,
and one point of lowest surrogate chi2, so that every mode found is refined.
Part of the batch fills the low region of each basin up to its edge
(:func:`select_fill`), where the classifier needs points. Every batch keeps a
share of space-filling exploration points, chosen far from all evaluated
points, so that a missed mode can still be found. Everything happens in
unit-cube coordinates (``space.to_unit``), and numpy's BLAS runs on
``threads`` threads, which fixes the GP's last digits and keeps
its linear algebra from oversubscribing a busy machine.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize
from scipy.spatial.distance import cdist
from scipy.special import expit
from scipy.stats import norm, qmc
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
from sklearn.linear_model import LinearRegression
from sklearn.preprocessing import PolynomialFeatures
from threadpoolctl import threadpool_limits

from campaign.basins import Basin, enclosing_ellipsoid, find_basins
from campaign.config import ACQUISITIONS
from campaign.errors import ConfigError
from campaign.space import ParameterSpace
from campaign.surrogate.model import SurrogateModel, combine_chi2

__all__ = ["Batch", "propose_batch", "draw_candidates", "refine_minimum", "select_exploration", "select_fill",
           "exploration_count"]

logger = logging.getLogger(__name__)

#: Weight of the committee's standard deviation in the lower confidence bound.
LCB_KAPPA = 2.0
#: The committee's batch is spread over the POOL_FACTOR * batch best candidates.
POOL_FACTOR = 8
#: The GP is fitted on at most this many of the lowest evaluated points.
#: Its fit costs O(n^3) per likelihood evaluation of the kernel search.
GP_MAX_POINTS = 128
#: Bounds of the GP's Matern length scales, in unit-cube coordinates.
GP_LENGTH_SCALE_BOUNDS = (1e-2, 10.0)
#: The refining quadratic is fitted on this many points per coefficient.
QUADRATIC_POINT_FACTOR = 2
#: Constant-liar rounds rescore the GP_SHORTLIST_FACTOR * batch candidates of highest EI.
GP_SHORTLIST_FACTOR = 16
#: Local candidates are Gaussian draws around low points, with these
#: fractions of the low region's spread per axis as standard deviations.
LOCAL_SCALES = (1.0, 0.3, 0.1, 0.03)
#: Spread per axis, in unit-cube coordinates, when the low region has one point.
DEFAULT_LOCAL_SPREAD = 0.05
#: Best points of a basin that are always among the centres of its local candidates.
BEST_CENTRES = 8
#: Basins (see campaign.basins) that get their own refinement point and local candidates, best first.
MAX_BASINS = 3
#: Share of the acquisition points, after refinement and basin quota, that fill the low region.
FILL_FRACTION = 0.75
#: Uniform draws inside the low regions' ellipsoids from which the fill points are picked.
FILL_CANDIDATES = 2048
#: Fill candidates need classifier log-odds of "low" above the model's low threshold plus this,
#: so points just outside the classified low region are still probed.
FILL_MIN_MARGIN = -2.0
#: Refined minima of two basins closer than this in every unit-cube coordinate count as one.
DUPLICATE_TOLERANCE = 1e-3


@dataclass
class Batch:
    """A proposed batch.

    Attributes:
        x: Physical values, shape (n, dim).
        origins: ``"acquisition"`` or ``"exploration"`` per row.
        statistics: Numbers that describe the selection, stored with the step.
    """

    x: np.ndarray
    origins: list[str]
    statistics: dict = field(default_factory=dict)


def exploration_count(batch_size: int, exploration_fraction: float) -> int:
    """Return how many points of a batch are space-filling: the rounded share, at least 1 if the share is positive."""
    count = int(round(batch_size * exploration_fraction))
    if exploration_fraction > 0:
        count = max(count, 1)
    return min(count, batch_size)


def propose_batch(
    space: ParameterSpace,
    model: SurrogateModel | None,
    evaluated_x: np.ndarray,
    evaluated_chi2: np.ndarray,
    *,
    strategy: str,
    batch_size: int,
    exploration_fraction: float,
    n_candidates: int,
    rng: np.random.Generator,
    threads: int = 1,
    refine: bool = True,
) -> Batch:
    """Propose the next batch of points to evaluate.

    Args:
        space: The campaign's parameter space.
        model: The current surrogate; only ``strategy="random"`` works without one.
        evaluated_x: Physical values of evaluated points, shape (m, dim).
        evaluated_chi2: Their chi2, shape (m,); NaN and inf allowed.
        strategy: ``"committee"``, ``"gp"`` or ``"random"``.
        batch_size: Points to propose.
        exploration_fraction: Share of space-filling points in the batch.
        n_candidates: Candidates scored by the strategy.
        rng: Source of all randomness of the proposal.
        threads: BLAS and OpenMP threads of the GP and the quadratic fit.
        refine: Make the first acquisition points the minima of quadratics
            through the lowest points of each basin (:func:`refine_minimum`).

    Returns:
        A :class:`Batch` of ``batch_size`` points inside the box.
    """
    if strategy not in ACQUISITIONS:
        raise ConfigError(f"unknown acquisition strategy {strategy!r}; choose one of {', '.join(ACQUISITIONS)}")
    if strategy != "random" and model is None:
        raise ValueError(f"the {strategy} strategy needs a trained surrogate")

    evaluated_u = space.to_unit(np.atleast_2d(evaluated_x)).reshape(-1, space.dim)
    evaluated_chi2 = np.asarray(evaluated_chi2, dtype=float)
    n_explore = batch_size if strategy == "random" else exploration_count(batch_size, exploration_fraction)
    n_acquire = batch_size - n_explore

    statistics: dict = {"strategy": strategy, "n_acquisition": n_acquire, "n_exploration": n_explore}
    chosen = np.empty((0, space.dim))
    with threadpool_limits(limits=threads):
        if n_acquire:
            chosen, details = _select_acquisition(model, space, strategy, evaluated_u, evaluated_chi2, n_acquire,
                                                  n_candidates, rng, refine)
            statistics.update(details)
        exploration = select_exploration(np.vstack([evaluated_u, chosen]), n_explore, rng)

    unit = np.clip(np.vstack([chosen, exploration]), 0.0, 1.0)
    statistics["min_distance"] = _min_pairwise_distance(unit)
    x = np.clip(space.from_unit(unit), space.low, space.high)
    return Batch(x=x, origins=["acquisition"] * len(chosen) + ["exploration"] * len(exploration), statistics=statistics)


def _select_acquisition(
    model: SurrogateModel, space: ParameterSpace, strategy: str, evaluated_u: np.ndarray, evaluated_chi2: np.ndarray,
    n: int, n_candidates: int, rng: np.random.Generator, refine: bool,
) -> tuple[np.ndarray, dict]:
    """Pick ``n`` acquisition points: refined basin minima, basin quota, low-region fill, then the strategy's choice.

    The refined minimum of each basin comes first, one point per basin and
    the best basin first. Then each further basin gets its local candidate
    of lowest surrogate chi2, so every mode keeps being refined even where
    the strategy's score prefers the best one. FILL_FRACTION of the rest
    fills the low region up to its edge, and the strategy picks the remainder.
    """
    basins = find_basins(evaluated_u, evaluated_chi2)[:MAX_BASINS]
    chosen = _refine_basins(evaluated_u, evaluated_chi2, basins)[:n] if refine else np.empty((0, space.dim))
    n_refined = len(chosen)

    candidates, candidate_basins = draw_candidates(evaluated_u, evaluated_chi2, model.delta_chi2, n_candidates, rng,
                                                   basins=basins)
    quota = _select_basin_quota(model, space, candidates, candidate_basins, len(basins), n - len(chosen))
    chosen = np.vstack([chosen, quota])

    n_fill = int(FILL_FRACTION * (n - len(chosen)))
    fill = select_fill(model, space, evaluated_u, evaluated_chi2, basins, n_fill, rng, existing_u=chosen)
    chosen = np.vstack([chosen, fill])

    n_select = n - len(chosen)
    if strategy == "committee":
        picked, details = _select_committee(model, space, candidates, n_select)
    else:
        picked, details = _select_gp(model, space, candidates, evaluated_u, evaluated_chi2, n_select, rng)
    chosen = np.vstack([chosen, picked])
    return chosen, {"n_candidates": len(candidates), **details, "refinement": n_refined > 0, "n_basins": len(basins),
                    "n_refined": n_refined, "n_basin_quota": len(quota), "n_fill": len(fill)}


def _refine_basins(evaluated_u: np.ndarray, evaluated_chi2: np.ndarray, basins: list[Basin]) -> np.ndarray:
    """Refine the minimum of each basin with enough points, dropping refined points that coincide.

    Returns:
        Unit-cube coordinates, shape (k, dim), the best basin first.
    """
    refined: list[np.ndarray] = []
    for basin in basins:
        point = refine_minimum(evaluated_u[basin.members], evaluated_chi2[basin.members])
        if point is None or not _is_new(point, refined):
            continue
        # Once the quadratic's minimum has been evaluated, proposing it again
        # in every later step would only repeat that evaluation.
        if not _is_new(point, evaluated_u):
            continue
        refined.append(point)
    return np.array(refined).reshape(-1, evaluated_u.shape[1])


def _is_new(point: np.ndarray, others) -> bool:
    """Tell whether ``point`` differs from every row of ``others`` by more than DUPLICATE_TOLERANCE."""
    others = np.asarray(others).reshape(-1, len(point))
    return len(others) == 0 or bool(np.abs(others - point).max(axis=1).min() > DUPLICATE_TOLERANCE)


def _select_basin_quota(
    model: SurrogateModel, space: ParameterSpace, candidates: np.ndarray, candidate_basins: np.ndarray,
    n_basins: int, n: int,
) -> np.ndarray:
    """Pick, for each basin but the best, its local candidate of lowest surrogate chi2; at most ``n`` points."""
    rows = []
    for basin in range(1, n_basins):
        local = np.flatnonzero(candidate_basins == basin)
        if len(local) and len(rows) < n:
            chi2 = model.surrogate_chi2(space.from_unit(candidates[local]))
            rows.append(local[int(np.argmin(chi2))])
    return candidates[rows].reshape(-1, space.dim)


def select_fill(
    model: SurrogateModel, space: ParameterSpace, evaluated_u: np.ndarray, evaluated_chi2: np.ndarray,
    basins: list[Basin], n: int, rng: np.random.Generator, existing_u: np.ndarray | None = None,
) -> np.ndarray:
    """Choose ``n`` points that fill the low region of each basin up to its edge.

    Scores aimed at the minimum leave the edge of the low region thinly
    sampled, so the classifier misses much of the region's volume there.
    Candidates are drawn uniformly inside the enlarged ellipsoid around the
    low points of each basin (:func:`enclosing_ellipsoid`), in proportion to
    the ellipsoids' volumes. Those that the classifier does not clearly
    reject (log-odds above the low threshold plus FILL_MIN_MARGIN) are
    picked by greedy max-min distance to the evaluated points, so the
    emptiest parts go first.

    Args:
        existing_u: Points already in the batch, shape (k, dim), kept away from as the evaluated ones are.

    Returns:
        Unit-cube coordinates, shape (at most n, dim); empty while no basin
        has dim + 2 low points.
    """
    dim = evaluated_u.shape[1]
    threshold = model.chi2_min + model.delta_chi2
    ellipsoids = []
    for basin in basins:
        with np.errstate(invalid="ignore"):
            low = basin.members[evaluated_chi2[basin.members] < threshold]
        ellipsoid = enclosing_ellipsoid(evaluated_u[low])
        if ellipsoid is not None:
            ellipsoids.append(ellipsoid)
    if n <= 0 or not ellipsoids:
        return np.empty((0, dim))

    volumes = np.array([ellipsoid.volume_factor for ellipsoid in ellipsoids])
    counts = np.maximum(1, np.round(FILL_CANDIDATES * volumes / volumes.sum())).astype(int)
    draws = np.vstack([ellipsoid.draw(count, rng) for ellipsoid, count in zip(ellipsoids, counts)])
    draws = draws[np.all((draws >= 0.0) & (draws <= 1.0), axis=1)]
    if not len(draws):
        return np.empty((0, dim))
    draws = draws[model.low_margin(space.from_unit(draws)) > FILL_MIN_MARGIN]
    existing = evaluated_u if existing_u is None else np.vstack([evaluated_u, existing_u])
    return draws[_farthest_points(draws, existing, n)]


def draw_candidates(
    evaluated_u: np.ndarray, evaluated_chi2: np.ndarray, delta_chi2: float, n: int, rng: np.random.Generator,
    basins: list[Basin] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw candidates in the unit cube: half scrambled Sobol, half Gaussian draws around the basins' low points.

    The local draws are split evenly between the basins. Their centres are
    a basin's best points and its points within delta_chi2 of the basin's
    best chi2. Their spread per axis is those points' standard deviation
    times one of :data:`LOCAL_SCALES`, so candidates cover each basin's low
    region and refine its minimum.

    Args:
        basins: Basins of the evaluated points; :func:`find_basins` when None.

    Returns:
        Unit-cube coordinates, shape (n, dim), and the basin of each
        candidate (its index in ``basins``, -1 for Sobol draws), shape (n,).
    """
    dim = evaluated_u.shape[1]
    n_global = n // 2
    global_draws = _sobol(dim, n_global, rng)
    basins = find_basins(evaluated_u, evaluated_chi2) if basins is None else basins
    if not basins:
        return np.vstack([global_draws, rng.random((n - n_global, dim))]), np.full(n, -1)

    local, tags = [global_draws], [np.full(n_global, -1)]
    shares = np.diff(np.linspace(0, n - n_global, len(basins) + 1).round().astype(int))
    for index, (basin, n_local) in enumerate(zip(basins, shares)):
        local.append(_draw_around_basin(evaluated_u, evaluated_chi2, basin, delta_chi2, n_local, rng))
        tags.append(np.full(n_local, index))
    return np.vstack(local), np.concatenate(tags)


def _draw_around_basin(
    evaluated_u: np.ndarray, evaluated_chi2: np.ndarray, basin: Basin, delta_chi2: float, n: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Draw ``n`` Gaussian points around a basin's best and low points, clipped to the unit cube."""
    dim = evaluated_u.shape[1]
    near = basin.members[evaluated_chi2[basin.members] < basin.best_chi2 + delta_chi2]
    centres = np.unique(np.concatenate([basin.members[:BEST_CENTRES], near]))
    spread = evaluated_u[near].std(axis=0) if len(near) > 1 else np.full(dim, DEFAULT_LOCAL_SPREAD)
    spread = np.clip(spread, 1e-3, 0.5)

    picks = centres[rng.integers(0, len(centres), size=n)]
    scales = rng.choice(LOCAL_SCALES, size=(n, 1))
    return np.clip(evaluated_u[picks] + rng.standard_normal((n, dim)) * spread * scales, 0.0, 1.0)


def refine_minimum(evaluated_u: np.ndarray, evaluated_chi2: np.ndarray) -> np.ndarray | None:
    """Return the minimum of a quadratic fitted to the lowest points, or None with too few points.

    Boosted trees are piecewise constant, so they cannot place the minimum
    more precisely than their leaves. A least-squares quadratic through the
    QUADRATIC_POINT_FACTOR * (number of coefficients) lowest finite points,
    minimized inside the box that those points span, gives one point of
    each batch that refines a minimum, as a trust-region step would. Called
    with the points of one basin, it refines that basin's minimum.

    Returns:
        Unit-cube coordinates, shape (dim,), or None.
    """
    dim = evaluated_u.shape[1]
    n_coefficients = (dim + 1) * (dim + 2) // 2
    finite = np.flatnonzero(np.isfinite(evaluated_chi2))
    if len(finite) < QUADRATIC_POINT_FACTOR * n_coefficients:
        return None
    lowest = finite[np.argsort(evaluated_chi2[finite], kind="stable")[: QUADRATIC_POINT_FACTOR * n_coefficients]]
    centre = evaluated_u[lowest[0]]
    offsets = evaluated_u[lowest] - centre
    scale = np.maximum(np.abs(offsets).max(axis=0), 1e-9)
    design = PolynomialFeatures(degree=2).fit(offsets / scale)
    fitted = LinearRegression().fit(design.transform(offsets / scale), evaluated_chi2[lowest])

    def quadratic(z: np.ndarray) -> float:
        return float(fitted.predict(design.transform(z[None, :]))[0])

    low = offsets.min(axis=0) / scale
    high = offsets.max(axis=0) / scale
    result = minimize(quadratic, np.zeros(dim), method="L-BFGS-B", bounds=list(zip(low, high)))
    return np.clip(centre + result.x * scale, 0.0, 1.0)


def select_exploration(existing_u: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Choose ``n`` space-filling points far from ``existing_u`` by greedy max-min distance over Sobol draws.

    Returns:
        Unit-cube coordinates, shape (n, dim).
    """
    dim = existing_u.shape[1]
    if n == 0:
        return np.empty((0, dim))
    pool = _sobol(dim, max(64 * n, 256), rng)
    return pool[_farthest_points(pool, existing_u, n)]


def _farthest_points(pool: np.ndarray, existing_u: np.ndarray, n: int) -> np.ndarray:
    """Return indices of at most ``n`` rows of ``pool``, each in turn the farthest from ``existing_u`` and the earlier picks."""
    nearest = cdist(pool, existing_u).min(axis=1) if len(existing_u) else np.full(len(pool), np.inf)
    chosen: list[int] = []
    for _ in range(min(n, len(pool))):
        index = int(np.argmax(nearest))
        chosen.append(index)
        nearest = np.minimum(nearest, cdist(pool, pool[index : index + 1])[:, 0])
    return np.asarray(chosen, dtype=int)


def _select_committee(model: SurrogateModel, space: ParameterSpace, candidates: np.ndarray, n: int) -> tuple[np.ndarray, dict]:
    """Pick ``n`` candidates by lower confidence bound and max-min diversity."""
    x = space.from_unit(candidates)
    mean, spread = model.committee_chi2(x)
    margin = model.classifier_margin(x)
    score = combine_chi2(mean, margin, model.delta_chi2, threshold=model.low_margin_threshold) - LCB_KAPPA * spread

    chosen = _pick_spread_out(candidates, score, n)
    if not len(chosen):
        return candidates[chosen], {}
    details = {
        "lcb_min": float(score[chosen].min()),
        "lcb_max": float(score[chosen].max()),
        "committee_std_mean": float(spread[chosen].mean()),
        "predicted_chi2_min": float(mean[chosen].min()),
    }
    return candidates[chosen], details


def _pick_spread_out(candidates: np.ndarray, score: np.ndarray, n: int) -> np.ndarray:
    """Return indices of ``n`` candidates by greedy max-min distance among the POOL_FACTOR * n of lowest score.

    The best-scored candidate comes first. Ties in distance go to the better
    score, because the pool is sorted by score.
    """
    if n <= 0:
        return np.empty(0, dtype=int)
    pool = np.argsort(score, kind="stable")[: POOL_FACTOR * n]
    chosen = [pool[0]]
    nearest = cdist(candidates[pool], candidates[pool[:1]])[:, 0]
    while len(chosen) < min(n, len(pool)):
        position = int(np.argmax(nearest))
        chosen.append(pool[position])
        nearest = np.minimum(nearest, cdist(candidates[pool], candidates[pool[position] : pool[position] + 1])[:, 0])
    return np.asarray(chosen, dtype=int)


def _select_gp(
    model: SurrogateModel, space: ParameterSpace, candidates: np.ndarray, evaluated_u: np.ndarray,
    evaluated_chi2: np.ndarray, n: int, rng: np.random.Generator,
) -> tuple[np.ndarray, dict]:
    """Pick ``n`` candidates by expected improvement with a constant liar."""
    if n <= 0:
        return np.empty((0, space.dim)), {}
    finite = np.flatnonzero(np.isfinite(evaluated_chi2))
    nearest = finite[np.argsort(evaluated_chi2[finite], kind="stable")[:GP_MAX_POINTS]]
    train_u, train_chi2 = evaluated_u[nearest], evaluated_chi2[nearest]
    best = float(train_chi2.min())

    dim = space.dim
    kernel = ConstantKernel(1.0) * Matern(length_scale=np.full(dim, 0.2), length_scale_bounds=GP_LENGTH_SCALE_BOUNDS,
                                          nu=2.5) + WhiteKernel(1e-4, noise_level_bounds=(1e-8, 1e-1))
    # One start of the kernel search, from the initial kernel above.
    gp = GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=0,
                                  random_state=int(rng.integers(2**31)))
    with warnings.catch_warnings():
        # A length scale at its bound is common on a few points and is not an error.
        warnings.simplefilter("ignore", ConvergenceWarning)
        gp.fit(train_u, train_chi2)
    fitted_kernel = gp.kernel_
    low_weight = expit(model.low_margin(space.from_unit(candidates)))

    # Predicting all candidates in every constant-liar round costs
    # O(n_candidates * n_points^2); the rounds only rescore the best ones.
    mean, std = gp.predict(candidates, return_std=True)
    score = _expected_improvement(mean, std, best) * low_weight
    shortlist = np.argsort(-score, kind="stable")[: max(GP_SHORTLIST_FACTOR * n, n)]
    candidates, low_weight = candidates[shortlist], low_weight[shortlist]

    chosen: list[int] = []
    first_ei = float(score[shortlist[0]])
    available = np.ones(len(candidates), dtype=bool)
    for _ in range(n):
        mean, std = gp.predict(candidates, return_std=True)
        score = np.where(available, _expected_improvement(mean, std, best) * low_weight, -np.inf)
        index = int(np.argmax(score))
        chosen.append(index)
        available[index] = False
        # Constant liar: pretend the chosen point returned the best chi2 so far,
        # which lowers the GP's uncertainty around it without moving its minimum.
        train_u = np.vstack([train_u, candidates[index]])
        train_chi2 = np.append(train_chi2, best)
        gp = GaussianProcessRegressor(fitted_kernel, normalize_y=True, optimizer=None).fit(train_u, train_chi2)

    details = {"ei_max": first_ei, "gp_points": len(nearest), "gp_kernel": str(fitted_kernel)}
    return candidates[chosen], details


def _expected_improvement(mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
    """Expected improvement below ``best`` for a Gaussian prediction (minimization)."""
    std = np.maximum(std, 1e-12)
    improvement = best - mean
    z = improvement / std
    return improvement * norm.cdf(z) + std * norm.pdf(z)


def _sobol(dim: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw the first ``n`` points of a scrambled Sobol sequence (drawn to the next power of two, where it is balanced)."""
    return qmc.Sobol(dim, scramble=True, seed=rng).random_base2(max(0, math.ceil(math.log2(max(n, 1)))))[:n]


def _min_pairwise_distance(unit: np.ndarray) -> float | None:
    if len(unit) < 2:
        return None
    distances = cdist(unit, unit)
    np.fill_diagonal(distances, np.inf)
    return float(distances.min())
