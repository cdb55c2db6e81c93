"""Validation of a surrogate: the true likelihood at posterior samples and at the best fit.

The points are stored as ordinary points with origin ``validation`` and are
evaluated through the evaluation engine, so they also enter the next
training set. The residuals (true minus surrogate chi2) are stored in table
``validations``.
"""

from __future__ import annotations

import logging

import numpy as np
import sqlalchemy as sa

from campaign.errors import ConfigError
from campaign.store import models
from campaign.store.chains import find_chain, load_samples
from campaign.store.points import insert_points

__all__ = ["validate_campaign", "residual_statistics", "validation_caution", "VALIDATION_RMS_LIMIT"]

logger = logging.getLogger(__name__)

#: RMS of the chi2 residuals above which a validation gets a caution. A chi2
#: error e scales the posterior density by exp(-e/2), a factor of 1.6 at e = 1.
VALIDATION_RMS_LIMIT = 1.0


def residual_statistics(true_chi2: np.ndarray, surrogate_chi2: np.ndarray) -> dict:
    """Summarize residuals ``true - surrogate`` over the points where both are finite.

    Returns:
        n, n_finite, mean, std, rms, max_abs and median_abs of the residuals
        (None when no point is finite).
    """
    residual = np.asarray(true_chi2, float) - np.asarray(surrogate_chi2, float)
    finite = residual[np.isfinite(residual)]
    statistics = {"n": int(len(residual)), "n_finite": int(len(finite))}
    if len(finite) == 0:
        return {**statistics, "mean": None, "std": None, "rms": None, "max_abs": None, "median_abs": None}
    return {
        **statistics,
        "mean": float(finite.mean()),
        "std": float(finite.std(ddof=1)) if len(finite) > 1 else 0.0,
        "rms": float(np.sqrt(np.mean(finite ** 2))),
        "max_abs": float(np.max(np.abs(finite))),
        "median_abs": float(np.median(np.abs(finite))),
    }


def validation_caution(statistics: dict, campaign_name: str) -> str | None:
    """Return a caution when the residual RMS of a validation exceeds ``VALIDATION_RMS_LIMIT``, else None."""
    rms = statistics.get("rms")
    if rms is None or rms <= VALIDATION_RMS_LIMIT:
        return None
    return (
        f"Caution: at the validated posterior samples the surrogate chi2 differs from the true chi2 by "
        f"rms {rms:.3g} (limit {VALIDATION_RMS_LIMIT:g}), so the posterior, best fit and intervals of this "
        f"model version may be biased. The validation points join the next training set; run more "
        f"steps (`campaign run {campaign_name}`), then sample and validate again."
    )


def validate_campaign(fit, n: int = 50, *, chain_id: int | None = None, seed: int | None = None,
                      workers: int | None = None, backend: str = "numba") -> dict:
    """Evaluate the true likelihood at ``n`` posterior samples and at the best fit, and store the residuals.

    Args:
        fit: An open :class:`campaign.api.Campaign`.
        n: Posterior samples to evaluate, drawn without replacement.
        chain_id: The chain to draw from; the latest finished chain when None.
        seed: Seed of the draw; the campaign's seed when None.
        workers: Evaluation processes, see :func:`campaign.evaluation.evaluate_pending`.
        backend: Compiled predictor of the surrogate chi2.

    Returns:
        The validation id, point ids, residual statistics and the best-fit residual.
    """
    from campaign.evaluation import check_evaluable, evaluate_pending
    from campaign.surrogate.compiled import compile_surrogate
    from campaign.surrogate.registry import load_model

    if n < 1:
        raise ConfigError(f"n: give at least 1 sample to validate, got {n}")
    check_evaluable(fit)
    space = fit.space
    with fit.store.transaction() as session:
        chain = find_chain(session, fit.id, chain_id)
        if chain.model_version_id is None:
            raise ConfigError(f"the model version of chain {chain.id} was deleted; sample a new chain")
        version = session.get(models.ModelVersion, chain.model_version_id)
        _, _, samples, _ = load_samples(session, chain.id, space.dim)
        best = session.scalar(sa.select(models.BestFit).where(models.BestFit.model_version_id == version.id))
        version_row, model = load_model(session, fit.id, space, version.version)
        chain_id = chain.id
    if len(samples) == 0:
        raise ConfigError(f"chain {chain_id} has no stored samples; let `campaign sample` finish first")

    rng = np.random.default_rng(fit.settings.seed if seed is None else seed)
    x = samples[rng.choice(len(samples), size=min(n, len(samples)), replace=False)]
    if best is not None:
        x = np.vstack([x, [best.params[name] for name in space.names]])
    surrogate = compile_surrogate(model, backend, threads=fit.settings.threads)
    predicted = surrogate.chi2(x)

    with fit.store.transaction() as session:
        campaign_row = session.get(models.Campaign, fit.id)
        point_ids = insert_points(session, campaign_row, x, origin="validation")
    logger.info("validating chain %d with %d points (ids %d-%d)", chain_id, len(point_ids), point_ids[0], point_ids[-1])
    evaluate_pending(fit, workers=workers)

    true_chi2 = _chi2_of(fit, point_ids)
    statistics = residual_statistics(true_chi2, predicted)
    if best is not None:
        statistics["best_fit_residual"] = float(true_chi2[-1] - predicted[-1])
        statistics["best_fit_chi2"] = float(true_chi2[-1])
    with fit.store.transaction() as session:
        row = models.Validation(
            campaign_id=fit.id, model_version_id=version_row.id, chain_id=chain_id, point_ids=point_ids,
            surrogate_chi2=[float(v) for v in predicted], statistics=statistics,
        )
        session.add(row)
        session.flush()
        validation_id = row.id
    logger.info("validation %d: rms residual %s over %d points", validation_id, statistics["rms"], statistics["n_finite"])
    return {"validation_id": validation_id, "chain_id": chain_id, "model_version": version_row.version,
            "point_ids": point_ids, "true_chi2": true_chi2.tolist(), "surrogate_chi2": predicted.tolist(),
            "statistics": statistics}


def _chi2_of(fit, point_ids: list[int]) -> np.ndarray:
    """Return the chi2 of points in the order of ``point_ids``; NaN where not evaluated."""
    table = models.Point.__table__
    with fit.store.transaction() as session:
        rows = session.execute(
            sa.select(table.c.id, table.c.status, table.c.chi2).where(table.c.id.in_(point_ids))
        ).all()
    by_id = {row.id: (row.chi2 if row.status == "done" and row.chi2 is not None else np.nan) for row in rows}
    return np.array([by_id.get(i, np.nan) for i in point_ids], dtype=float)
