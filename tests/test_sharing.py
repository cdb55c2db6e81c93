"""Two users on one PostgreSQL database, each in a process of their own."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, drop_postgresql_schema, postgresql_schema_url

# Inserts points with chi2 = a^2 + b^2 as the user in $CAMPAIGN_USER.
INSERT_POINTS = """
import sys
import numpy as np
from campaign import api
from campaign.store.campaigns import find_campaign
from campaign.store.points import insert_points

url, name, a = sys.argv[1], sys.argv[2], float(sys.argv[3])
fit = api.open_campaign(name, url)
x = np.array([[a, -1.0], [a, 1.0]])
with fit.store.transaction() as session:
    insert_points(session, find_campaign(session, name), x, "manual", chi2=(x ** 2).sum(axis=1))
"""


@pytest.fixture
def shared_url():
    url, schema = postgresql_schema_url()
    yield url
    drop_postgresql_schema(schema)


def run_as(user: str, *arguments: str) -> subprocess.CompletedProcess:
    environment = dict(os.environ, CAMPAIGN_USER=user)
    result = subprocess.run(
        [sys.executable, *arguments], cwd=REPO, env=environment, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result


def campaign_cli(user: str, url: str, *arguments: str) -> str:
    return run_as(user, "-m", "campaign", "--db", url, *arguments).stdout


def test_two_users_share_campaigns(shared_url):
    campaign_cli("alice", shared_url, "create", "bowl", "-p", "a:-5:5", "-p", "b:-5:5",
                 "-l", "tests/likelihoods/quadratic.py:chi2")
    run_as("alice", "-c", INSERT_POINTS, shared_url, "bowl", "1.0")

    listing = campaign_cli("bob", shared_url, "list")
    assert "bowl" in listing
    assert "alice" in listing
    run_as("bob", "-c", INSERT_POINTS, shared_url, "bowl", "2.0")

    rows = json.loads(campaign_cli(
        "alice", shared_url, "query", "bowl",
        "SELECT a, b, chi2, created_by, \"user\" FROM points ORDER BY a, b", "--format", "json",
    ))
    assert [(r["a"], r["b"]) for r in rows] == [(1.0, -1.0), (1.0, 1.0), (2.0, -1.0), (2.0, 1.0)]
    assert [r["chi2"] for r in rows] == [2.0, 2.0, 5.0, 5.0]
    assert [r["created_by"] for r in rows] == ["alice", "alice", "bob", "bob"]
    assert [r["user"] for r in rows] == ["alice", "alice", "bob", "bob"]

    creators = json.loads(campaign_cli(
        "bob", shared_url, "query", "SELECT name, created_by FROM campaigns", "--format", "json",
    ))
    assert creators == [{"name": "bowl", "created_by": "alice"}]

