"""The store on SQLite and PostgreSQL: campaigns, points, exact chi2, SQL views."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sqlalchemy as sa

from campaign import api
from campaign.config import parse_campaign
from campaign.errors import ConfigError, ConflictError, NotFoundError
from campaign.space import RESERVED_NAMES
from campaign.store import models
from campaign.store.engine import resolve_url, safe_url
from campaign.store.points import insert_points, load_points
from campaign.store.views import POINT_VIEW_COLUMNS

DEFINITION = {
    "name": "toy-2d",
    "description": "two parameters",
    "parameters": {"alpha": {"low": -1, "high": 1}, "m_a": {"low": 0.01, "high": 5, "scale": "log"}},
    "likelihood": {"python": "tests/likelihoods/quadratic.py:chi2", "version": "7"},
}


@pytest.fixture
def fit(db_url, repo_cwd):
    return api.create_campaign(parse_campaign(DEFINITION), db_url)


def test_create_and_open(fit, db_url):
    opened = api.open_campaign("toy-2d", db_url)

    assert opened.id == fit.id
    assert opened.space == fit.space
    assert opened.spec.likelihood.version == "7"
    assert opened.describe()["counts"] == {"pending": 0, "running": 0, "done": 0, "failed": 0}


def test_duplicate_name_rejected(fit, db_url):
    with pytest.raises(ConflictError, match="exists already"):
        api.create_campaign(parse_campaign(DEFINITION), db_url)


def test_view_name_clash_rejected(fit, db_url):
    clash = parse_campaign({**DEFINITION, "name": "Toy_2D"})

    with pytest.raises(ConflictError, match="points_toy_2d"):
        api.create_campaign(clash, db_url)

    assert [c["name"] for c in api.campaigns(db_url)] == ["toy-2d"]


def test_unknown_campaign_lists_existing(fit, db_url):
    with pytest.raises(NotFoundError, match="existing campaigns: toy-2d"):
        api.open_campaign("nope", db_url)


def test_chi2_special_values_exact(fit):
    values = [1.5, math.inf, -math.inf, math.nan, 0.0, 1e300]
    x = np.column_stack([np.linspace(-0.5, 0.5, 6), np.linspace(0.1, 4, 6)])
    with fit.store.transaction() as session:
        row = session.get(models.Campaign, fit.id)
        ids = insert_points(session, row, x, "manual", chi2=values, executor="import")

    with fit.store.transaction() as session:
        stored = [session.get(models.Point, i).chi2 for i in ids]
    arrays = fit.arrays()

    assert stored[:3] == [1.5, math.inf, -math.inf]
    assert math.isnan(stored[3])
    assert stored[4:] == [0.0, 1e300]
    assert arrays.chi2[:3].tolist() == [1.5, math.inf, -math.inf]
    assert math.isnan(arrays.chi2[3])
    np.testing.assert_array_equal(arrays.x, x)


def test_nan_excluded_from_sql_comparisons(fit):
    x = np.array([[0.1, 1.0], [0.2, 1.0], [0.3, 1.0]])
    with fit.store.transaction() as session:
        insert_points(session, session.get(models.Campaign, fit.id), x, "manual", chi2=[3.0, math.nan, 30.0])

    with fit.store.engine.connect() as connection:
        low = connection.execute(sa.text("SELECT alpha FROM points_toy_2d WHERE chi2 < 20")).scalars().all()

    assert low == [0.1]
    assert fit.describe()["best_chi2"] == 3.0


def test_view_has_parameter_columns(fit):
    x = np.array([[0.25, 2.5]])
    with fit.store.transaction() as session:
        insert_points(session, session.get(models.Campaign, fit.id), x, "manual", chi2=[4.0])

    with fit.store.engine.connect() as connection:
        row = connection.execute(
            sa.text('SELECT alpha, m_a, chi2, status, origin, "user" FROM points_toy_2d')
        ).one()

    assert row.alpha == 0.25
    assert row.m_a == 2.5
    assert (row.chi2, row.status, row.origin) == (4.0, "done", "manual")


def test_view_columns_are_reserved_names():
    columns = {c.split(" AS ")[-1].strip('"') for c in POINT_VIEW_COLUMNS}

    assert columns <= RESERVED_NAMES


def test_pending_points_load_with_nan_chi2(fit):
    with fit.store.transaction() as session:
        insert_points(session, session.get(models.Campaign, fit.id), np.array([[0.0, 1.0]]), "initial")

    with fit.store.engine.connect() as connection:
        pending = load_points(connection, fit.id, 2, ("pending",))

    assert len(pending) == 1
    assert math.isnan(pending.chi2[0])
    assert len(fit.arrays()) == 0


def test_points_frame_has_parameter_columns(fit):
    with fit.store.transaction() as session:
        insert_points(session, session.get(models.Campaign, fit.id), np.array([[0.5, 3.0]]), "manual", chi2=[2.0])

    frame = fit.points()

    assert list(frame.columns[:2]) == ["alpha", "m_a"]
    assert frame.iloc[0]["chi2"] == 2.0
    assert frame.iloc[0]["alpha"] == 0.5


def test_safe_url_masks_password():
    assert "s3cret" not in safe_url("postgresql://alice:s3cret@127.0.0.1:1/db")
    assert "alice" in safe_url("postgresql://alice:s3cret@127.0.0.1:1/db")


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_plain_postgresql_url_uses_psycopg(scheme):
    assert resolve_url(f"{scheme}://u@127.0.0.1/db").startswith("postgresql+psycopg://")


def test_url_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CAMPAIGN_DATABASE_URL", f"sqlite:///{tmp_path}/env.db")

    assert resolve_url() == f"sqlite:///{tmp_path}/env.db"
    assert resolve_url("sqlite:///flag.db") == "sqlite:///flag.db"


def test_default_url_without_environment(monkeypatch):
    monkeypatch.delenv("CAMPAIGN_DATABASE_URL", raising=False)

    assert resolve_url() == "sqlite:///campaign.db"


def test_unsupported_url_rejected():
    with pytest.raises(ConfigError, match="unsupported database"):
        resolve_url("mysql://u@127.0.0.1/db")
