"""Only allowed likelihoods run on this machine."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from campaign import api
from campaign.cli import main
from campaign.config import parse_campaign
from campaign.errors import ConfigError
from campaign.evaluation import add_design, evaluate_pending
from campaign.trust import allow_list_path, is_allowed, reference_key

from tests.test_store import DEFINITION


def test_creator_allows_its_campaign(sqlite_url, repo_cwd):
    fit = api.create_campaign(parse_campaign(DEFINITION), sqlite_url)

    assert is_allowed(fit.spec.likelihood)
    assert reference_key(fit.spec.likelihood) == f"python:{repo_cwd}/tests/likelihoods/quadratic.py:chi2"


def test_other_machine_rejects_until_allowed(sqlite_url, repo_cwd, tmp_path, monkeypatch):
    fit = api.create_campaign(parse_campaign(DEFINITION), sqlite_url)
    add_design(fit, 2)
    monkeypatch.setenv("CAMPAIGN_CONFIG_DIR", str(tmp_path / "collaborator"))

    with pytest.raises(ConfigError, match="campaign allow toy-2d"):
        evaluate_pending(fit, workers=1)
    assert fit.status_counts()["pending"] == 2

    allowed = CliRunner().invoke(main, ["--db", sqlite_url, "allow", "toy-2d"])
    summary = evaluate_pending(fit, workers=1)

    assert allowed.exit_code == 0
    assert "Allowed on this machine" in allowed.output
    assert summary.done == 2


def test_worker_cli_rejects_unallowed(sqlite_url, repo_cwd, tmp_path, monkeypatch):
    api.create_campaign(parse_campaign(DEFINITION), sqlite_url)
    monkeypatch.setenv("CAMPAIGN_CONFIG_DIR", str(tmp_path / "collaborator"))

    result = CliRunner().invoke(main, ["--db", sqlite_url, "worker", "toy-2d", "--max-points", "1"])

    assert result.exit_code == 2
    assert "has not allowed" in result.output


def test_same_file_name_elsewhere_not_allowed(sqlite_url, repo_cwd, tmp_path, monkeypatch):
    fit = api.create_campaign(parse_campaign(DEFINITION), sqlite_url)
    monkeypatch.chdir(tmp_path)

    assert not is_allowed(fit.spec.likelihood)


def test_allow_list_is_json_of_keys(sqlite_url, repo_cwd):
    fit = api.create_campaign(parse_campaign(DEFINITION), sqlite_url)

    stored = json.loads(allow_list_path().read_text())

    assert stored == [reference_key(fit.spec.likelihood)]


def test_corrupt_allow_list_reported(sqlite_url, repo_cwd):
    fit = api.create_campaign(parse_campaign(DEFINITION), sqlite_url)
    allow_list_path().write_text("{not json")

    with pytest.raises(ConfigError, match="fix or delete the file"):
        is_allowed(fit.spec.likelihood)


def _table_counts(fit) -> dict[str, int]:
    import sqlalchemy as sa

    from campaign.store import models

    with fit.store.transaction() as session:
        return {
            table.__tablename__: session.scalar(sa.select(sa.func.count()).select_from(table))
            for table in (models.Point, models.Step, models.ModelVersion, models.CampaignLock)
        }


@pytest.mark.parametrize("command", [["step", "toy-2d"], ["run", "toy-2d", "--steps", "2"]])
def test_rejected_step_writes_nothing(sqlite_url, repo_cwd, tmp_path, monkeypatch, command):
    fit = api.create_campaign(parse_campaign(DEFINITION), sqlite_url)
    before = _table_counts(fit)
    monkeypatch.setenv("CAMPAIGN_CONFIG_DIR", str(tmp_path / "collaborator"))

    outcome = CliRunner().invoke(main, ["--db", sqlite_url, *command])

    assert outcome.exit_code == 2
    assert "campaign allow toy-2d" in outcome.output
    assert _table_counts(fit) == before
