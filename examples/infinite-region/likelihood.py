"""A 2-D chi2 that is +inf in most of the box, like a finite-support upper limit.

An observable r^2 = x1^2 + x2^2 has an upper limit whose pdf is zero above
``RADIUS**2``, so the log-likelihood is -inf there and chi2 = +inf. Inside the
disk of radius ``RADIUS`` the chi2 is an uncorrelated Gaussian centred at
``CENTRE``, which lies 0.9 standard deviations from the edge of the disk::

    chi2(x) = sum(((x - CENTRE) / STD)**2)   if x1^2 + x2^2 <= RADIUS**2
            = +inf                           otherwise

The minimum is chi2 = 0 at ``CENTRE``. The disk lies inside the box
[-3, 3]^2 of campaign.yaml and covers ``FINITE_FRACTION`` (about 35%) of it.
The posterior is the Gaussian truncated to the disk; its moments are computed
at import by one-dimensional quadrature, exact to about 1e-8.
"""

import math

import numpy as np
from scipy import integrate

CENTRE = np.array([1.3, 1.0])
STD = np.array([0.4, 0.4])
RADIUS = 2.0
BOX_LOW, BOX_HIGH = -3.0, 3.0

TRUE_MINIMUM = CENTRE.copy()
CHI2_MIN = 0.0
FINITE_FRACTION = math.pi * RADIUS**2 / (BOX_HIGH - BOX_LOW) ** 2


def chi2(x1, x2):
    if x1 * x1 + x2 * x2 > RADIUS**2:
        return math.inf
    return float(((x1 - CENTRE[0]) / STD[0]) ** 2 + ((x2 - CENTRE[1]) / STD[1]) ** 2)


def is_finite(x: np.ndarray) -> np.ndarray:
    """Return a mask, shape (n,), of rows of ``x`` (shape (n, 2)) where chi2 is finite."""
    x = np.atleast_2d(x)
    return np.sum(x**2, axis=1) <= RADIUS**2


def in_low_region(x: np.ndarray, delta_chi2: float) -> np.ndarray:
    """Return a mask, shape (n,), of rows of ``x`` with chi2 < CHI2_MIN + delta_chi2."""
    x = np.atleast_2d(x)
    gaussian = np.sum(((x - CENTRE) / STD) ** 2, axis=1)
    return is_finite(x) & (gaussian < CHI2_MIN + delta_chi2)


def _normal_pdf(z: float) -> float:
    return math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)


def _normal_cdf(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def _slice_moments(x1: float) -> tuple[float, float, float]:
    """Integrate 1, x2 and x2^2 times the x2 Gaussian over the disk's chord at x1.

    With z = (x2 - CENTRE[1]) / STD[1] on [alpha, beta], the integrals of
    phi(z), z phi(z) and z^2 phi(z) are Phi(beta) - Phi(alpha),
    phi(alpha) - phi(beta) and Phi(beta) - Phi(alpha) + alpha phi(alpha) - beta phi(beta).
    """
    half_chord = math.sqrt(max(RADIUS**2 - x1 * x1, 0.0))
    alpha = (-half_chord - CENTRE[1]) / STD[1]
    beta = (half_chord - CENTRE[1]) / STD[1]
    mass = _normal_cdf(beta) - _normal_cdf(alpha)
    first = _normal_pdf(alpha) - _normal_pdf(beta)
    second = mass + alpha * _normal_pdf(alpha) - beta * _normal_pdf(beta)
    mu, sigma = CENTRE[1], STD[1]
    return mass, mu * mass + sigma * first, mu**2 * mass + 2 * mu * sigma * first + sigma**2 * second


def _posterior_moments() -> tuple[np.ndarray, np.ndarray]:
    """Integrate the first and second moments over x1, with x2 done analytically per slice."""

    def moment(power1: int, index2: int) -> float:
        def integrand(x1: float) -> float:
            weight = _normal_pdf((x1 - CENTRE[0]) / STD[0])
            return weight * x1**power1 * _slice_moments(x1)[index2]

        return integrate.quad(integrand, -RADIUS, RADIUS, limit=400, epsabs=1e-13, epsrel=1e-11)[0]

    norm = moment(0, 0)
    mean1, mean2 = moment(1, 0) / norm, moment(0, 1) / norm
    second11, second22, second12 = moment(2, 0) / norm, moment(0, 2) / norm, moment(1, 1) / norm
    mean = np.array([mean1, mean2])
    covariance = np.array(
        [
            [second11 - mean1**2, second12 - mean1 * mean2],
            [second12 - mean1 * mean2, second22 - mean2**2],
        ]
    )
    return mean, covariance


POSTERIOR_MEAN, POSTERIOR_COVARIANCE = _posterior_moments()
