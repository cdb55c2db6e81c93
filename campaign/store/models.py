"""SQLAlchemy models of the campaign store.

Parameter values are stored twice per point, written once by one function:
``x`` contains the float64 vector in parameter order (the fast path for
training, loaded with one ``numpy.frombuffer``), and ``params`` contains the
same values as JSON, from which each campaign's SQL views
(``points_<name>``, ``samples_<name>``) expose one column per parameter.
docs/schema.md explains the choice and the measurements behind it.
"""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from campaign.store.types import ExactFloat, Id, JSONType

__all__ = [
    "Base", "Campaign", "Parameter", "Point", "ModelVersion", "Booster", "Step",
    "CampaignLock", "Chain", "ChainSample", "ShapSummary", "PosteriorSummary",
    "Profile", "BestFit", "Validation", "POINT_STATUSES",
]

POINT_STATUSES = ("pending", "running", "done", "failed")

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class Campaign(Base):
    """A named fit: parameter space, likelihood reference and settings."""

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100), unique=True)
    view_suffix: Mapped[str] = mapped_column(sa.String(100), unique=True)
    description: Mapped[str] = mapped_column(sa.Text, default="")
    likelihood: Mapped[dict] = mapped_column(JSONType)
    likelihood_version: Mapped[str] = mapped_column(sa.String(100))
    settings: Mapped[dict] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    created_by: Mapped[str] = mapped_column(sa.String(200))
    created_host: Mapped[str] = mapped_column(sa.String(200))

    parameters: Mapped[list["Parameter"]] = relationship(
        order_by="Parameter.position", cascade="all, delete-orphan", passive_deletes=True
    )


class Parameter(Base):
    """One parameter of a campaign's space."""

    __tablename__ = "parameters"
    __table_args__ = (
        sa.UniqueConstraint("campaign_id", "name"),
        sa.UniqueConstraint("campaign_id", "position"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(Id, sa.ForeignKey("campaigns.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(sa.Integer)
    name: Mapped[str] = mapped_column(sa.String(100))
    low: Mapped[float] = mapped_column(sa.Double)
    high: Mapped[float] = mapped_column(sa.Double)
    scale: Mapped[str] = mapped_column(sa.String(16), default="linear")
    prior: Mapped[dict] = mapped_column(JSONType)


class Point(Base):
    """A parameter point, its status and, once evaluated, its chi2."""

    __tablename__ = "points"
    __table_args__ = (
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'done', 'failed')", name="status"
        ),
        sa.Index(None, "campaign_id", "status", "id"),
        sa.Index(None, "campaign_id", "key"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(Id, sa.ForeignKey("campaigns.id", ondelete="CASCADE"))
    # Identity of the parameter values: sha256 of x, so merges find duplicates.
    key: Mapped[str] = mapped_column(sa.String(64))
    x: Mapped[bytes] = mapped_column(sa.LargeBinary)
    params: Mapped[dict] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")
    origin: Mapped[str] = mapped_column(sa.String(32))
    step: Mapped[int | None] = mapped_column(sa.Integer)
    chi2: Mapped[float | None] = mapped_column(ExactFloat)
    outputs: Mapped[dict | None] = mapped_column(JSONType)
    error: Mapped[str | None] = mapped_column(sa.Text)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    likelihood_version: Mapped[str] = mapped_column(sa.String(100))
    seed: Mapped[int | None] = mapped_column(sa.BigInteger)
    # Claim of a running point: the worker and the lease end on the database clock,
    # in seconds since the epoch.
    worker: Mapped[str | None] = mapped_column(sa.String(200))
    lease_expires_at: Mapped[float | None] = mapped_column(sa.Double)
    executor: Mapped[str | None] = mapped_column(sa.String(16))
    host: Mapped[str | None] = mapped_column(sa.String(200))
    pid: Mapped[int | None] = mapped_column(sa.Integer)
    user: Mapped[str | None] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    created_by: Mapped[str | None] = mapped_column(sa.String(200))
    started_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    eval_seconds: Mapped[float | None] = mapped_column(sa.Double)


class ModelVersion(Base):
    """One trained surrogate: classifier, regressor and committee, with metrics."""

    __tablename__ = "model_versions"
    __table_args__ = (sa.UniqueConstraint("campaign_id", "version"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(Id, sa.ForeignKey("campaigns.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(sa.Integer)
    parent_id: Mapped[int | None] = mapped_column(Id, sa.ForeignKey("model_versions.id", ondelete="SET NULL"))
    training_mode: Mapped[str] = mapped_column(sa.String(16))
    hyperparameters: Mapped[dict] = mapped_column(JSONType)
    metrics: Mapped[dict] = mapped_column(JSONType)
    n_train: Mapped[int] = mapped_column(sa.Integer)
    n_low: Mapped[int] = mapped_column(sa.Integer)
    last_point_id: Mapped[int | None] = mapped_column(Id)
    chi2_min: Mapped[float | None] = mapped_column(ExactFloat)
    delta_chi2: Mapped[float] = mapped_column(sa.Double)
    training_seconds: Mapped[float] = mapped_column(sa.Double)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    created_by: Mapped[str | None] = mapped_column(sa.String(200))

    boosters: Mapped[list["Booster"]] = relationship(
        order_by="(Booster.role, Booster.member)", cascade="all, delete-orphan", passive_deletes=True
    )


class Booster(Base):
    """A serialized XGBoost booster of a model version (UBJSON bytes, never pickle)."""

    __tablename__ = "boosters"
    __table_args__ = (sa.UniqueConstraint("model_version_id", "role", "member"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    model_version_id: Mapped[int] = mapped_column(Id, sa.ForeignKey("model_versions.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(sa.String(16))
    member: Mapped[int] = mapped_column(sa.Integer, default=0)
    format: Mapped[str] = mapped_column(sa.String(8), default="ubj")
    sha256: Mapped[str] = mapped_column(sa.String(64))
    data: Mapped[bytes] = mapped_column(sa.LargeBinary)


class Step(Base):
    """One active-learning round and what it did."""

    __tablename__ = "steps"
    __table_args__ = (sa.UniqueConstraint("campaign_id", "number"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(Id, sa.ForeignKey("campaigns.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(sa.Integer)
    status: Mapped[str] = mapped_column(sa.String(16))
    phase: Mapped[str | None] = mapped_column(sa.String(32))
    model_version_id: Mapped[int | None] = mapped_column(Id, sa.ForeignKey("model_versions.id", ondelete="SET NULL"))
    strategy: Mapped[str | None] = mapped_column(sa.String(32))
    n_proposed: Mapped[int] = mapped_column(sa.Integer, default=0)
    n_evaluated: Mapped[int] = mapped_column(sa.Integer, default=0)
    n_failed: Mapped[int] = mapped_column(sa.Integer, default=0)
    best_chi2: Mapped[float | None] = mapped_column(ExactFloat)
    timings: Mapped[dict] = mapped_column(JSONType, default=dict)
    acquisition: Mapped[dict] = mapped_column(JSONType, default=dict)
    convergence: Mapped[dict] = mapped_column(JSONType, default=dict)
    host: Mapped[str | None] = mapped_column(sa.String(200))
    pid: Mapped[int | None] = mapped_column(sa.Integer)
    started_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


class CampaignLock(Base):
    """The single stepper of a campaign; stale when the lease has run out."""

    __tablename__ = "campaign_locks"

    campaign_id: Mapped[int] = mapped_column(Id, sa.ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True)
    holder: Mapped[str] = mapped_column(sa.String(200))
    host: Mapped[str] = mapped_column(sa.String(200))
    pid: Mapped[int] = mapped_column(sa.Integer)
    user: Mapped[str | None] = mapped_column(sa.String(200))
    acquired_at: Mapped[float] = mapped_column(sa.Double)
    lease_expires_at: Mapped[float] = mapped_column(sa.Double)


class Chain(Base):
    """An emcee run on a surrogate posterior."""

    __tablename__ = "chains"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(Id, sa.ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    model_version_id: Mapped[int | None] = mapped_column(Id, sa.ForeignKey("model_versions.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(sa.String(16))
    settings: Mapped[dict] = mapped_column(JSONType)
    seed: Mapped[int] = mapped_column(sa.BigInteger)
    n_walkers: Mapped[int] = mapped_column(sa.Integer)
    n_steps: Mapped[int] = mapped_column(sa.Integer, default=0)
    burn_in: Mapped[int | None] = mapped_column(sa.Integer)
    thin: Mapped[int | None] = mapped_column(sa.Integer)
    acceptance_fraction: Mapped[float | None] = mapped_column(sa.Double)
    tau: Mapped[list | None] = mapped_column(JSONType)
    tau_history: Mapped[list | None] = mapped_column(JSONType)
    converged: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    # Sampler state for resuming: last walker positions and random state.
    state: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    sampling_seconds: Mapped[float | None] = mapped_column(sa.Double)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    created_by: Mapped[str | None] = mapped_column(sa.String(200))
    finished_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


class ChainSample(Base):
    """One stored sample of a chain, after burn-in and thinning."""

    __tablename__ = "chain_samples"
    __table_args__ = (sa.Index(None, "chain_id", "iteration", "walker"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    chain_id: Mapped[int] = mapped_column(Id, sa.ForeignKey("chains.id", ondelete="CASCADE"))
    iteration: Mapped[int] = mapped_column(sa.Integer)
    walker: Mapped[int] = mapped_column(sa.Integer)
    x: Mapped[bytes] = mapped_column(sa.LargeBinary)
    params: Mapped[dict] = mapped_column(JSONType)
    log_prob: Mapped[float] = mapped_column(ExactFloat)


class ShapSummary(Base):
    """SHAP values of a model version's regressor, summarized."""

    __tablename__ = "shap_summaries"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    model_version_id: Mapped[int] = mapped_column(Id, sa.ForeignKey("model_versions.id", ondelete="CASCADE"), index=True)
    n_points: Mapped[int] = mapped_column(sa.Integer)
    base_value: Mapped[float] = mapped_column(sa.Double)
    mean_abs_shap: Mapped[dict] = mapped_column(JSONType)
    mean_abs_interaction: Mapped[dict] = mapped_column(JSONType)
    best_fit: Mapped[dict | None] = mapped_column(JSONType)
    seconds: Mapped[float | None] = mapped_column(sa.Double)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)


class PosteriorSummary(Base):
    """Marginal posterior statistics of one parameter in one chain."""

    __tablename__ = "posterior_summaries"
    __table_args__ = (sa.UniqueConstraint("chain_id", "parameter"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    chain_id: Mapped[int] = mapped_column(Id, sa.ForeignKey("chains.id", ondelete="CASCADE"))
    parameter: Mapped[str] = mapped_column(sa.String(100))
    mean: Mapped[float] = mapped_column(sa.Double)
    std: Mapped[float] = mapped_column(sa.Double)
    median: Mapped[float] = mapped_column(sa.Double)
    q02_5: Mapped[float] = mapped_column(sa.Double)
    q16: Mapped[float] = mapped_column(sa.Double)
    q84: Mapped[float] = mapped_column(sa.Double)
    q97_5: Mapped[float] = mapped_column(sa.Double)


class Profile(Base):
    """A 1-D profile likelihood of the surrogate and its Wilks intervals."""

    __tablename__ = "profiles"
    __table_args__ = (sa.UniqueConstraint("model_version_id", "parameter"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    model_version_id: Mapped[int] = mapped_column(Id, sa.ForeignKey("model_versions.id", ondelete="CASCADE"))
    parameter: Mapped[str] = mapped_column(sa.String(100))
    grid: Mapped[list] = mapped_column(JSONType)
    chi2: Mapped[list] = mapped_column(JSONType)
    low_68: Mapped[float | None] = mapped_column(sa.Double)
    high_68: Mapped[float | None] = mapped_column(sa.Double)
    low_95: Mapped[float | None] = mapped_column(sa.Double)
    high_95: Mapped[float | None] = mapped_column(sa.Double)


class BestFit(Base):
    """The surrogate's best-fit point of a model version."""

    __tablename__ = "best_fits"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    model_version_id: Mapped[int] = mapped_column(Id, sa.ForeignKey("model_versions.id", ondelete="CASCADE"), unique=True)
    params: Mapped[dict] = mapped_column(JSONType)
    chi2: Mapped[float] = mapped_column(ExactFloat)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)


class Validation(Base):
    """Residuals between surrogate and true chi2 at validation points."""

    __tablename__ = "validations"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(Id, sa.ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    model_version_id: Mapped[int | None] = mapped_column(Id, sa.ForeignKey("model_versions.id", ondelete="SET NULL"))
    chain_id: Mapped[int | None] = mapped_column(Id, sa.ForeignKey("chains.id", ondelete="SET NULL"))
    point_ids: Mapped[list] = mapped_column(JSONType)
    surrogate_chi2: Mapped[list] = mapped_column(JSONType)
    statistics: Mapped[dict] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
