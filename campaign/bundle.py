"""Export a campaign to a self-contained SQLite bundle, and import one.

A bundle is an SQLite database made by the same migrations as any campaign
database. It contains one campaign with its points, model versions and
boosters, steps, chains and samples, and all summaries, so ``sqlite3`` and
pandas can read it directly. Stepper locks are not exported.

Importing copies the rows in one transaction and maps every id to a new one.
When the target campaign exists, rows that are already there are matched
instead of copied:

- a point by its key (sha256 of its parameter values and likelihood
  version). A pending or failed target point takes the bundle's result when
  the bundle's point is done;
- a model version by the sha256 of its boosters;
- a step by its number and start time. A new step whose number is taken
  gets the next free number, and its points follow it;
- a chain by its seed, walker count and creation time;
- a validation by its creation time.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from campaign.config import validate_name
from campaign.errors import ConfigError, ConflictError, SchemaError
from campaign.store import Store, models
from campaign.store.campaigns import find_campaign, insert_campaign, spec_of
from campaign.store.engine import create_engine, safe_url
from campaign.store.points import point_key
from campaign.store.schema import VERSION_TABLE, current_revision, head_revision, known_revisions, upgrade

__all__ = ["export_bundle", "import_bundle", "CampaignData", "ImportSummary"]

logger = logging.getLogger(__name__)

SQLITE_HEADER = b"SQLite format 3\x00"
#: Point columns that carry an evaluation result, taken over by a merge.
RESULT_COLUMNS = (
    "status", "chi2", "outputs", "error", "attempts", "seed", "executor", "host", "pid", "user",
    "started_at", "finished_at", "eval_seconds",
)


@dataclass
class CampaignData:
    """All rows of one campaign, as column mappings keyed by table."""

    campaign: dict
    parameters: list[dict]
    tables: dict[str, list[dict]] = field(default_factory=dict)

    def count(self, table: str) -> int:
        return len(self.tables.get(table, []))


@dataclass
class ImportSummary:
    """How many rows an import added, and how many it matched to existing rows."""

    campaign: str
    created: bool
    added: dict[str, int] = field(default_factory=dict)
    matched: dict[str, int] = field(default_factory=dict)


def export_bundle(name: str, path: str | Path, url: str | None = None, *, overwrite: bool = False) -> CampaignData:
    """Write campaign ``name`` to a new SQLite bundle at ``path``.

    The bundle is written to a temporary file beside ``path`` and renamed
    when complete, so a failed export leaves no partial file.

    Returns:
        The exported rows.

    Raises:
        NotFoundError: No campaign has this name.
        ConflictError: ``path`` exists and ``overwrite`` is false.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise ConflictError(f"{str(path)!r} exists already; choose another file or pass --force to replace it")
    if not path.parent.is_dir():
        raise ConfigError(f"cannot write {str(path)!r}: the folder {str(path.parent)!r} does not exist")

    store = Store(url)
    with store.transaction() as session:
        row = find_campaign(session, name)
        data = read_campaign(session.connection(), row.id)

    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    os.remove(temporary)
    try:
        bundle = Store(f"sqlite:///{temporary}")
        with bundle.transaction() as session:
            write_campaign(session, data, into=None)
        bundle.dispose()
        _make_single_file(temporary)
        os.replace(temporary, path)
    except BaseException:
        for leftover in (temporary, temporary + "-wal", temporary + "-shm"):
            if os.path.exists(leftover):
                os.remove(leftover)
        raise
    logger.info("exported campaign %s from %s to %s (%d points)", name, safe_url(store.url), path, data.count("points"))
    store.dispose()
    return data


def import_bundle(path: str | Path, url: str | None = None, into: str | None = None) -> ImportSummary:
    """Load a bundle into a database in one transaction.

    Args:
        path: The bundle file written by :func:`export_bundle`.
        url: Target database URL.
        into: Campaign name in the target; defaults to the bundle's name.
            An existing campaign of that name is merged into.

    Raises:
        ConfigError: The file is missing, not a bundle, or corrupt.
        SchemaError: The bundle was written by a newer campaign.
        ConflictError: The target campaign's parameter space differs; the
            message lists the differences.
    """
    if into is not None:
        validate_name(into)
    data = read_bundle(path)
    store = Store(url)
    with store.transaction() as session:
        summary = write_campaign(session, data, into=into)
    logger.info(
        "imported %s into campaign %s in %s: added %s, matched %s",
        path, summary.campaign, safe_url(store.url), summary.added, summary.matched,
    )
    store.dispose()
    return summary


def read_bundle(path: str | Path) -> CampaignData:
    """Check a bundle file and read its campaign.

    A bundle from an older schema revision is upgraded in a temporary copy;
    the file itself is never written.

    Raises:
        ConfigError: The file is missing, not a campaign bundle, or corrupt.
        SchemaError: The bundle's schema revision is newer than this campaign.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"bundle file {str(path)!r} not found")
    with path.open("rb") as handle:
        if handle.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
            raise ConfigError(f"{str(path)!r} is not a campaign bundle: it is not an SQLite database")

    with tempfile.TemporaryDirectory(prefix="campaign-bundle-") as folder:
        copy = Path(folder) / "bundle.db"
        shutil.copyfile(path, copy)
        engine = create_engine(f"sqlite:///{copy}")
        try:
            _check_bundle(engine, path)
            with engine.connect() as connection:
                ids = connection.execute(sa.select(models.Campaign.id)).scalars().all()
                if len(ids) != 1:
                    raise ConfigError(f"{str(path)!r} contains {len(ids)} campaigns; a bundle contains exactly one")
                return read_campaign(connection, ids[0])
        except sa.exc.DatabaseError as exc:
            raise ConfigError(f"{str(path)!r} is a corrupt campaign bundle ({str(exc.orig).splitlines()[0]}); export it again") from exc
        finally:
            engine.dispose()


def _check_bundle(engine: sa.Engine, path: Path) -> None:
    with engine.connect() as connection:
        problems = connection.exec_driver_sql("PRAGMA quick_check").scalars().all()
        if problems != ["ok"]:
            raise ConfigError(f"{str(path)!r} is a corrupt campaign bundle ({'; '.join(problems[:3])}); export it again")
        revision = current_revision(connection)
    if revision is None:
        raise ConfigError(f"{str(path)!r} is not a campaign bundle: it has no {VERSION_TABLE} table")
    if revision not in known_revisions():
        raise SchemaError(
            f"{str(path)!r} was written by a newer campaign (schema revision {revision}, this campaign "
            f"knows up to {head_revision()}); upgrade campaign (pip install -U) to import it"
        )
    if revision != head_revision():
        logger.info("upgrading a copy of bundle %s from revision %s", path, revision)
        upgrade(engine)


def read_campaign(connection: Connection, campaign_id: int) -> CampaignData:
    """Read every row that belongs to one campaign."""
    campaign = _select(connection, models.Campaign, models.Campaign.id == campaign_id)[0]
    parameters = _select(connection, models.Parameter, models.Parameter.campaign_id == campaign_id)
    parameters.sort(key=lambda p: p["position"])

    model_ids = sa.select(models.ModelVersion.id).where(models.ModelVersion.campaign_id == campaign_id)
    chain_ids = sa.select(models.Chain.id).where(models.Chain.campaign_id == campaign_id)
    tables = {
        "points": _select(connection, models.Point, models.Point.campaign_id == campaign_id),
        "model_versions": _select(connection, models.ModelVersion, models.ModelVersion.campaign_id == campaign_id),
        "boosters": _select(connection, models.Booster, models.Booster.model_version_id.in_(model_ids)),
        "steps": _select(connection, models.Step, models.Step.campaign_id == campaign_id),
        "chains": _select(connection, models.Chain, models.Chain.campaign_id == campaign_id),
        "chain_samples": _select(connection, models.ChainSample, models.ChainSample.chain_id.in_(chain_ids)),
        "shap_summaries": _select(connection, models.ShapSummary, models.ShapSummary.model_version_id.in_(model_ids)),
        "posterior_summaries": _select(
            connection, models.PosteriorSummary, models.PosteriorSummary.chain_id.in_(chain_ids)
        ),
        "profiles": _select(connection, models.Profile, models.Profile.model_version_id.in_(model_ids)),
        "best_fits": _select(connection, models.BestFit, models.BestFit.model_version_id.in_(model_ids)),
        "validations": _select(connection, models.Validation, models.Validation.campaign_id == campaign_id),
    }
    return CampaignData(campaign=campaign, parameters=parameters, tables=tables)


def _select(connection: Connection, model: type, condition) -> list[dict]:
    table = model.__table__
    rows = connection.execute(sa.select(table).where(condition).order_by(*table.primary_key.columns))
    return [{key: _as_utc(value) for key, value in row.items()} for row in rows.mappings()]


def _as_utc(value: Any) -> Any:
    """Give datetimes an explicit UTC zone; SQLite returns them without one."""
    if not isinstance(value, datetime):
        return value
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def write_campaign(session: Session, data: CampaignData, into: str | None) -> ImportSummary:
    """Insert or merge a campaign's rows into the session's database.

    Raises:
        ConflictError: The existing campaign's parameter space differs.
        ConfigError: A point's stored values do not match the parameter count.
    """
    name = into or data.campaign["name"]
    target, created = _target_campaign(session, data, name)
    summary = ImportSummary(campaign=name, created=created)
    writer = _Writer(session.connection(), target, data, summary)
    writer.write()
    return summary


def _target_campaign(session: Session, data: CampaignData, name: str) -> tuple[models.Campaign, bool]:
    incoming = _campaign_row(data, name)
    spec = spec_of(incoming)
    existing = session.scalar(sa.select(models.Campaign).where(models.Campaign.name == name))
    if existing is not None:
        differences = spec_of(existing).space.diff(spec.space)
        if differences:
            raise ConflictError(
                f"cannot merge into campaign {name!r}: its parameter space differs from the bundle's "
                "(- only in the target, + only in the bundle, ~ changed):\n  " + "\n  ".join(differences)
                + "\nImport into a new campaign with --into NEW_NAME instead"
            )
        return existing, False

    row = insert_campaign(session, spec)
    row.created_at = incoming.created_at
    row.created_by = incoming.created_by
    row.created_host = incoming.created_host
    row.likelihood = incoming.likelihood
    row.likelihood_version = incoming.likelihood_version
    session.flush()
    return row, True


def _campaign_row(data: CampaignData, name: str) -> models.Campaign:
    """Build a transient campaign row from bundle data, for :func:`spec_of`."""
    values = {k: v for k, v in data.campaign.items() if k != "id"}
    values["name"] = name
    parameters = [
        models.Parameter(**{k: v for k, v in p.items() if k not in ("id", "campaign_id")}) for p in data.parameters
    ]
    return models.Campaign(**values, parameters=parameters)


class _Writer:
    """Copy one campaign's rows into a target campaign, mapping ids."""

    def __init__(self, connection: Connection, target: models.Campaign, data: CampaignData, summary: ImportSummary):
        self.connection = connection
        self.target_id = target.id
        self.dim = len(data.parameters)
        self.data = data
        self.summary = summary
        self.point_ids: dict[int, int] = {}
        self.model_ids: dict[int, int] = {}
        self.new_models: set[int] = set()
        self.chain_ids: dict[int, int] = {}
        self.new_chains: set[int] = set()
        self.step_numbers: dict[int, int] = {}

    def write(self) -> None:
        self._map_steps()
        self._write_points()
        self._write_model_versions()
        self._write_steps()
        self._write_chains()
        self._write_model_summaries()
        self._write_validations()

    def _rows(self, table: str) -> list[dict]:
        return self.data.tables.get(table, [])

    def _count(self, table: str, added: int, matched: int = 0) -> None:
        self.summary.added[table] = self.summary.added.get(table, 0) + added
        self.summary.matched[table] = self.summary.matched.get(table, 0) + matched

    def _insert(self, model: type, rows: list[dict]) -> list[int]:
        if not rows:
            return []
        table = model.__table__
        result = self.connection.execute(table.insert().returning(table.c.id, sort_by_parameter_order=True), rows)
        return [row_id for (row_id,) in result]

    def _existing(self, model: type, *columns) -> list[sa.Row]:
        table = model.__table__
        query = sa.select(table.c.id, *(table.c[c] for c in columns)).where(table.c.campaign_id == self.target_id)
        return self.connection.execute(query).all()

    def _map_steps(self) -> None:
        existing = {number: _as_utc(started) for _, number, started in self._existing(models.Step, "number", "started_at")}
        next_number = max(existing, default=0) + 1
        for row in sorted(self._rows("steps"), key=lambda r: r["number"]):
            number = row["number"]
            if number in existing and existing[number] != row["started_at"]:
                self.step_numbers[number] = next_number
                next_number += 1
            else:
                self.step_numbers[number] = number

    def _write_points(self) -> None:
        existing = {key: (point_id, status) for point_id, key, status in self._existing(models.Point, "key", "status")}
        new_rows, new_old_ids, matched = [], [], 0
        for row in self._rows("points"):
            if len(row["x"]) != 8 * self.dim:
                raise ConfigError(
                    f"point {row['id']} has {len(row['x'])} bytes of parameter values, expected {8 * self.dim} "
                    f"for {self.dim} parameters, so the bundle is corrupt; export it again"
                )
            key = point_key(row["x"], row["likelihood_version"])
            if key in existing:
                target_id, status = existing[key]
                self.point_ids[row["id"]] = target_id
                self._merge_result(target_id, status, row)
                matched += 1
                continue
            values = {k: v for k, v in row.items() if k != "id"}
            values.update(campaign_id=self.target_id, key=key)
            if values["step"] is not None:
                values["step"] = self.step_numbers.get(values["step"], values["step"])
            if values["status"] == "running":
                # The claim belongs to a worker of the source database.
                values.update(status="pending", worker=None, lease_expires_at=None)
            existing[key] = (None, values["status"])
            new_rows.append(values)
            new_old_ids.append(row["id"])
        for old_id, new_id in zip(new_old_ids, self._insert(models.Point, new_rows)):
            self.point_ids[old_id] = new_id
        self._count("points", len(new_rows), matched)

    def _merge_result(self, target_id: int | None, status: str, row: dict) -> None:
        if target_id is None or status not in ("pending", "failed") or row["status"] != "done":
            return
        table = models.Point.__table__
        self.connection.execute(
            table.update().where(table.c.id == target_id, table.c.status == status)
            .values({column: row[column] for column in RESULT_COLUMNS} | {"worker": None, "lease_expires_at": None})
        )

    def _write_model_versions(self) -> None:
        existing_models = self._existing(models.ModelVersion, "version")
        fingerprints = self._target_fingerprints([model_id for model_id, _ in existing_models])
        used_versions = {version for _, version in existing_models}
        next_version = max(used_versions, default=0) + 1
        incoming = self._fingerprints(self._rows("boosters"))

        matched = 0
        for row in sorted(self._rows("model_versions"), key=lambda r: r["version"]):
            fingerprint = incoming.get(row["id"], frozenset())
            if fingerprint and fingerprint in fingerprints:
                self.model_ids[row["id"]] = fingerprints[fingerprint]
                matched += 1
                continue
            values = {k: v for k, v in row.items() if k != "id"}
            values["campaign_id"] = self.target_id
            values["parent_id"] = self.model_ids.get(row["parent_id"]) if row["parent_id"] is not None else None
            values["last_point_id"] = self.point_ids.get(row["last_point_id"])
            if values["version"] in used_versions:
                values["version"] = next_version
            used_versions.add(values["version"])
            next_version = max(next_version, values["version"] + 1)
            (new_id,) = self._insert(models.ModelVersion, [values])
            self.model_ids[row["id"]] = new_id
            self.new_models.add(row["id"])
        self._count("model_versions", len(self.new_models), matched)

        boosters = [
            {k: v for k, v in b.items() if k != "id"} | {"model_version_id": self.model_ids[b["model_version_id"]]}
            for b in self._rows("boosters") if b["model_version_id"] in self.new_models
        ]
        self._insert(models.Booster, boosters)
        self._count("boosters", len(boosters))

    @staticmethod
    def _fingerprints(boosters: list[dict]) -> dict[int, frozenset]:
        members: dict[int, set] = {}
        for booster in boosters:
            members.setdefault(booster["model_version_id"], set()).add(
                (booster["role"], booster["member"], booster["sha256"])
            )
        return {model_id: frozenset(items) for model_id, items in members.items()}

    def _target_fingerprints(self, model_ids: list[int]) -> dict[frozenset, int]:
        if not model_ids:
            return {}
        table = models.Booster.__table__
        rows = self.connection.execute(
            sa.select(table.c.model_version_id, table.c.role, table.c.member, table.c.sha256)
            .where(table.c.model_version_id.in_(model_ids))
        ).mappings().all()
        return {fingerprint: model_id for model_id, fingerprint in self._fingerprints([dict(r) for r in rows]).items()}

    def _write_steps(self) -> None:
        existing = {number for _, number in self._existing(models.Step, "number")}
        rows = []
        for row in self._rows("steps"):
            number = self.step_numbers[row["number"]]
            if number in existing:
                continue
            values = {k: v for k, v in row.items() if k != "id"}
            values.update(campaign_id=self.target_id, number=number)
            values["model_version_id"] = self.model_ids.get(row["model_version_id"])
            rows.append(values)
        self._insert(models.Step, rows)
        self._count("steps", len(rows), len(self._rows("steps")) - len(rows))

    def _write_chains(self) -> None:
        existing = {
            (seed, walkers, _as_utc(created)): chain_id
            for chain_id, seed, walkers, created in self._existing(models.Chain, "seed", "n_walkers", "created_at")
        }
        for row in self._rows("chains"):
            identity = (row["seed"], row["n_walkers"], row["created_at"])
            if identity in existing:
                self.chain_ids[row["id"]] = existing[identity]
                continue
            values = {k: v for k, v in row.items() if k != "id"}
            values["campaign_id"] = self.target_id
            values["model_version_id"] = self.model_ids.get(row["model_version_id"])
            (self.chain_ids[row["id"]],) = self._insert(models.Chain, [values])
            self.new_chains.add(row["id"])
        self._count("chains", len(self.new_chains), len(self._rows("chains")) - len(self.new_chains))

        for table, model in (("chain_samples", models.ChainSample), ("posterior_summaries", models.PosteriorSummary)):
            rows = [
                {k: v for k, v in r.items() if k != "id"} | {"chain_id": self.chain_ids[r["chain_id"]]}
                for r in self._rows(table) if r["chain_id"] in self.new_chains
            ]
            self._insert(model, rows)
            self._count(table, len(rows))

    def _write_model_summaries(self) -> None:
        for table, model in (
            ("shap_summaries", models.ShapSummary), ("profiles", models.Profile), ("best_fits", models.BestFit)
        ):
            rows = [
                {k: v for k, v in r.items() if k != "id"} | {"model_version_id": self.model_ids[r["model_version_id"]]}
                for r in self._rows(table) if r["model_version_id"] in self.new_models
            ]
            self._insert(model, rows)
            self._count(table, len(rows))

    def _write_validations(self) -> None:
        existing = {_as_utc(created) for _, created in self._existing(models.Validation, "created_at")}
        rows = []
        for row in self._rows("validations"):
            if row["created_at"] in existing:
                continue
            values = {k: v for k, v in row.items() if k != "id"}
            values["campaign_id"] = self.target_id
            values["model_version_id"] = self.model_ids.get(row["model_version_id"])
            values["chain_id"] = self.chain_ids.get(row["chain_id"])
            values["point_ids"] = [self.point_ids.get(i) for i in row["point_ids"]]
            rows.append(values)
        self._insert(models.Validation, rows)
        self._count("validations", len(rows), len(self._rows("validations")) - len(rows))


def _make_single_file(path: str) -> None:
    """Switch a finished SQLite file from WAL to a rollback journal, so the bundle is one file."""
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA journal_mode=DELETE")
    finally:
        connection.close()
