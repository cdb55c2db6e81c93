"""The two-stage surrogate of chi2: a classifier of the low region and a regressor inside it.

Most of a prior box has huge chi2, and a regressor trained on all of it
spends its trees there. So a classifier learns the label
``chi2 < chi2_min + delta_chi2``, a regressor learns chi2 on the low region
(and a margin around it), and :func:`combine_chi2` joins the two into one
smooth surrogate chi2.

A point is classified low when the classifier's log-odds exceed the model's
``low_margin_threshold``, not 0. At log-odds 0 the classifier errs
symmetrically in a thin shell at the region's edge, and on the 4-D Gaussian
example that shell contained about a fifth of the region's volume
(benchmarks/bench_active_learning.py). So training calibrates a negative
threshold by cross-validation for a target recall of the low region
(:func:`campaign.surrogate.training.calibrate_low_threshold`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import xgboost

from campaign.space import ParameterSpace

__all__ = ["SurrogateModel", "combine_chi2", "low_labels"]


def combine_chi2(
    regressor_chi2: np.ndarray, classifier_margin: np.ndarray, penalty: float, *, threshold: float
) -> np.ndarray:
    """Join the regressor's chi2 and the classifier's log-odds into one surrogate chi2.

    The surrogate is ``regressor_chi2 + penalty * softplus(threshold - margin)``.
    Where the classifier is sure of "low" (margin far above the threshold)
    the penalty vanishes. Where it is sure of "not low" the penalty grows
    linearly with the log-odds, so MCMC walkers and optimizers feel a slope
    back to the low region instead of a cliff. Every surrogate chi2, the
    compiled one included, goes through this function.

    Args:
        regressor_chi2: Regressor predictions, shape (n,).
        classifier_margin: Log-odds of "low", shape (n,).
        penalty: chi2 added per unit of log-odds below the threshold; the
            campaign's delta_chi2 is the default of :meth:`SurrogateModel.surrogate_chi2`.
        threshold: Log-odds above which a point is classified low, the
            model's ``low_margin_threshold``.

    Returns:
        Surrogate chi2, shape (n,).
    """
    regressor_chi2 = np.asarray(regressor_chi2, dtype=float)
    classifier_margin = np.asarray(classifier_margin, dtype=float)
    return regressor_chi2 + penalty * np.logaddexp(0.0, threshold - classifier_margin)


def low_labels(chi2: np.ndarray, chi2_min: float, delta_chi2: float) -> np.ndarray:
    """Label points of the low region: 1 where ``chi2 < chi2_min + delta_chi2``, else 0.

    NaN and infinite chi2 are labelled 0 ("not low").
    """
    chi2 = np.asarray(chi2, dtype=float)
    with np.errstate(invalid="ignore"):
        low = np.isfinite(chi2) & (chi2 < chi2_min + delta_chi2)
    return low.astype(np.int32)


@dataclass
class SurrogateModel:
    """A trained two-stage surrogate on a campaign's parameter space.

    The boosters see unit-cube coordinates, ``space.to_unit(x)``, so log
    parameters are on a log axis. All methods take physical values.

    Attributes:
        space: The campaign's parameter space.
        classifier: ``binary:logistic`` booster for the label chi2 < chi2_min + delta_chi2.
        regressor: ``reg:squarederror`` booster for chi2 in and near the low region.
        committee: Regressors trained on bootstrap resamples with their own
            seeds, used for the spread of predictions; may be empty.
        chi2_min: Lowest finite chi2 of the training set.
        delta_chi2: Width of the low region.
        low_margin_threshold: Classifier log-odds above which a point is
            classified low; 0 (probability 0.5) for versions trained before
            the threshold was calibrated.
    """

    space: ParameterSpace
    classifier: xgboost.Booster
    regressor: xgboost.Booster
    committee: list[xgboost.Booster] = field(default_factory=list)
    chi2_min: float = 0.0
    delta_chi2: float = 1.0
    low_margin_threshold: float = 0.0

    def features(self, x: np.ndarray) -> np.ndarray:
        """Map physical values, shape (n, dim), to the boosters' unit-cube features."""
        x = np.atleast_2d(np.asarray(x, dtype=float))
        if x.shape[1] != self.space.dim:
            raise ValueError(f"expected points with {self.space.dim} parameters, got shape {x.shape}")
        return self.space.to_unit(x)

    def predict_chi2(self, x: np.ndarray) -> np.ndarray:
        """Predict chi2 with the regressor; physical ``x`` of shape (n, dim) gives shape (n,)."""
        return self.regressor.inplace_predict(self.features(x)).astype(float)

    def classifier_margin(self, x: np.ndarray) -> np.ndarray:
        """Return the classifier's log-odds of "low", shape (n,)."""
        return self.classifier.inplace_predict(self.features(x), predict_type="margin").astype(float)

    def low_margin(self, x: np.ndarray) -> np.ndarray:
        """Return the log-odds of "low" above the calibrated threshold, shape (n,); positive means classified low."""
        return self.classifier_margin(x) - self.low_margin_threshold

    def is_low(self, x: np.ndarray) -> np.ndarray:
        """Return whether each point is classified low, shape (n,) of bool."""
        return self.low_margin(x) > 0.0

    def surrogate_chi2(self, x: np.ndarray, penalty: float | None = None) -> np.ndarray:
        """Predict the surrogate chi2: regressor chi2 plus the smooth "not low" penalty.

        Args:
            x: Physical values, shape (n, dim).
            penalty: chi2 per unit of negative log-odds; delta_chi2 when None.
        """
        penalty = self.delta_chi2 if penalty is None else penalty
        return combine_chi2(self.predict_chi2(x), self.classifier_margin(x), penalty,
                            threshold=self.low_margin_threshold)

    def committee_chi2(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return the committee's mean and standard deviation of chi2, each shape (n,).

        With an empty committee the mean is the regressor's prediction and the spread is 0.
        """
        if not self.committee:
            return self.predict_chi2(x), np.zeros(len(np.atleast_2d(x)))
        features = self.features(x)
        predictions = np.stack([member.inplace_predict(features) for member in self.committee]).astype(float)
        return predictions.mean(axis=0), predictions.std(axis=0, ddof=1)
