"""SHAP values of a model version's regressor, summarized and plotted.

XGBoost's ``pred_contribs`` and ``pred_interactions`` give exact tree SHAP
values (the same numbers as ``shap.TreeExplainer``, and faster). The
explained points are the campaign's evaluated points in the low region of
the model version, ``chi2 < chi2_min + delta_chi2``, in the unit-cube
features the regressor was trained on.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import sqlalchemy as sa
import xgboost

from campaign.errors import ConfigError
from campaign.store import models

__all__ = ["ShapValues", "shap_values", "explain_campaign", "write_plots"]

logger = logging.getLogger(__name__)


class ShapValues:
    """SHAP values of a set of points.

    Attributes:
        values: SHAP value per point and feature, shape (n, dim).
        base_value: Expected prediction; ``values.sum(1) + base_value`` is the prediction.
        interactions: SHAP interaction values, shape (n, dim, dim), or None.
        features: The explained features, shape (n, dim).
    """

    def __init__(self, values, base_value, interactions, features):
        self.values = values
        self.base_value = base_value
        self.interactions = interactions
        self.features = features

    def mean_abs(self, names) -> dict[str, float]:
        return dict(zip(names, map(float, np.abs(self.values).mean(axis=0))))

    def mean_abs_interactions(self, names) -> dict[str, float]:
        """Return mean |interaction| per pair ``"a:b"`` (a before b), counting both off-diagonal halves."""
        mean = np.abs(self.interactions).mean(axis=0)
        return {
            f"{names[i]}:{names[j]}": float(mean[i, j] + mean[j, i])
            for i in range(len(names)) for j in range(i + 1, len(names))
        }


def shap_values(booster: xgboost.Booster, features: np.ndarray, *, interactions: bool = True) -> ShapValues:
    """Compute exact tree SHAP values with XGBoost.

    Args:
        booster: A single-output booster.
        features: Rows to explain, shape (n, dim).
        interactions: Also compute interaction values (costs about dim times more).
    """
    matrix = xgboost.DMatrix(np.asarray(features, dtype=float))
    contributions = booster.predict(matrix, pred_contribs=True)
    interaction_values = booster.predict(matrix, pred_interactions=True)[:, :-1, :-1] if interactions else None
    base = float(contributions[0, -1]) if len(contributions) else 0.0
    return ShapValues(contributions[:, :-1].astype(float), base, interaction_values, np.asarray(features))


def explain_campaign(fit, version: int | None = None, plots: str | Path | None = None) -> dict:
    """Summarize SHAP values of a model version's regressor on the low-region points and store them.

    Args:
        fit: An open :class:`campaign.api.Campaign`.
        version: Model version number; the newest when None.
        plots: Directory for PNG plots; none are written when None.

    Returns:
        The stored summary: model version, n_points, base_value,
        mean_abs_shap, mean_abs_interaction, best_fit, seconds, and the plot paths.
    """
    from campaign.surrogate.registry import load_model

    space = fit.space
    with fit.store.transaction() as session:
        version_row, model = load_model(session, fit.id, space, version)
        best = session.scalar(sa.select(models.BestFit).where(models.BestFit.model_version_id == version_row.id))
        best_params = None if best is None else [best.params[name] for name in space.names]
    points = fit.arrays()
    with np.errstate(invalid="ignore"):
        low = np.isfinite(points.chi2) & (points.chi2 < model.chi2_min + model.delta_chi2)
    if not low.any():
        raise ConfigError(f"model version {version_row.version} has no evaluated points in its low region to explain")
    model.regressor.set_param({"nthread": fit.settings.threads})

    started = time.perf_counter()
    result = shap_values(model.regressor, space.to_unit(points.x[low]))
    seconds = time.perf_counter() - started
    best_fit = None
    if best_params is not None:
        explanation = shap_values(model.regressor, space.to_unit(np.array([best_params])), interactions=False)
        best_fit = {"params": dict(zip(space.names, best_params)), "base_value": explanation.base_value,
                    "shap": dict(zip(space.names, map(float, explanation.values[0])))}

    summary = {
        "model_version_id": version_row.id, "n_points": int(low.sum()), "base_value": result.base_value,
        "mean_abs_shap": result.mean_abs(space.names),
        "mean_abs_interaction": result.mean_abs_interactions(space.names),
        "best_fit": best_fit, "seconds": seconds,
    }
    with fit.store.transaction() as session:
        session.add(models.ShapSummary(**summary))
    logger.info("SHAP of model version %d on %d points in %.2f s", version_row.version, summary["n_points"], seconds)
    summary["model_version"] = version_row.version
    summary["plots"] = write_plots(fit, result, plots) if plots is not None else []
    return summary


def write_plots(fit, result: ShapValues, directory: str | Path) -> list[str]:
    """Write SHAP bar, beeswarm and interaction plots, and the latest finished chain's corner and tau plots, as PNG."""
    from campaign import plots

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    names = list(fit.space.names)
    paths = [
        plots.shap_bar(result, names, directory / "shap_bar.png"),
        plots.shap_beeswarm(result, names, directory / "shap_beeswarm.png"),
        plots.interaction_heatmap(result, names, directory / "shap_interactions.png"),
    ]
    paths += plots.chain_plots(fit, directory)
    return [str(p) for p in paths]
