"""Creating, checking and upgrading the database schema with Alembic.

Every command calls :func:`ensure_schema`: it creates the schema in an empty
database, and stops with a :class:`~campaign.errors.SchemaError` on a
database whose schema is older or newer than this code.
"""

from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from campaign.errors import SchemaError
from campaign.store.models import Base

__all__ = [
    "VERSION_TABLE", "alembic_config", "current_revision", "head_revision",
    "upgrade", "ensure_schema", "include_object",
]

logger = logging.getLogger(__name__)

VERSION_TABLE = "campaign_alembic_version"
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
# Key of the PostgreSQL advisory lock held while migrating ("campaign" in ASCII).
MIGRATION_LOCK_KEY = 0x63616D706169676E


def alembic_config() -> Config:
    """Build an Alembic configuration pointing at the bundled migrations."""
    if not MIGRATIONS_DIR.is_dir():
        raise SchemaError(
            f"migrations not found at {MIGRATIONS_DIR}; install campaign from its "
            "source tree with `pip install -e .`"
        )
    from alembic.config import Config  # Alembic is imported on use, to keep --help fast

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    """Return the newest revision of the bundled migrations."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def known_revisions() -> list[str]:
    """Return all bundled revisions, oldest first."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def current_revision(connection: Connection | Engine) -> str | None:
    """Return the database's schema revision, or None when it has none."""
    if isinstance(connection, Engine):
        with connection.connect() as conn:
            return current_revision(conn)
    from alembic.runtime.migration import MigrationContext

    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Upgrade the schema to ``revision`` and return ``(before, after)``.

    Concurrent upgrades queue: on PostgreSQL behind a transaction-level
    advisory lock, on SQLite behind ``BEGIN IMMEDIATE``. The one that comes
    second finds the schema current and does nothing.
    """
    config = alembic_config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))
        before = current_revision(connection)
        _check_known(before)
        config.attributes["connection"] = connection
        from alembic import command

        command.upgrade(config, revision)
        after = current_revision(connection)
    if before != after:
        logger.info("upgraded schema from %s to %s", before or "empty", after)
    return before, after


def ensure_schema(engine: Engine) -> None:
    """Create the schema in an empty database, or check that it is current.

    Raises:
        SchemaError: The schema is out of date (run ``campaign db upgrade``),
            newer than this code, or the tables exist without a version.
    """
    with engine.connect() as connection:
        current = current_revision(connection)
        ours = set(Base.metadata.tables) & set(sa.inspect(connection).get_table_names())
    head = head_revision()
    if current == head:
        return
    if current is None:
        if ours:
            raise SchemaError(
                f"the database has campaign tables ({', '.join(sorted(ours))}) but no "
                f"{VERSION_TABLE} table; it was not made by campaign's migrations"
            )
        logger.info("creating the campaign schema in an empty database")
        upgrade(engine)
        return
    _check_known(current)
    raise SchemaError(
        f"the database schema is at revision {current}, older than this version of "
        f"campaign ({head}); run `campaign db upgrade` to migrate it"
    )


def _check_known(revision: str | None) -> None:
    if revision is not None and revision not in known_revisions():
        raise SchemaError(
            f"the database schema is at revision {revision}, which this version of "
            "campaign does not know; it was made by a newer campaign, so upgrade "
            "campaign (pip install -U) instead"
        )


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    """Limit schema comparisons to campaign's own tables, ignoring other tools' tables."""
    if type_ == "table":
        return name in Base.metadata.tables
    return True
