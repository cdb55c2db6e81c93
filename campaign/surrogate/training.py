"""Training the two-stage surrogate: training sets, boosters, cross-validated metrics and the low threshold.

Every function here works on arrays, so it can be tested and reused without
a database. Randomness comes from explicit seeds and the thread count is a
parameter, because XGBoost's results and timings depend on both.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import xgboost
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import KFold

from campaign.errors import ConflictError
from campaign.space import ParameterSpace
from campaign.surrogate.model import SurrogateModel, low_labels

__all__ = [
    "DEFAULT_HYPERPARAMETERS", "TrainingSet", "prepare_training_set", "booster_params",
    "fit_booster", "fit_committee", "cross_validate", "cross_validate_classifier", "out_of_fold_margins",
    "calibrate_low_threshold", "train_surrogate", "MIN_REGRESSOR_POINTS",
]

logger = logging.getLogger(__name__)

#: Starting hyperparameters of both boosters, in scikit-learn's XGBoost names.
DEFAULT_HYPERPARAMETERS = {
    "max_depth": 4,
    "learning_rate": 0.1,
    "min_child_weight": 1.0,
    "subsample": 0.9,
    "colsample_bytree": 1.0,
    "gamma": 0.0,
    "reg_alpha": 0.0,
    "reg_lambda": 1.0,
    "n_estimators": 150,
}

#: The regressor always trains on at least this many of the lowest finite points,
#: so that it learns the slope towards the minimum while the low region is tiny.
MIN_REGRESSOR_POINTS = 32

#: The regressor trains on chi2 < chi2_min + REGRESSOR_MARGIN * delta_chi2, a
#: band twice as wide as the low region, so its edge is inside the data.
REGRESSOR_MARGIN = 2.0

CV_FOLDS = 3

#: With fewer true-low points than this, the low threshold is not calibrated and stays 0.
MIN_CALIBRATION_POINTS = 10
#: Lowest calibrated threshold, log-odds of about -4 (a probability of 0.018).
# NOTE: a guard against a classifier that barely separates the low region
# yet, not a measured optimum; where it binds, the held-out recall in the
# metrics is below the target.
MIN_LOW_MARGIN_THRESHOLD = -4.0

_OBJECTIVES = {"classifier": "binary:logistic", "regressor": "reg:squarederror"}


@dataclass(frozen=True)
class TrainingSet:
    """Evaluated points prepared for both stages.

    Attributes:
        features: Unit-cube coordinates, shape (n, dim).
        chi2: chi2 values, shape (n,); may contain NaN and inf.
        labels: 1 for the low region, else 0, shape (n,).
        regressor_mask: Rows the regressor trains on, shape (n,).
        chi2_min: Lowest finite chi2.
        delta_chi2: Width of the low region.
    """

    features: np.ndarray
    chi2: np.ndarray
    labels: np.ndarray
    regressor_mask: np.ndarray
    chi2_min: float
    delta_chi2: float

    @property
    def n_low(self) -> int:
        return int(self.labels.sum())


def prepare_training_set(space: ParameterSpace, x: np.ndarray, chi2: np.ndarray, delta_chi2: float) -> TrainingSet:
    """Label evaluated points and select the regressor's rows.

    Args:
        space: The campaign's parameter space.
        x: Physical values, shape (n, dim).
        chi2: chi2 values, shape (n,); NaN and inf count as "not low" and
            are left out of the regressor.
        delta_chi2: Width of the low region.

    Raises:
        ConflictError: No point has a finite chi2, so there is nothing to learn.
    """
    chi2 = np.asarray(chi2, dtype=float)
    finite = np.isfinite(chi2)
    if not finite.any():
        raise ConflictError(
            f"none of the {len(chi2)} evaluated points has a finite chi2, so no surrogate can be trained; "
            "check the likelihood on a few points, or widen the parameter box"
        )
    chi2_min = float(chi2[finite].min())

    with np.errstate(invalid="ignore"):
        near = finite & (chi2 < chi2_min + REGRESSOR_MARGIN * delta_chi2)
    lowest = np.argsort(np.where(finite, chi2, np.inf), kind="stable")[: min(MIN_REGRESSOR_POINTS, int(finite.sum()))]
    near[lowest] = True

    return TrainingSet(
        features=space.to_unit(x),
        chi2=chi2,
        labels=low_labels(chi2, chi2_min, delta_chi2),
        regressor_mask=near,
        chi2_min=chi2_min,
        delta_chi2=float(delta_chi2),
    )


def booster_params(role: str, hyperparameters: dict, *, seed: int, threads: int, base_score: float | None = None) -> dict:
    """Translate scikit-learn style hyperparameters into ``xgboost.train`` parameters."""
    params = {
        "objective": _OBJECTIVES[role],
        "tree_method": "hist",
        "max_depth": int(hyperparameters["max_depth"]),
        "eta": float(hyperparameters["learning_rate"]),
        "min_child_weight": float(hyperparameters["min_child_weight"]),
        "subsample": float(hyperparameters["subsample"]),
        "colsample_bytree": float(hyperparameters["colsample_bytree"]),
        "gamma": float(hyperparameters["gamma"]),
        "alpha": float(hyperparameters["reg_alpha"]),
        "lambda": float(hyperparameters["reg_lambda"]),
        "seed": int(seed),
        "nthread": int(threads),
        "verbosity": 0,
    }
    if base_score is not None:
        params["base_score"] = base_score
    return params


def fit_booster(
    role: str,
    features: np.ndarray,
    target: np.ndarray,
    hyperparameters: dict,
    *,
    seed: int,
    threads: int,
    parent: xgboost.Booster | None = None,
    rounds: int | None = None,
) -> xgboost.Booster:
    """Train one booster.

    Args:
        role: ``"classifier"`` (target 0/1) or ``"regressor"`` (target chi2).
        features: Unit-cube coordinates, shape (n, dim).
        target: Labels or chi2, shape (n,).
        hyperparameters: Scikit-learn style names, see :data:`DEFAULT_HYPERPARAMETERS`.
        parent: Continue boosting from this booster (its trees are kept).
        rounds: Boosting rounds to add; ``n_estimators`` when None.
    """
    base_score = None
    if role == "classifier" and parent is None:
        # XGBoost estimates base_score from the label mean, which is 0 or 1
        # (an infinite log-odds) when the training set has one class only.
        base_score = float(np.clip(np.mean(target), 0.02, 0.98))
    params = booster_params(role, hyperparameters, seed=seed, threads=threads, base_score=base_score)
    data = xgboost.DMatrix(features, label=target, nthread=threads)
    rounds = int(hyperparameters["n_estimators"]) if rounds is None else rounds
    return xgboost.train(params, data, num_boost_round=rounds, xgb_model=parent)


def fit_committee(training: TrainingSet, hyperparameters: dict, size: int, *, seed: int, threads: int) -> list[xgboost.Booster]:
    """Train ``size`` regressors on bootstrap resamples of the regressor rows, each with its own seed."""
    features = training.features[training.regressor_mask]
    target = training.chi2[training.regressor_mask]
    rng = np.random.default_rng(seed)
    members = []
    for member in range(size):
        rows = rng.integers(0, len(target), size=len(target))
        members.append(
            fit_booster("regressor", features[rows], target[rows], hyperparameters, seed=seed + 1 + member, threads=threads)
        )
    return members


def out_of_fold_margins(training: TrainingSet, hyperparameters: dict, *, seed: int, threads: int,
                        folds: int = CV_FOLDS) -> np.ndarray:
    """Predict each point's classifier log-odds of "low" with a classifier trained on the other folds.

    Args:
        training: Output of :func:`prepare_training_set`, with at least ``folds`` points.
        hyperparameters: ``{"classifier": {...}, ...}``.

    Returns:
        Held-out log-odds, shape (n,).
    """
    margins = np.empty(len(training.chi2))
    for train, test in KFold(folds, shuffle=True, random_state=seed).split(training.features):
        booster = fit_booster("classifier", training.features[train], training.labels[train], hyperparameters["classifier"],
                              seed=seed, threads=threads)
        margins[test] = booster.inplace_predict(training.features[test], predict_type="margin")
    return margins


def calibrate_low_threshold(margins: np.ndarray, labels: np.ndarray, recall: float) -> float:
    """Choose the log-odds threshold that classifies at least ``recall`` of the held-out low points as low.

    A point is classified low when its log-odds are above the threshold. The
    threshold is the largest one that keeps the target share of the low
    points' held-out log-odds above it, but never above 0. Where the
    classifier already reaches the target at probability 0.5, a tighter
    gate would only drop low-region volume. It is never below
    :data:`MIN_LOW_MARGIN_THRESHOLD`, and it is 0 with fewer than
    :data:`MIN_CALIBRATION_POINTS` low points.

    Args:
        margins: Held-out log-odds, shape (n,), e.g. from :func:`out_of_fold_margins`.
        labels: 1 for the low region, else 0, shape (n,).
        recall: Target share of low points classified low, in (0, 1].

    Returns:
        The threshold, at most 0.
    """
    low = np.sort(np.asarray(margins, dtype=float)[np.asarray(labels) == 1])
    if len(low) < MIN_CALIBRATION_POINTS:
        return 0.0
    # Rounding first keeps e.g. 0.97 * 100 = 97.00000000000001 from asking for 98 points.
    n_classified_low = max(1, math.ceil(round(recall * len(low), 9)))
    missed = len(low) - n_classified_low
    threshold = float(np.nextafter(low[missed], -np.inf))
    return min(0.0, max(MIN_LOW_MARGIN_THRESHOLD, threshold))


def cross_validate_classifier(training: TrainingSet, hyperparameters: dict, *, seed: int, threads: int,
                              low_recall: float, folds: int = CV_FOLDS) -> dict:
    """Calibrate the low threshold and estimate the classifier's quality on held-out folds.

    Returns:
        ``low_margin_threshold`` (see :func:`calibrate_low_threshold`; 0
        with fewer points than folds), ``classifier_accuracy`` at
        probability 0.5, ``classifier_auc`` (None when all points have one
        label), and the share of low points classified low at the threshold
        and at log-odds 0, ``classifier_recall_low`` and
        ``classifier_recall_low_at_zero`` (None without low points). The
        recall at the threshold is measured on the points it was calibrated
        on, so it is at least the target unless the threshold was clipped.
    """
    n = len(training.chi2)
    labels = training.labels
    metrics = {"low_margin_threshold": 0.0, "classifier_accuracy": None, "classifier_auc": None,
               "classifier_recall_low": None, "classifier_recall_low_at_zero": None}
    if n < folds:
        return metrics

    # NOTE: each fold's classifier is trained on (folds - 1) / folds of the points, so its log-odds at the
    # region's edge are lower than the final classifier's. The threshold is then conservative: on
    # the examples the final model's recall was above the target, with more volume classified low.
    margins = out_of_fold_margins(training, hyperparameters, seed=seed, threads=threads, folds=folds)
    threshold = calibrate_low_threshold(margins, labels, low_recall)
    metrics["low_margin_threshold"] = threshold
    metrics["classifier_accuracy"] = float(accuracy_score(labels, margins > 0.0))
    if 0 < labels.sum() < n:
        metrics["classifier_auc"] = float(roc_auc_score(labels, margins))
    if labels.any():
        metrics["classifier_recall_low"] = float(np.mean(margins[labels == 1] > threshold))
        metrics["classifier_recall_low_at_zero"] = float(np.mean(margins[labels == 1] > 0.0))
    return metrics


def cross_validate(training: TrainingSet, hyperparameters: dict, *, seed: int, threads: int, low_recall: float,
                   folds: int = CV_FOLDS) -> dict:
    """Estimate out-of-sample quality of both stages with k-fold cross-validation, and calibrate the low threshold.

    Returns:
        The classifier's metrics and threshold from :func:`cross_validate_classifier`,
        ``regressor_mae_low`` and ``regressor_rmse_low`` on regressor rows
        inside the low region (None with fewer regressor rows than folds or
        no low row), and ``cv_folds``.
    """
    metrics = {
        **cross_validate_classifier(training, hyperparameters, seed=seed, threads=threads, low_recall=low_recall,
                                    folds=folds),
        "regressor_mae_low": None, "regressor_rmse_low": None, "cv_folds": folds,
    }
    rows = np.flatnonzero(training.regressor_mask)
    if len(rows) < folds:
        return metrics

    predicted = np.empty(len(rows))
    for train, test in KFold(folds, shuffle=True, random_state=seed).split(rows):
        booster = fit_booster("regressor", training.features[rows[train]], training.chi2[rows[train]],
                              hyperparameters["regressor"], seed=seed, threads=threads)
        predicted[test] = booster.inplace_predict(training.features[rows[test]])
    low = training.labels[rows] == 1
    if low.any():
        error = predicted[low] - training.chi2[rows][low]
        metrics["regressor_mae_low"] = float(np.mean(np.abs(error)))
        metrics["regressor_rmse_low"] = float(np.sqrt(np.mean(error**2)))
    return metrics


def train_surrogate(
    space: ParameterSpace,
    training: TrainingSet,
    hyperparameters: dict,
    *,
    seed: int,
    threads: int,
    committee_size: int = 0,
    parent: SurrogateModel | None = None,
    continue_rounds: int | None = None,
    low_margin_threshold: float = 0.0,
) -> tuple[SurrogateModel, float]:
    """Fit classifier, regressor and committee, and return the model with its training time in seconds.

    Args:
        space: The campaign's parameter space.
        training: Output of :func:`prepare_training_set`.
        hyperparameters: ``{"classifier": {...}, "regressor": {...}}``.
        parent: When given, continue boosting its classifier and regressor
            by ``continue_rounds`` rounds instead of refitting from scratch.
            The committee is always refit, because its bootstrap rows change
            with the training set.
        low_margin_threshold: Log-odds above which the model classifies a
            point low, from :func:`cross_validate_classifier`; 0 is
            probability 0.5.
    """
    start = time.perf_counter()
    rows = training.regressor_mask
    classifier = fit_booster(
        "classifier", training.features, training.labels, hyperparameters["classifier"], seed=seed, threads=threads,
        parent=parent.classifier if parent else None, rounds=continue_rounds if parent else None,
    )
    regressor = fit_booster(
        "regressor", training.features[rows], training.chi2[rows], hyperparameters["regressor"], seed=seed,
        threads=threads, parent=parent.regressor if parent else None, rounds=continue_rounds if parent else None,
    )
    committee = fit_committee(training, hyperparameters["regressor"], committee_size, seed=seed, threads=threads) \
        if committee_size else []
    model = SurrogateModel(space=space, classifier=classifier, regressor=regressor, committee=committee,
                           chi2_min=training.chi2_min, delta_chi2=training.delta_chi2,
                           low_margin_threshold=low_margin_threshold)
    return model, time.perf_counter() - start
