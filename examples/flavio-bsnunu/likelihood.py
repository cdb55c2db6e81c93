"""chi2 of real new-physics shifts of C_L and C_R in b -> s nu nu, computed with flavio.

The parameters shift the weak-effective-theory coefficients ``CL_bsnulnul``
and ``CR_bsnulnul`` of flavio's ``flavio`` basis at the scale 4.8 GeV, equally
for the three neutrino flavours. The Standard Model adds ``CL_SM``, about
-6.53, to C_L inside flavio, so the shift (0, 0) is the Standard Model.

The likelihood is flavio's :class:`~flavio.statistics.likelihood.Likelihood`
over the four branching ratios in ``OBSERVABLES``. It includes every
measurement flavio 2.7.1 ships for them (Belle and BaBar, mostly upper
limits) plus the Belle II 2023 measurement BR(B+ -> K+ nu nu) =
(2.3 +- 0.5 (stat) +0.5/-0.4 (syst)) x 10^-5 (arXiv:2311.14647), which flavio
2.7.1 does not ship and which this module adds as a flavio ``Measurement``.
Theory uncertainties are not included: the Standard-Model parameters are at
their central values.

chi2 = -2 ln(L / L_max) with flavio's ``delta=True``, which divides each
measurement's pdf by its maximum, so chi2 >= 0. Several upper-limit pdfs have
finite support, so ln L is -inf, and chi2 is +inf, in large parts of the box.

The branching ratios depend on C_L + CL_SM and C_R only through
|C_L + CL_SM|^2 + |C_R|^2 and Re((C_L + CL_SM) C_R*). The map
(C_L, C_R) -> (-2 CL_SM - C_L, -C_R) therefore leaves chi2 unchanged, and every
best fit has a mirror image (see :func:`mirror`).

Requires ``pip install .[flavio]`` (flavio 2.7.1 with ``particle<1.0``).
"""

from __future__ import annotations

import functools
import math

try:
    import flavio
    from flavio.classes import Measurement
    from flavio.physics.bdecays.wilsoncoefficients import CL_SM as _cl_sm
    from flavio.statistics.likelihood import Likelihood
    from wilson import Wilson
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"the flavio example needs flavio 2.7.1 and particle<1.0 ({exc}); "
        "install them with: pip install '.[flavio]'"
    ) from exc

__all__ = [
    "OBSERVABLES", "BELLE2_MEASUREMENT", "SCALE", "CL_SM", "CHI2_MIN", "CHI2_SM", "chi2", "chi2_4d", "chi2_complex", "mirror",
    "build_likelihood",
]

OBSERVABLES = ("BR(B+->Knunu)", "BR(B0->Knunu)", "BR(B+->K*nunu)", "BR(B0->K*nunu)")
BELLE2_MEASUREMENT = "Belle II B+->K+nunu 2023"
SCALE = 4.8
LEPTONS = ("e", "mu", "tau")
CL_SM = float(_cl_sm(flavio.default_parameters.get_central_all(), SCALE))
# Minimum of chi2 in the 2-D box, found by Nelder-Mead from four starting points.
# It is reached along two bands, so no single best-fit point is exported.
CHI2_MIN = 13.22656
# chi2 of the Standard Model, the shift (0, 0).
CHI2_SM = 20.36247


def add_belle2_measurement() -> Measurement:
    """Register the Belle II 2023 BR(B+ -> K+ nu nu) measurement with flavio.

    The statistical error is Gaussian and the systematic one an asymmetric
    Gaussian; flavio convolves the two into one numerical pdf. Registering
    again replaces the earlier instance of the same name.
    """
    measurement = Measurement(BELLE2_MEASUREMENT)
    measurement.experiment = "Belle II"
    measurement.url = "https://arxiv.org/abs/2311.14647"
    measurement.description = "Belle II 2023 measurement of BR(B+ -> K+ nu nu), arXiv:2311.14647"
    measurement.set_constraint("BR(B+->Knunu)", "(2.3 ± 0.5 + 0.5 - 0.4) e-5")
    return measurement


@functools.cache
def build_likelihood() -> Likelihood:
    """Build the flavio likelihood once per process; later calls return the same object."""
    add_belle2_measurement()
    measurements = sorted({m for o in OBSERVABLES for m in flavio.Observable[o].get_measurements()})
    return Likelihood(observables=list(OBSERVABLES), include_measurements=measurements)


@functools.cache
def _central_parameters() -> dict:
    return flavio.default_parameters.get_central_all()


def chi2_complex(CL: complex, CR: complex) -> dict:
    """Compute chi2 and the four branching ratios at complex shifts of C_L and C_R.

    Returns:
        A mapping with ``chi2`` (+inf where a finite-support pdf is zero) and
        one entry per observable in ``OBSERVABLES``.
    """
    coefficients = {}
    for lepton in LEPTONS:
        coefficients[f"CL_bsnu{lepton}nu{lepton}"] = CL
        coefficients[f"CR_bsnu{lepton}nu{lepton}"] = CR
    wilson = Wilson(coefficients, scale=SCALE, eft="WET", basis="flavio")

    likelihood = build_likelihood().measurement_likelihood
    predictions = likelihood.get_predictions_par(_central_parameters(), wilson)
    log_likelihood = float(likelihood.log_likelihood_pred(predictions, delta=True))

    value = math.inf if log_likelihood == -math.inf else -2.0 * log_likelihood
    result = {"chi2": value}
    result.update({name: float(predictions[name]) for name in OBSERVABLES})
    return result


def chi2(CL: float, CR: float) -> dict:
    """Compute chi2 at real shifts of C_L and C_R; see :func:`chi2_complex`."""
    return chi2_complex(complex(CL, 0.0), complex(CR, 0.0))


def chi2_4d(ReCL: float, ImCL: float, ReCR: float, ImCR: float) -> dict:
    """Compute chi2 at complex shifts of C_L and C_R given as real and imaginary parts."""
    return chi2_complex(complex(ReCL, ImCL), complex(ReCR, ImCR))


def mirror(CL: complex, CR: complex) -> tuple[complex, complex]:
    """Return the point with the same branching ratios: (-2 CL_SM - CL, -CR)."""
    return -2.0 * CL_SM - CL, -CR
