"""A correlated 4-D Gaussian chi2 with a known minimum and covariance.

chi2(x) = (x - mean)^T C^-1 (x - mean), so the minimum is 0 at ``MEAN`` and
the posterior under a wide uniform prior is N(MEAN, COVARIANCE).
"""

import numpy as np

MEAN = np.array([1.0, -0.5, 0.3, 2.0])
STD = np.array([0.5, 0.8, 0.3, 0.6])
CORRELATION = np.array(
    [
        [1.0, 0.6, 0.0, 0.0],
        [0.6, 1.0, -0.4, 0.0],
        [0.0, -0.4, 1.0, 0.3],
        [0.0, 0.0, 0.3, 1.0],
    ]
)
COVARIANCE = CORRELATION * np.outer(STD, STD)
PRECISION = np.linalg.inv(COVARIANCE)


def chi2(x1, x2, x3, x4):
    delta = np.array([x1, x2, x3, x4]) - MEAN
    return float(delta @ PRECISION @ delta)
