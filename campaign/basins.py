"""Basins of attraction among evaluated points, and the ellipsoids that enclose their low regions.

A likelihood with several modes has several basins. Active learning that
only draws around the overall best points refines one mode and never the
others. So each step splits the evaluated points into basins by
nearest-better clustering: every point is linked to its nearest point of
lower chi2, and links much longer than the mean link are cut. The roots of
the resulting trees are the minima of the basins.

Everything here works in unit-cube coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.distance import cdist

__all__ = ["Basin", "Ellipsoid", "find_basins", "enclosing_ellipsoid"]

#: Links longer than NBC_CUT times the mean link length separate basins. In the 256 space-filling
#: points of examples/bimodal-6d, the link from the second mode's best point was 1.96 times the mean.
NBC_CUT = 1.75
#: Clustering uses at most this many of the lowest finite points; its
#: distance matrix takes 8 * BASIN_MAX_POINTS**2 bytes.
BASIN_MAX_POINTS = 1024
#: The ellipsoid of a low region is enlarged by this factor beyond its
#: farthest low point, so that draws inside it also reach the region's edge.
ELLIPSOID_MARGIN = 1.05


@dataclass(frozen=True)
class Basin:
    """Evaluated points that descend to one local minimum.

    Attributes:
        members: Row indices into the evaluated points, sorted by chi2, so
            ``members[0]`` is the basin's best point; shape (k,).
        best_chi2: chi2 of the basin's best point.
    """

    members: np.ndarray
    best_chi2: float


@dataclass(frozen=True)
class Ellipsoid:
    """The region ``(u - centre)^T inverse(shape) (u - centre) <= 1`` in unit-cube coordinates.

    Attributes:
        centre: Shape (dim,).
        cholesky: Lower Cholesky factor of ``shape``, shape (dim, dim).
    """

    centre: np.ndarray
    cholesky: np.ndarray

    @property
    def volume_factor(self) -> float:
        """Volume divided by the volume of the unit ball of the same dimension."""
        return float(np.prod(np.diag(self.cholesky)))

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Draw ``n`` points uniformly inside the ellipsoid; returns shape (n, dim)."""
        dim = len(self.centre)
        direction = rng.standard_normal((n, dim))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        radius = rng.random((n, 1)) ** (1.0 / dim)
        return self.centre + (direction * radius) @ self.cholesky.T


def find_basins(evaluated_u: np.ndarray, evaluated_chi2: np.ndarray, *, max_points: int = BASIN_MAX_POINTS) -> list[Basin]:
    """Split the lowest finite points into basins by nearest-better clustering.

    Args:
        evaluated_u: Unit-cube coordinates, shape (m, dim).
        evaluated_chi2: chi2, shape (m,); NaN and inf are left out.
        max_points: Cluster at most this many of the lowest finite points.

    Returns:
        Basins sorted by their best chi2, the basin of the overall best
        point first; empty when no chi2 is finite.
    """
    finite = np.flatnonzero(np.isfinite(evaluated_chi2))
    order = finite[np.argsort(evaluated_chi2[finite], kind="stable")][:max_points]
    if len(order) == 0:
        return []

    # Row i may only link to the better rows 0..i-1.
    distances = cdist(evaluated_u[order], evaluated_u[order])
    distances[np.triu_indices(len(order))] = np.inf
    parent = np.argmin(distances, axis=1)
    link = distances[np.arange(len(order)), parent]
    threshold = NBC_CUT * link[1:].mean() if len(order) > 1 else np.inf

    labels = np.zeros(len(order), dtype=int)
    n_basins = 1
    for row in range(1, len(order)):
        if link[row] > threshold:
            labels[row] = n_basins
            n_basins += 1
        else:
            labels[row] = labels[parent[row]]

    # Roots appear in order of chi2, so basin k's best point is better than basin k+1's.
    return [Basin(members=order[labels == k], best_chi2=float(evaluated_chi2[order[labels == k][0]]))
            for k in range(n_basins)]


def enclosing_ellipsoid(points: np.ndarray, margin: float = ELLIPSOID_MARGIN) -> Ellipsoid | None:
    """Return the ellipsoid with the points' covariance that contains them all, enlarged by ``margin``.

    Args:
        points: Unit-cube coordinates, shape (k, dim).
        margin: Factor on the largest Mahalanobis distance of the points.

    Returns:
        The ellipsoid, or None with fewer than dim + 2 points, where the
        covariance is too poorly determined.
    """
    k, dim = points.shape
    if k < dim + 2:
        return None
    centre = points.mean(axis=0)
    # A small ridge keeps the covariance positive definite when the points lie near a plane.
    covariance = np.cov(points, rowvar=False) + 1e-8 * np.eye(dim)
    cholesky = np.linalg.cholesky(covariance)
    whitened = np.linalg.solve(cholesky, (points - centre).T)
    radius = float(np.sqrt((whitened**2).sum(axis=0)).max()) * margin
    return Ellipsoid(centre=centre, cholesky=cholesky * max(radius, 1e-6))
