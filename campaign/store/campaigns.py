"""Queries on campaigns: create, find, list and describe."""

from __future__ import annotations

import getpass
import os
import socket

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from campaign.config import CampaignSpec, LikelihoodRef, Settings
from campaign.errors import ConfigError, ConflictError, NotFoundError
from campaign.space import Parameter as SpaceParameter
from campaign.space import ParameterSpace
from campaign.store import models
from campaign.store.engine import safe_url
from campaign.store.views import create_views, drop_views, view_suffix

__all__ = [
    "current_user", "current_host", "insert_campaign", "find_campaign", "list_campaigns", "spec_of",
    "status_counts", "best_chi2", "definition_changes", "update_campaign",
]


def current_user() -> str:
    """Return the user recorded on campaigns and points (``$CAMPAIGN_USER`` overrides the login name)."""
    name = os.environ.get("CAMPAIGN_USER")
    if name:
        return name
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def current_host() -> str:
    return socket.gethostname()


def insert_campaign(session: Session, spec: CampaignSpec) -> models.Campaign:
    """Insert a validated campaign with its parameters and SQL views.

    Raises:
        ConflictError: A campaign with this name, or with a name that maps to
            the same SQL view names, exists.
    """
    suffix = view_suffix(spec.name)
    clash = session.scalar(
        sa.select(models.Campaign.name).where(
            (models.Campaign.name == spec.name) | (models.Campaign.view_suffix == suffix)
        )
    )
    if clash == spec.name:
        raise ConflictError(
            f"a campaign named {spec.name!r} exists already; choose another name, "
            f"or inspect it with `campaign show {spec.name}`"
        )
    if clash is not None:
        raise ConflictError(
            f"the name {spec.name!r} gives the same SQL view names (points_{suffix}) as the "
            f"existing campaign {clash!r}; choose a name that differs in more than case or punctuation"
        )

    row = models.Campaign(
        name=spec.name,
        view_suffix=suffix,
        description=spec.description,
        likelihood=spec.likelihood.to_dict(),
        likelihood_version=spec.likelihood.version,
        settings=spec.settings.to_dict(),
        created_by=current_user(),
        created_host=current_host(),
        parameters=[
            models.Parameter(position=i, name=p.name, low=p.low, high=p.high, scale=p.scale, prior=p.prior)
            for i, p in enumerate(spec.space.parameters)
        ],
    )
    session.add(row)
    session.flush()
    create_views(session.connection(), row.id, suffix, list(spec.space.names))
    return row


def find_campaign(session: Session, name: str) -> models.Campaign:
    """Return the campaign called ``name``.

    Raises:
        NotFoundError: No such campaign; the message lists the existing ones.
    """
    row = session.scalar(
        sa.select(models.Campaign)
        .where(models.Campaign.name == name)
        .options(selectinload(models.Campaign.parameters))
    )
    if row is None:
        names = session.scalars(sa.select(models.Campaign.name).order_by(models.Campaign.name).limit(20)).all()
        known = ", ".join(names) if names else "none yet; create one with `campaign create`"
        where = safe_url(session.get_bind().url)
        raise NotFoundError(f"campaign {name!r} not found in {where}; existing campaigns: {known}")
    return row


def list_campaigns(session: Session) -> list[dict]:
    """Summarize every campaign: name, dimension, point counts, best chi2, creator."""
    counts = dict(
        session.execute(
            sa.select(models.Point.campaign_id, sa.func.count()).group_by(models.Point.campaign_id)
        ).all()
    )
    dims = dict(
        session.execute(
            sa.select(models.Parameter.campaign_id, sa.func.count()).group_by(models.Parameter.campaign_id)
        ).all()
    )
    rows = session.scalars(sa.select(models.Campaign).order_by(models.Campaign.name)).all()
    return [
        {
            "name": row.name,
            "dim": dims.get(row.id, 0),
            "points": counts.get(row.id, 0),
            "best_chi2": best_chi2(session, row.id, row.likelihood_version),
            "created_by": row.created_by,
            "created_at": row.created_at,
            "description": row.description,
        }
        for row in rows
    ]


def spec_of(row: models.Campaign) -> CampaignSpec:
    """Rebuild the validated definition of a stored campaign."""
    space = ParameterSpace(
        [SpaceParameter(name=p.name, low=p.low, high=p.high, scale=p.scale, prior=p.prior) for p in row.parameters]
    )
    return CampaignSpec(
        name=row.name,
        description=row.description,
        space=space,
        likelihood=LikelihoodRef.from_dict(row.likelihood),
        settings=Settings.from_dict(row.settings),
    )


def status_counts(session: Session, campaign_id: int) -> dict[str, int]:
    """Count a campaign's points by status; every status appears."""
    rows = session.execute(
        sa.select(models.Point.status, sa.func.count())
        .where(models.Point.campaign_id == campaign_id)
        .group_by(models.Point.status)
    ).all()
    counts = {status: 0 for status in models.POINT_STATUSES}
    counts.update(dict(rows))
    return counts


def best_chi2(session: Session, campaign_id: int, likelihood_version: str | None = None) -> float | None:
    """Return the lowest finite chi2 of a campaign's evaluated points, or None.

    With ``likelihood_version``, only points evaluated with that version count.
    """
    chi2 = models.Point.chi2
    # NaN sorts above every number on both backends, so these bounds exclude it.
    finite = (chi2 < float("inf")) & (chi2 > float("-inf"))
    condition = (models.Point.campaign_id == campaign_id) & (models.Point.status == "done") & finite
    if likelihood_version is not None:
        condition &= models.Point.likelihood_version == likelihood_version
    return session.scalar(sa.select(sa.func.min(chi2)).where(condition))


def definition_changes(old: CampaignSpec, new: CampaignSpec) -> dict[str, list[str]]:
    """Compare two definitions of one campaign, section by section.

    Returns:
        A mapping from ``"parameters"``, ``"likelihood"``, ``"settings"`` and
        ``"description"`` to readable difference lines; sections without
        differences are left out.
    """
    changes = {}
    space_lines = old.space.diff(new.space)
    if space_lines:
        changes["parameters"] = space_lines
    for section, before, after in (
        ("likelihood", old.likelihood.to_dict(), new.likelihood.to_dict()),
        ("settings", old.settings.to_dict(), new.settings.to_dict()),
    ):
        lines = [f"~ {key}: {before.get(key)!r} -> {after.get(key)!r}"
                 for key in sorted(before.keys() | after.keys()) if before.get(key) != after.get(key)]
        if lines:
            changes[section] = lines
    if old.description != new.description:
        changes["description"] = [f"~ {old.description!r} -> {new.description!r}"]
    return changes


def update_campaign(session: Session, row: models.Campaign, new: CampaignSpec, *, force: bool = False) -> dict[str, list[str]]:
    """Replace a stored campaign's definition and return the changes made.

    Settings and the description may always change. Bounds, scales, priors
    and the likelihood (reference or version) may change only while the
    campaign has no points, or with ``force``. Points of an older likelihood
    version stay stored but no longer count as evaluations of this campaign.
    The parameter names and their order never change once points exist,
    because every stored point is a vector in that order.

    Raises:
        ConfigError: The new definition renames the campaign.
        ConflictError: A guarded change with points present and no ``force``.
    """
    old = spec_of(row)
    if new.name != old.name:
        raise ConfigError(f"name: the file defines {new.name!r}, not {old.name!r}; a campaign cannot be renamed")
    changes = definition_changes(old, new)
    n_points = session.scalar(sa.select(sa.func.count()).where(models.Point.campaign_id == row.id))
    guarded = {section: lines for section, lines in changes.items() if section in ("parameters", "likelihood")}
    if n_points and guarded:
        _reject_guarded_change(old, new, guarded, n_points, force)

    row.description = new.description
    row.settings = new.settings.to_dict()
    row.likelihood = new.likelihood.to_dict()
    row.likelihood_version = new.likelihood.version
    for parameter, spec in zip(row.parameters, new.space.parameters):
        parameter.low, parameter.high = spec.low, spec.high
        parameter.scale, parameter.prior = spec.scale, spec.prior
    if old.space.names != new.space.names:
        _replace_parameters(session, row, new)
    return changes


def _reject_guarded_change(old: CampaignSpec, new: CampaignSpec, guarded: dict, n_points: int, force: bool) -> None:
    diff = "\n".join(f"  {line}" for lines in guarded.values() for line in lines)
    if old.space.names != new.space.names:
        raise ConflictError(
            f"campaign {old.name!r} has {n_points} points stored as vectors of "
            f"({', '.join(old.space.names)}); adding, removing, renaming or reordering parameters "
            f"would make them meaningless. Create a new campaign instead. Changes:\n{diff}"
        )
    if not force:
        raise ConflictError(
            f"campaign {old.name!r} has {n_points} points; changing its parameter space or likelihood "
            f"would mix them with results of a different fit. Pass --force (force=True in Python) if "
            f"that is intended. Changes:\n{diff}"
        )


def _replace_parameters(session: Session, row: models.Campaign, new: CampaignSpec) -> None:
    """Replace the parameter rows and views of a campaign that has no points."""
    row.parameters.clear()
    session.flush()
    row.parameters.extend(
        models.Parameter(position=i, name=p.name, low=p.low, high=p.high, scale=p.scale, prior=p.prior)
        for i, p in enumerate(new.space.parameters)
    )
    session.flush()
    drop_views(session.connection(), row.view_suffix)
    create_views(session.connection(), row.id, row.view_suffix, list(new.space.names))
