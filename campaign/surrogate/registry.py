"""Model versions in the database: register a trained surrogate, load one back.

Boosters are stored as XGBoost UBJSON bytes (never pickle), one row per
booster in table ``boosters`` with the role ``classifier``, ``regressor`` or
``committee`` (and the member index for the committee).
"""

from __future__ import annotations

import hashlib
import logging

import sqlalchemy as sa
import xgboost
from sqlalchemy.orm import Session, selectinload

from campaign.errors import NotFoundError
from campaign.space import ParameterSpace
from campaign.store import models
from campaign.store.campaigns import current_user
from campaign.surrogate.model import SurrogateModel

__all__ = ["register_model_version", "load_model", "list_model_versions", "booster_bytes", "booster_from_bytes"]

logger = logging.getLogger(__name__)

BOOSTER_FORMAT = "ubj"
MAX_VERSION_ATTEMPTS = 5


def booster_bytes(booster: xgboost.Booster) -> bytes:
    """Serialize a booster as UBJSON bytes."""
    return bytes(booster.save_raw(raw_format=BOOSTER_FORMAT))


def booster_from_bytes(data: bytes) -> xgboost.Booster:
    """Load a booster from UBJSON or JSON bytes."""
    booster = xgboost.Booster()
    booster.load_model(bytearray(data))
    return booster


def register_model_version(
    session: Session,
    campaign_id: int,
    model: SurrogateModel,
    *,
    hyperparameters: dict,
    metrics: dict,
    n_train: int,
    n_low: int,
    last_point_id: int | None,
    parent_id: int | None,
    training_mode: str,
    training_seconds: float,
) -> models.ModelVersion:
    """Store a trained surrogate as the campaign's next model version.

    Version numbers are 1, 2, 3, ... per campaign. Concurrent registrations
    wait for each other on a row lock of the campaign (PostgreSQL). If two
    still pick the same number, the loser's insert fails on the unique
    constraint ``uq_model_versions_campaign_id_version`` inside a savepoint,
    and it retries with the next number.

    Args:
        session: An open transaction; the caller commits.
        model: The trained surrogate.
        hyperparameters: ``{"classifier": {...}, "regressor": {...}, ...}``.
        metrics: Cross-validated metrics, see :func:`campaign.surrogate.training.cross_validate`.
            The model's ``low_margin_threshold`` is stored with them.
        n_train, n_low: Training points, and those in the low region.
        last_point_id: Highest point id in the training set.
        parent_id: Id (not number) of the version this one was derived from.
        training_mode: ``"tune"``, ``"refit"`` or ``"continue"``.
        training_seconds: Wall time of the final fit.
    """
    # Registrations of one campaign queue on its row until the holder commits, so the next
    # number is read after the previous one is visible. SQLite ignores FOR UPDATE and
    # serializes writers by its database lock instead.
    session.execute(sa.select(models.Campaign.id).where(models.Campaign.id == campaign_id).with_for_update())
    for attempt in range(1, MAX_VERSION_ATTEMPTS + 1):
        number = _next_version(session, campaign_id)
        row = models.ModelVersion(
            campaign_id=campaign_id, version=number, parent_id=parent_id, training_mode=training_mode,
            hyperparameters=hyperparameters,
            metrics={**metrics, "low_margin_threshold": model.low_margin_threshold}, n_train=n_train, n_low=n_low,
            last_point_id=last_point_id, chi2_min=model.chi2_min, delta_chi2=model.delta_chi2,
            training_seconds=training_seconds, created_by=current_user(), boosters=_booster_rows(model),
        )
        try:
            with session.begin_nested():
                session.add(row)
                session.flush()
        except sa.exc.IntegrityError as exc:
            if "uq_model_versions_campaign_id_version" not in str(exc.orig) and "model_versions.version" not in str(exc.orig):
                raise
            logger.info("model version %d of campaign %d was taken by another process (attempt %d); retrying",
                        number, campaign_id, attempt)
            continue
        logger.info("registered model version %d of campaign %d (%s, %d points)", number, campaign_id, training_mode, n_train)
        return row
    raise RuntimeError(f"could not allocate a model version number for campaign {campaign_id} "
                       f"after {MAX_VERSION_ATTEMPTS} attempts")


def _next_version(session: Session, campaign_id: int) -> int:
    current = session.scalar(
        sa.select(sa.func.max(models.ModelVersion.version)).where(models.ModelVersion.campaign_id == campaign_id)
    )
    return (current or 0) + 1


def _booster_rows(model: SurrogateModel) -> list[models.Booster]:
    roles = [("classifier", 0, model.classifier), ("regressor", 0, model.regressor)]
    roles += [("committee", i, member) for i, member in enumerate(model.committee)]
    rows = []
    for role, member, booster in roles:
        data = booster_bytes(booster)
        rows.append(models.Booster(role=role, member=member, format=BOOSTER_FORMAT,
                                   sha256=hashlib.sha256(data).hexdigest(), data=data))
    return rows


def list_model_versions(session: Session, campaign_id: int) -> list[models.ModelVersion]:
    """Return a campaign's model versions, oldest first, without their boosters."""
    return list(session.scalars(
        sa.select(models.ModelVersion).where(models.ModelVersion.campaign_id == campaign_id)
        .order_by(models.ModelVersion.version)
    ))


def load_model(
    session: Session, campaign_id: int, space: ParameterSpace, version: int | None = None
) -> tuple[models.ModelVersion, SurrogateModel]:
    """Load a model version and rebuild its surrogate.

    Args:
        version: Version number; the newest when None.

    Raises:
        NotFoundError: The campaign has no model versions, or not this one;
            the message lists the existing versions.
    """
    query = (
        sa.select(models.ModelVersion)
        .where(models.ModelVersion.campaign_id == campaign_id)
        .options(selectinload(models.ModelVersion.boosters))
    )
    if version is None:
        query = query.order_by(models.ModelVersion.version.desc()).limit(1)
    else:
        query = query.where(models.ModelVersion.version == version)
    row = session.scalar(query)
    if row is None:
        numbers = [v.version for v in list_model_versions(session, campaign_id)]
        if not numbers:
            name = session.get(models.Campaign, campaign_id).name
            raise NotFoundError(f"campaign {name!r} has no model versions yet; train one with `campaign step {name}`")
        raise NotFoundError(
            f"model version {version} not found; existing versions: {_ranges(numbers)}"
        )

    by_role: dict[str, list] = {"classifier": [], "regressor": [], "committee": []}
    for booster in sorted(row.boosters, key=lambda b: (b.role, b.member)):
        by_role[booster.role].append(booster_from_bytes(booster.data))
    model = SurrogateModel(
        space=space, classifier=by_role["classifier"][0], regressor=by_role["regressor"][0],
        committee=by_role["committee"], chi2_min=row.chi2_min, delta_chi2=row.delta_chi2,
        # Versions trained before the threshold was calibrated classify low at log-odds 0.
        low_margin_threshold=float((row.metrics or {}).get("low_margin_threshold", 0.0)),
    )
    return row, model


def _ranges(numbers: list[int]) -> str:
    """Write sorted integers compactly, e.g. ``1-4, 7``."""
    runs: list[list[int]] = []
    for number in numbers:
        if runs and number == runs[-1][1] + 1:
            runs[-1][1] = number
        else:
            runs.append([number, number])
    return ", ".join(f"{low}-{high}" if high > low else str(low) for low, high in runs)
