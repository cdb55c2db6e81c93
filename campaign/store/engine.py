"""Database URLs, engines and transactions.

SQLite connections use WAL mode, foreign keys, a busy timeout, and start
every transaction with ``BEGIN IMMEDIATE`` so that concurrent writers queue
for the lock instead of failing halfway through a transaction.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from campaign.errors import ConfigError

__all__ = ["resolve_url", "safe_url", "create_engine", "transaction", "database_clock", "DEFAULT_URL", "URL_ENV"]

logger = logging.getLogger(__name__)

URL_ENV = "CAMPAIGN_DATABASE_URL"
DEFAULT_URL = "sqlite:///campaign.db"
SQLITE_BUSY_TIMEOUT_S = 60.0


def resolve_url(url: str | None = None) -> str:
    """Pick the database URL: the argument, else ``$CAMPAIGN_DATABASE_URL``, else ``sqlite:///campaign.db``.

    ``postgresql://`` and ``postgres://`` URLs are routed through psycopg 3.
    """
    url = url or os.environ.get(URL_ENV) or DEFAULT_URL
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError:
        raise ConfigError(
            f"invalid database URL {url!r}; expected e.g. sqlite:///campaign.db "
            "or postgresql://user@host/dbname"
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"unsupported database {safe_url(parsed)!r}; campaign supports sqlite:/// and postgresql:// URLs"
        )
    return parsed.render_as_string(hide_password=False)


def safe_url(url: str | URL) -> str:
    """Render a URL with its password masked, for logs and messages."""
    if isinstance(url, str):
        try:
            url = make_url(url)
        except sa.exc.ArgumentError:
            return "<invalid URL>"
    return url.render_as_string(hide_password=True)


def create_engine(url: str | None = None, *, read_only: bool = False) -> Engine:
    """Create an engine for ``url`` (resolved with :func:`resolve_url`).

    Args:
        url: Database URL; see :func:`resolve_url`.
        read_only: On SQLite, start transactions with a plain ``BEGIN`` and
            set ``PRAGMA query_only``. On PostgreSQL, every transaction is
            ``READ ONLY``.
    """
    url = resolve_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = sa.create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
            poolclass=sa.pool.NullPool if read_only else None,
        )
        _configure_sqlite(engine, read_only)
    else:
        engine = sa.create_engine(
            url,
            pool_pre_ping=True,
            connect_args={"application_name": "campaign"},
        )
        if read_only:
            engine = engine.execution_options(postgresql_readonly=True)
    logger.debug("opened database %s", safe_url(parsed))
    return engine


def _configure_sqlite(engine: Engine, read_only: bool) -> None:
    is_memory = engine.url.database in (None, "", ":memory:")

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy's begin event below emit BEGIN, instead of pysqlite's implicit one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not is_memory and not read_only:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        if read_only:
            cursor.execute("PRAGMA query_only=ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection):
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


@contextlib.contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """Open a session, commit on success and roll back on any error."""
    factory = sessionmaker(engine, expire_on_commit=False)
    with factory() as session:
        with session.begin():
            yield session


def database_clock(dialect_name: str) -> sa.ColumnElement[float]:
    """Return an SQL expression for the database's current time in epoch seconds."""
    if dialect_name == "postgresql":
        return sa.func.extract("epoch", sa.func.clock_timestamp())
    return sa.literal_column("((julianday('now') - 2440587.5) * 86400.0)")
