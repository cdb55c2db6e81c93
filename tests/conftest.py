"""Shared fixtures: every store test runs on SQLite and on PostgreSQL.

PostgreSQL comes from ``$CAMPAIGN_TEST_POSTGRESQL_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``). Each test gets a schema of
its own, so tests cannot see each other's data. When the server cannot be
reached, PostgreSQL tests are skipped, except under ``CI=true``, where that
is a failure.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
POSTGRESQL_URL = os.environ.get("CAMPAIGN_TEST_POSTGRESQL_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

_postgresql_error: str | None = None


def _postgresql_reachable() -> str | None:
    """Return None when PostgreSQL accepts a connection, else the reason it does not."""
    global _postgresql_error
    if _postgresql_error is None:
        try:
            engine = sa.create_engine(POSTGRESQL_URL, connect_args={"connect_timeout": 5})
            with engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
            engine.dispose()
            _postgresql_error = ""
        except sa.exc.OperationalError as exc:
            _postgresql_error = str(exc.orig).strip().splitlines()[0]
    return _postgresql_error or None


def postgresql_schema_url() -> tuple[str, str]:
    """Create a fresh schema and return (URL whose search_path is that schema, schema name)."""
    error = _postgresql_reachable()
    if error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {POSTGRESQL_URL} is unreachable in CI: {error}")
        pytest.skip(f"PostgreSQL unreachable ({error}); set CAMPAIGN_TEST_POSTGRESQL_URL")
    schema = "t_" + uuid.uuid4().hex[:12]
    engine = sa.create_engine(POSTGRESQL_URL)
    with engine.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    separator = "&" if "?" in POSTGRESQL_URL else "?"
    return f"{POSTGRESQL_URL}{separator}options={quote(f'-csearch_path={schema}')}", schema


def drop_postgresql_schema(schema: str) -> None:
    engine = sa.create_engine(POSTGRESQL_URL)
    with engine.begin() as connection:
        connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """An empty database on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'campaign.db'}"
        return
    url, schema = postgresql_schema_url()
    yield url
    drop_postgresql_schema(schema)


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'campaign.db'}"


@pytest.fixture
def repo_cwd(monkeypatch):
    """Run in the repository root, where example paths resolve."""
    monkeypatch.chdir(REPO)
    return REPO


@pytest.fixture(autouse=True)
def config_dir(tmp_path_factory, monkeypatch):
    """Keep each test's likelihood allow-list out of the user's home directory."""
    path = tmp_path_factory.mktemp("config")
    monkeypatch.setenv("CAMPAIGN_CONFIG_DIR", str(path))
    return path
