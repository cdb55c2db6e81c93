"""A Rosenbrock-like 2-D "banana" chi2 with a known posterior.

The chi2 is Gaussian after the change of variables ``y = x2 - CURVATURE * (x1**2 - STD1**2)``::

    chi2(x1, x2) = (x1 / STD1)**2 + (y / STD2)**2

so under a uniform prior on a box wide enough for truncation to be negligible,
x1 ~ N(0, STD1**2) and x2 | x1 ~ N(CURVATURE * (x1**2 - STD1**2), STD2**2).
The minimum is chi2 = 0 at ``TRUE_MINIMUM``. The box in campaign.yaml keeps
the probability mass outside it below 1e-4.
"""

import numpy as np
from scipy import integrate, optimize, stats

STD1 = 1.0
STD2 = 0.5
CURVATURE = 1.0

TRUE_MINIMUM = np.array([0.0, -CURVATURE * STD1**2])
CHI2_MIN = 0.0

# Exact posterior moments: E[x2] = CURVATURE * (E[x1^2] - STD1^2) = 0, and
# Var[x2] = STD2^2 + CURVATURE^2 * Var[x1^2] = STD2^2 + 2 * CURVATURE^2 * STD1^4.
# Cov[x1, x2] = CURVATURE * E[x1^3] = 0.
POSTERIOR_MEAN = np.array([0.0, 0.0])
POSTERIOR_COVARIANCE = np.diag([STD1**2, STD2**2 + 2.0 * CURVATURE**2 * STD1**4])


def chi2(x1, x2):
    y = x2 - CURVATURE * (x1**2 - STD1**2)
    return float((x1 / STD1) ** 2 + (y / STD2) ** 2)


def marginal_cdf(name: str, value: float) -> float:
    """Evaluate the exact marginal posterior CDF of ``"x1"`` or ``"x2"`` at ``value``."""
    if name == "x1":
        return float(stats.norm.cdf(value, scale=STD1))
    if name != "x2":
        raise ValueError(f"unknown parameter {name!r}; expected 'x1' or 'x2'")

    def integrand(x1):
        centre = CURVATURE * (x1**2 - STD1**2)
        return stats.norm.pdf(x1, scale=STD1) * stats.norm.cdf(value, loc=centre, scale=STD2)

    return float(integrate.quad(integrand, -10 * STD1, 10 * STD1, limit=200)[0])


def marginal_quantile(name: str, probability: float) -> float:
    """Invert :func:`marginal_cdf` for one parameter; accurate to about 1e-9."""
    return float(optimize.brentq(lambda v: marginal_cdf(name, v) - probability, -20.0, 40.0, xtol=1e-10))


def central_interval(name: str, level: float) -> tuple[float, float]:
    """Return the equal-tailed posterior interval of one parameter at ``level`` (e.g. 0.68)."""
    tail = (1.0 - level) / 2.0
    return marginal_quantile(name, tail), marginal_quantile(name, 1.0 - tail)
