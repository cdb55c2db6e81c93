"""Hyperparameter search for the surrogate's boosters with scikit-optimize.

Each booster's hyperparameters are searched with a Bayesian optimizer
(:class:`skopt.Optimizer`, a Gaussian-process model of the loss). The loss
of one candidate set is the k-fold cross-validated loss, and the number of
trees is not searched but found by early stopping on each validation fold,
up to :data:`MAX_ROUNDS`.

The optimizer's Gaussian process runs in numpy's BLAS. With its default
thread pool on a busy machine, most of the tuning time went to threads
waiting for each other, and the last digits of the fitted GP depended on
the thread count. So tuning limits BLAS and OpenMP to ``threads``.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import xgboost
from sklearn.model_selection import KFold
from skopt import Optimizer
from skopt.space import Integer, Real
from skopt.utils import cook_estimator
from threadpoolctl import threadpool_limits

from campaign.surrogate.training import DEFAULT_HYPERPARAMETERS, TrainingSet, booster_params

__all__ = ["SEARCH_SPACE", "tune_hyperparameters", "tune_booster"]

logger = logging.getLogger(__name__)

SEARCH_SPACE = [
    Integer(2, 6, name="max_depth"),
    Real(0.03, 0.3, prior="log-uniform", name="learning_rate"),
    Real(0.01, 10.0, prior="log-uniform", name="min_child_weight"),
    Real(0.5, 1.0, name="subsample"),
    Real(0.5, 1.0, name="colsample_bytree"),
    Real(1e-6, 1.0, prior="log-uniform", name="gamma"),
    Real(1e-6, 10.0, prior="log-uniform", name="reg_alpha"),
    Real(1e-3, 10.0, prior="log-uniform", name="reg_lambda"),
]

#: Cap on the trees of one booster; with the lowest learning rate of the
#: search space, early stopping usually ends a fold before it.
MAX_ROUNDS = 200
EARLY_STOPPING_ROUNDS = 15
TUNING_FOLDS = 3
#: Random candidate sets before the optimizer's Gaussian process takes over.
INITIAL_CANDIDATES = 4


def tune_hyperparameters(training: TrainingSet, *, iterations: int, seed: int, threads: int) -> dict:
    """Search hyperparameters of the classifier and the regressor.

    Args:
        training: Output of :func:`campaign.surrogate.training.prepare_training_set`.
        iterations: Candidate sets tried per booster; the first is
            :data:`DEFAULT_HYPERPARAMETERS`.
        seed: Seed of the optimizer and of the folds.
        threads: XGBoost threads.

    Returns:
        ``{"classifier": {...}, "regressor": {...}}`` with ``n_estimators`` from early stopping.
    """
    rows = training.regressor_mask
    with threadpool_limits(limits=threads):
        return {
            "classifier": tune_booster("classifier", training.features, training.labels,
                                       iterations=iterations, seed=seed, threads=threads),
            "regressor": tune_booster("regressor", training.features[rows], training.chi2[rows],
                                      iterations=iterations, seed=seed, threads=threads),
        }


def tune_booster(role: str, features: np.ndarray, target: np.ndarray, *, iterations: int, seed: int, threads: int) -> dict:
    """Search one booster's hyperparameters and return the best set found.

    With fewer rows than folds there is nothing to validate on, and the
    defaults are returned.
    """
    if len(target) < 2 * TUNING_FOLDS or (role == "classifier" and len(np.unique(target)) < 2):
        return dict(DEFAULT_HYPERPARAMETERS)

    start = time.perf_counter()
    # One start of the GP's kernel fit instead of skopt's three: on at most
    # a few dozen losses the restarts rarely find a better kernel.
    surrogate = cook_estimator("GP", space=SEARCH_SPACE, random_state=seed, n_restarts_optimizer=0)
    optimizer = Optimizer(
        SEARCH_SPACE, base_estimator=surrogate, n_initial_points=min(INITIAL_CANDIDATES, iterations),
        acq_optimizer="sampling", acq_optimizer_kwargs={"n_points": 1000}, random_state=seed,
    )
    folds = _fold_matrices(role, features, target, seed=seed, threads=threads)
    # The defaults, clipped into the search space (log-uniform axes exclude 0), are tried first.
    defaults = [min(max(DEFAULT_HYPERPARAMETERS[d.name], d.low), d.high) for d in SEARCH_SPACE]
    best_loss, best = np.inf, None
    for iteration in range(iterations):
        candidate = defaults if iteration == 0 else optimizer.ask()
        hyperparameters = {d.name: _plain(v) for d, v in zip(SEARCH_SPACE, candidate)}
        loss, rounds = _cross_validated_loss(role, hyperparameters, folds, seed=seed, threads=threads)
        optimizer.tell(list(candidate), loss)
        if loss < best_loss:
            best_loss, best = loss, {**hyperparameters, "n_estimators": rounds}

    logger.info("tuned %s on %d rows: loss %.4g after %d sets in %.1f s", role, len(target), best_loss, iterations,
                time.perf_counter() - start)
    return best


def _fold_matrices(role, features, target, *, seed, threads) -> list[tuple[xgboost.DMatrix, xgboost.DMatrix, float | None]]:
    """Build each fold's training and validation matrices once, with the classifier's base score of the fold."""
    folds = []
    for train, valid in KFold(TUNING_FOLDS, shuffle=True, random_state=seed).split(features):
        base_score = float(np.clip(np.mean(target[train]), 0.02, 0.98)) if role == "classifier" else None
        folds.append((
            xgboost.DMatrix(features[train], label=target[train], nthread=threads),
            xgboost.DMatrix(features[valid], label=target[valid], nthread=threads),
            base_score,
        ))
    return folds


def _cross_validated_loss(role, hyperparameters, folds, *, seed, threads) -> tuple[float, int]:
    """Return the mean validation loss over folds and the mean early-stopped number of trees."""
    params = booster_params(role, hyperparameters, seed=seed, threads=threads)
    params["eval_metric"] = "logloss" if role == "classifier" else "rmse"
    losses, rounds = [], []
    for dtrain, dvalid, base_score in folds:
        if base_score is not None:
            params["base_score"] = base_score
        booster = xgboost.train(
            params, dtrain, num_boost_round=MAX_ROUNDS, evals=[(dvalid, "valid")],
            early_stopping_rounds=EARLY_STOPPING_ROUNDS, verbose_eval=False,
        )
        losses.append(booster.best_score)
        rounds.append(booster.best_iteration + 1)
    return float(np.mean(losses)), int(round(np.mean(rounds)))


def _plain(value):
    """Turn numpy scalars from the optimizer into JSON-friendly Python numbers."""
    return value.item() if isinstance(value, np.generic) else value
