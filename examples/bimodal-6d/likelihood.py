"""Two separated Gaussian modes in 6-D with a known posterior.

The likelihood is a mixture of two Gaussians with the same diagonal
covariance and weights ``WEIGHTS``::

    chi2(x) = -2 ln(sum_k WEIGHTS[k] * exp(-d_k(x)**2 / 2)) + 2 ln(WEIGHTS[0])

where d_k is the Mahalanobis distance to ``MODES[k]``. The global minimum is
chi2 = 0 at ``MODES[0]`` and the second minimum is chi2 = 2 ln(0.6 / 0.4),
about 0.81, at ``MODES[1]``, so both lie in any low region and a fit that
finds only one of them is wrong. The modes are about 19 standard deviations
apart, so each contributes below 1e-80 at the other's centre, and they lie
more than 6 standard deviations inside the box, so truncation is negligible.
"""

import numpy as np

NAMES = ("x1", "x2", "x3", "x4", "x5", "x6")
MODES = np.array(
    [
        [-2.0, 1.5, -1.0, 2.0, -2.5, 0.5],
        [2.0, -1.5, 1.5, -2.0, 1.0, -0.5],
    ]
)
WEIGHTS = np.array([0.6, 0.4])
STD = np.array([0.4, 0.4, 0.3, 0.5, 0.4, 0.3])

TRUE_MINIMA = MODES.copy()
CHI2_MINIMA = np.array([0.0, 2.0 * np.log(WEIGHTS[0] / WEIGHTS[1])])
TRUE_MINIMUM = MODES[0]
CHI2_MIN = 0.0

# Posterior of a mixture with equal component covariances: the mean is the
# weighted mean of the modes, and the covariance adds the spread of the modes.
POSTERIOR_MEAN = WEIGHTS @ MODES
POSTERIOR_COVARIANCE = np.diag(STD**2) + sum(
    w * np.outer(m - POSTERIOR_MEAN, m - POSTERIOR_MEAN) for w, m in zip(WEIGHTS, MODES)
)
# Probability mass of each mode, equal to WEIGHTS because the covariances are equal.
MODE_MASSES = WEIGHTS.copy()


def chi2(x1, x2, x3, x4, x5, x6):
    x = np.array([x1, x2, x3, x4, x5, x6])
    squared_distances = np.sum(((x - MODES) / STD) ** 2, axis=1)
    log_mixture = np.logaddexp.reduce(np.log(WEIGHTS) - 0.5 * squared_distances)
    return float(-2.0 * log_mixture + 2.0 * np.log(WEIGHTS[0]))


def nearest_mode(x: np.ndarray) -> np.ndarray:
    """Return the index (0 or 1) of the nearer mode for rows of ``x``, shape (n, 6) -> (n,)."""
    x = np.atleast_2d(x)
    distances = np.sum(((x[:, None, :] - MODES[None, :, :]) / STD) ** 2, axis=2)
    return np.argmin(distances, axis=1)
