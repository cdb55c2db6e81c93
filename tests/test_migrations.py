"""Alembic migrations on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner

from campaign import api
from campaign.cli import main
from campaign.config import parse_campaign
from campaign.errors import SchemaError
from campaign.store import Store
from campaign.store.models import Base
from campaign.store.schema import VERSION_TABLE, current_revision, ensure_schema, head_revision, include_object, upgrade

from tests.test_store import DEFINITION


def test_first_command_creates_schema(db_url):
    store = Store(db_url)

    assert current_revision(store.engine) == head_revision()
    assert set(Base.metadata.tables) <= set(sa.inspect(store.engine).get_table_names())


def test_migrations_match_models(db_url):
    engine = Store(db_url, check_schema=False).engine
    upgrade(engine)

    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"include_object": include_object, "compare_type": True}
        )
        differences = compare_metadata(context, Base.metadata)

    assert differences == []


def test_foreign_alembic_table_untouched(db_url):
    engine = Store(db_url, check_schema=False).engine
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
        connection.execute(sa.text("INSERT INTO alembic_version VALUES ('optuna_v3')"))

    upgrade(engine)

    with engine.connect() as connection:
        foreign = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
        ours = connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    assert foreign == ["optuna_v3"]
    assert ours == [head_revision()]


def test_upgrade_from_previous_revision_keeps_data(db_url, repo_cwd):
    engine = Store(db_url, check_schema=False).engine
    upgrade(engine, "0001")
    with engine.begin() as connection:
        connection.execute(sa.text(
            "INSERT INTO campaigns (name, view_suffix, description, likelihood, likelihood_version, "
            "settings, created_at, created_by, created_host) VALUES ('old', 'old', '', :like, '1', '{}', "
            "CURRENT_TIMESTAMP, 'alice', 'h')"
        ), {"like": json.dumps({"python": "tests/likelihoods/quadratic.py:chi2", "returns": "chi2", "version": "1"})})

    with pytest.raises(SchemaError, match="run `campaign db upgrade`"):
        ensure_schema(engine)
    before, after = upgrade(engine)

    assert (before, after) == ("0001", head_revision())
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT created_by FROM campaigns")).scalar_one() == "alice"
        assert connection.execute(sa.text("SELECT count(*) FROM model_versions")).scalar_one() == 0


def test_upgrade_is_idempotent(db_url):
    engine = Store(db_url).engine

    assert upgrade(engine) == (head_revision(), head_revision())


def test_newer_schema_rejected(db_url):
    engine = Store(db_url).engine
    with engine.begin() as connection:
        connection.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))

    with pytest.raises(SchemaError, match="newer campaign"):
        ensure_schema(engine)
    with pytest.raises(SchemaError, match="newer campaign"):
        upgrade(engine)


def test_cli_on_old_schema_says_upgrade(db_url):
    upgrade(Store(db_url, check_schema=False).engine, "0001")
    runner = CliRunner()

    listing = runner.invoke(main, ["--db", db_url, "list"])
    current = runner.invoke(main, ["--db", db_url, "db", "current"])
    upgraded = runner.invoke(main, ["--db", db_url, "db", "upgrade"])
    listing_after = runner.invoke(main, ["--db", db_url, "list"])

    assert listing.exit_code == 2
    assert "campaign db upgrade" in listing.output
    assert "Traceback" not in listing.output
    assert "revision 0001" in current.output
    assert f"this version of campaign expects {head_revision()}" in current.output
    assert upgraded.exit_code == 0
    assert f"upgraded from 0001 to {head_revision()}" in upgraded.output
    assert listing_after.exit_code == 0


def test_tables_without_version_rejected(sqlite_url):
    engine = Store(sqlite_url, check_schema=False).engine
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE campaigns (id INTEGER PRIMARY KEY)"))

    with pytest.raises(SchemaError, match="no campaign_alembic_version table"):
        ensure_schema(engine)


def test_concurrent_upgrades_queue(db_url):
    environment = {**os.environ, "CAMPAIGN_DATABASE_URL": db_url}
    command = [sys.executable, "-m", "campaign", "db", "upgrade"]

    processes = [subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for _ in range(4)]
    outputs = [p.communicate(timeout=120)[0] for p in processes]

    assert [p.returncode for p in processes] == [0, 0, 0, 0], outputs
    assert sum("upgraded from empty" in o for o in outputs) == 1, outputs
    assert current_revision(Store(db_url, check_schema=False).engine) == head_revision()


def test_campaign_survives_upgrade_path(db_url, repo_cwd):
    fit = api.create_campaign(parse_campaign(DEFINITION), db_url)

    assert api.open_campaign(fit.name, db_url).space.names == ("alpha", "m_a")
