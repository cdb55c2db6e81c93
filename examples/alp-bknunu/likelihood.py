"""chi2 of an axion-like particle (ALP) with six parameters, computed with ALPaca.

Needs Python 3.12 or newer and ``alpaca-ALPs`` 1.2.0 (built on flavio 2.7.1).
ALPaca's metadata declares Python 3.11, but its code uses 3.12 f-string syntax.

Parameters: log10fa, the log10 of the ALP decay constant fa in GeV, and for
each of the couplings cqL33, cuR, cdR, clL33 and ceR the ratio x = c / fa in
units of 1e-7 GeV^-1 (x_qL33, x_uR, x_dR, x_lL33, x_eR), so c = x * 1e-7 * fa. The couplings are in ALPaca's
``derivative_above`` basis at the scale 4 pi fa, with cqL and clL acting on
the third generation only and cuR, cdR and ceR flavour-universal. They are run
down to the ALP mass of 2 GeV with leading-log running. The chi2 is that of
ALPaca's combined sector ``all`` of its default sectors, B -> K + invisible
among them.

Two sources of randomness make repeated evaluations differ unless both are
fixed: ALPaca estimates some Standard-Model uncertainties by Monte Carlo from
numpy's global random state, and its three-body widths use vegas integration.
This module seeds numpy with ``SM_UNCERTAINTY_SEED`` before each such
estimate and vegas with ``VEGAS_SEED`` before each point, so one point gives
one chi2 in every process. Both states are global, so evaluate in processes,
not threads. ALPaca's caches are unbounded, so they are cleared every
``CACHE_CLEAR_INTERVAL`` points.
"""

from __future__ import annotations

import functools
import logging
import math
import sys

import numpy as np

if sys.version_info < (3, 12):  # pragma: no cover - depends on the interpreter
    raise ImportError(
        f"the ALP example needs Python 3.12 or newer, this is {sys.version.split()[0]}; "
        "run it with a Python 3.12 environment that has alpaca-ALPs installed"
    )

try:
    import alpaca
    from alpaca import ALPcouplings
    from alpaca.statistics import get_chi2
    from alpaca.decays.alp_decays import branching_ratios
    from alpaca.experimental_data import theoretical_predictions
    from alpaca.rge import classes as rge_classes
    from alpaca.sectors import default_sectors
    from alpaca.statistics import chisquared
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(f"the ALP example needs alpaca-ALPs 1.2.0 ({exc}); install it with: pip install alpaca-ALPs==1.2.0") from exc

__all__ = ["ALP_MASS", "COUPLINGS", "SM_UNCERTAINTY_SEED", "VEGAS_SEED", "CACHE_CLEAR_INTERVAL", "chi2", "couplings_at"]

logger = logging.getLogger(__name__)

ALP_MASS = 2.0
COUPLINGS = ("cqL33", "cuR", "cdR", "clL33", "ceR")
X_UNIT = 1e-7
SM_UNCERTAINTY_SEED = 20240601
VEGAS_SEED = 12345
CACHE_CLEAR_INTERVAL = 20

_evaluations = 0


def _seed_sm_uncertainties() -> None:
    """Seed numpy before each of ALPaca's Monte Carlo Standard-Model uncertainty estimates.

    ALPaca caches ``get_th_uncert`` per process, and ``chisquared`` imports it
    by name, so the seeded wrapper replaces it in both modules.
    """
    unseeded = theoretical_predictions.get_th_uncert.__wrapped__

    @functools.cache
    def seeded(process, N: int = 50) -> float:
        np.random.seed(SM_UNCERTAINTY_SEED)
        return unseeded(process, N)

    theoretical_predictions.get_th_uncert = seeded
    chisquared.get_th_uncert = seeded


_seed_sm_uncertainties()


def couplings_at(log10fa: float, x_qL33: float, x_uR: float, x_dR: float, x_lL33: float, x_eR: float) -> tuple[float, dict]:
    """Return fa in GeV and the five dimensionless couplings c = x * 1e-7 * fa."""
    fa = 10.0**log10fa
    values = dict(zip(COUPLINGS, (x_qL33, x_uR, x_dR, x_lL33, x_eR)))
    return fa, {name: x * X_UNIT * fa for name, x in values.items()}


def chi2(log10fa: float, x_qL33: float, x_uR: float, x_dR: float, x_lL33: float, x_eR: float) -> float:
    """Compute the total chi2 of ALPaca's combined default sectors at one point."""
    global _evaluations
    fa, c = couplings_at(log10fa, x_qL33, x_uR, x_dR, x_lL33, x_eR)
    values = {
        "cqL": np.diag([0.0, 0.0, c["cqL33"]]),
        "clL": np.diag([0.0, 0.0, c["clL33"]]),
        "cuR": c["cuR"],
        "cdR": c["cdR"],
        "ceR": c["ceR"],
    }
    couplings = ALPcouplings(values, scale=4.0 * math.pi * fa, basis="derivative_above")
    low_energy = couplings.match_run(ALP_MASS, "VA_below", integrator="leadinglog")

    alpaca.config.vegas_seed = VEGAS_SEED
    result = get_chi2(default_sectors["all"], ALP_MASS, low_energy, fa, integrator="no_rge")
    value = float(np.asarray(result.chi2_tot()).reshape(-1)[0])

    _evaluations += 1
    if _evaluations % CACHE_CLEAR_INTERVAL == 0:
        _clear_caches()
    return value


def _clear_caches() -> None:
    """Clear ALPaca's unbounded per-point caches; the seeded uncertainties stay cached."""
    branching_ratios._total_decay_width.cache_clear()
    rge_classes.ALPcouplings._match_run.cache_clear()
    rge_classes._yukawa_matrices.cache_clear()
    logger.debug("cleared ALPaca caches after %d evaluations", _evaluations)
