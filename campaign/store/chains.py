"""Queries on chains and the summaries derived from them: samples, posterior, best fit, profiles."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from campaign.errors import NotFoundError
from campaign.store import models
from campaign.store.points import encode_x

__all__ = [
    "find_chain", "insert_samples", "load_samples", "replace_posterior_summaries",
    "replace_best_fit", "replace_profiles", "latest_results",
]


def find_chain(session: Session, campaign_id: int, chain_id: int | None = None) -> models.Chain:
    """Return a campaign's chain by id, or when ``chain_id`` is None its latest finished chain.

    Without a finished chain, the latest chain is returned: an interrupted
    or running chain has no stored samples yet.

    Raises:
        NotFoundError: No such chain in this campaign.
    """
    query = sa.select(models.Chain).where(models.Chain.campaign_id == campaign_id)
    if chain_id is None:
        finished_first = sa.case((models.Chain.status == "done", 1), else_=0).desc()
        row = session.scalar(query.order_by(finished_first, models.Chain.id.desc()).limit(1))
        if row is None:
            name = session.get(models.Campaign, campaign_id).name
            raise NotFoundError(f"campaign {name!r} has no chains yet; run `campaign sample {name}`")
        return row
    row = session.scalar(query.where(models.Chain.id == chain_id))
    if row is None:
        ids = session.scalars(sa.select(models.Chain.id).where(models.Chain.campaign_id == campaign_id)).all()
        raise NotFoundError(f"chain {chain_id} not found in this campaign; its chains: {list(ids) or 'none'}")
    return row


def insert_samples(
    session: Session, chain_id: int, names: tuple[str, ...], samples: np.ndarray, log_prob: np.ndarray, first_step: int, thin: int
) -> int:
    """Replace a chain's stored samples with thinned samples after burn-in.

    Args:
        samples: Positions, shape (n_kept_steps, n_walkers, dim).
        log_prob: Log-probabilities, shape (n_kept_steps, n_walkers).
        first_step: Step index of ``samples[0]`` (the burn-in).
        thin: Steps between kept samples.

    Returns:
        The number of stored samples.
    """
    table = models.ChainSample.__table__
    session.execute(table.delete().where(table.c.chain_id == chain_id))
    rows = [
        {
            "chain_id": chain_id,
            "iteration": first_step + k * thin,
            "walker": w,
            "x": encode_x(samples[k, w]),
            "params": dict(zip(names, map(float, samples[k, w]))),
            "log_prob": float(log_prob[k, w]),
        }
        for k in range(samples.shape[0])
        for w in range(samples.shape[1])
    ]
    if rows:
        session.execute(table.insert(), rows)
    return len(rows)


def load_samples(session: Session, chain_id: int, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Load a chain's stored samples ordered by iteration and walker.

    Returns:
        iteration (n,), walker (n,), x (n, dim) and log_prob (n,).
    """
    table = models.ChainSample.__table__
    rows = session.execute(
        sa.select(table.c.iteration, table.c.walker, table.c.x, table.c.log_prob)
        .where(table.c.chain_id == chain_id)
        .order_by(table.c.iteration, table.c.walker)
    ).all()
    if not rows:
        return np.empty(0, int), np.empty(0, int), np.empty((0, dim)), np.empty(0)
    iteration, walker, xs, log_prob = zip(*rows)
    x = np.frombuffer(b"".join(xs), dtype="<f8").reshape(len(rows), dim).copy()
    return np.array(iteration), np.array(walker), x, np.array([float(v) for v in log_prob])


def replace_posterior_summaries(session: Session, chain_id: int, summaries: list[dict]) -> None:
    table = models.PosteriorSummary.__table__
    session.execute(table.delete().where(table.c.chain_id == chain_id))
    session.execute(table.insert(), [{"chain_id": chain_id, **row} for row in summaries])


def replace_best_fit(session: Session, model_version_id: int, params: dict, chi2: float) -> None:
    table = models.BestFit.__table__
    session.execute(table.delete().where(table.c.model_version_id == model_version_id))
    session.execute(table.insert().values(
        model_version_id=model_version_id, params=params, chi2=chi2, created_at=datetime.now(timezone.utc),
    ))


def replace_profiles(session: Session, model_version_id: int, profiles) -> None:
    """Store profile likelihoods (:class:`campaign.profile.ProfileResult`) of a model version, replacing old ones."""
    table = models.Profile.__table__
    session.execute(table.delete().where(table.c.model_version_id == model_version_id))
    rows = [
        {
            "model_version_id": model_version_id,
            "parameter": profile.parameter,
            "grid": [float(v) for v in profile.grid],
            "chi2": [float(v) for v in profile.chi2],
            "low_68": profile.interval_68[0],
            "high_68": profile.interval_68[1],
            "low_95": profile.interval_95[0],
            "high_95": profile.interval_95[1],
        }
        for profile in profiles
    ]
    if rows:
        session.execute(table.insert(), rows)


def latest_results(session: Session, campaign_id: int) -> dict:
    """Collect the results that ``campaign show`` prints; absent parts are None or empty.

    These are the latest finished chain (see :func:`find_chain`) with its
    posterior table, the best fit and profiles of its model version, the
    chains started after it that did not finish, and the latest validation.
    """
    try:
        chain = find_chain(session, campaign_id)
    except NotFoundError:
        chain = None
    result: dict = {"chain": None, "posterior": [], "best_fit": None, "profiles": [], "validation": None,
                    "unfinished": []}
    if chain is not None:
        result["unfinished"] = session.execute(
            sa.select(models.Chain.id, models.Chain.status, models.Chain.n_steps)
            .where(models.Chain.campaign_id == campaign_id, models.Chain.id > chain.id, models.Chain.status != "done")
            .order_by(models.Chain.id)
        ).all()
        version = session.get(models.ModelVersion, chain.model_version_id) if chain.model_version_id else None
        result["chain"] = {
            "id": chain.id, "status": chain.status, "model_version": version.version if version else None,
            "model_metrics": version.metrics if version else {},
            "n_walkers": chain.n_walkers, "n_steps": chain.n_steps, "acceptance_fraction": chain.acceptance_fraction,
            "tau": chain.tau, "converged": chain.converged, "burn_in": chain.burn_in, "thin": chain.thin,
        }
        result["posterior"] = [
            {c: getattr(row, c) for c in ("parameter", "mean", "std", "median", "q02_5", "q16", "q84", "q97_5")}
            for row in session.scalars(
                sa.select(models.PosteriorSummary).where(models.PosteriorSummary.chain_id == chain.id)
                .order_by(models.PosteriorSummary.id)
            )
        ]
        if chain.model_version_id is not None:
            best = session.scalar(sa.select(models.BestFit).where(models.BestFit.model_version_id == chain.model_version_id))
            result["best_fit"] = None if best is None else {"params": best.params, "chi2": best.chi2}
            result["profiles"] = [
                {c: getattr(row, c) for c in ("parameter", "low_68", "high_68", "low_95", "high_95")}
                for row in session.scalars(
                    sa.select(models.Profile).where(models.Profile.model_version_id == chain.model_version_id)
                    .order_by(models.Profile.id)
                )
            ]
    validation = session.scalar(
        sa.select(models.Validation).where(models.Validation.campaign_id == campaign_id)
        .order_by(models.Validation.id.desc()).limit(1)
    )
    if validation is not None:
        result["validation"] = {"id": validation.id, "chain_id": validation.chain_id, **validation.statistics}
    return result
