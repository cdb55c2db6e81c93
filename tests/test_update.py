"""Changing a campaign's definition after it was created."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from campaign import api
from campaign.cli import main
from campaign.config import parse_campaign
from campaign.errors import ConflictError, NotFoundError
from campaign.store import models
from campaign.store.points import insert_points

from tests.test_store import DEFINITION


def changed(**sections):
    data = {key: (dict(value) if isinstance(value, dict) else value) for key, value in DEFINITION.items()}
    for key, value in sections.items():
        data[key] = value
    return parse_campaign(data)


def add_point(fit, chi2=1.0):
    with fit.store.transaction() as session:
        insert_points(session, session.get(models.Campaign, fit.id), np.array([[0.0, 1.0]]), "manual", chi2=[chi2])


@pytest.fixture
def fit(db_url, repo_cwd):
    return api.create_campaign(parse_campaign(DEFINITION), db_url)


def test_settings_change_with_points(fit, db_url):
    add_point(fit)

    updated, changes = api.update_campaign(changed(settings={"batch_size": 4}), db_url)

    assert updated.settings.batch_size == 4
    assert changes["settings"] == ["~ batch_size: 32 -> 4"]


def test_bounds_change_without_points(fit, db_url):
    parameters = {**DEFINITION["parameters"], "alpha": {"low": -2, "high": 2}}

    updated, changes = api.update_campaign(changed(parameters=parameters), db_url)

    assert updated.space.low.tolist()[0] == -2.0
    assert "parameters" in changes


def test_bounds_change_with_points_needs_force(fit, db_url):
    add_point(fit)
    parameters = {**DEFINITION["parameters"], "alpha": {"low": -2, "high": 2}}

    with pytest.raises(ConflictError, match="Pass --force") as info:
        api.update_campaign(changed(parameters=parameters), db_url)
    unchanged = api.open_campaign(fit.name, db_url)
    forced, _ = api.update_campaign(changed(parameters=parameters), db_url, force=True)

    assert "alpha" in str(info.value)
    assert unchanged.space.low.tolist()[0] == -1.0
    assert forced.space.low.tolist()[0] == -2.0


def test_version_change_hides_old_points(fit, db_url):
    add_point(fit, chi2=3.0)
    likelihood = {**DEFINITION["likelihood"], "version": "8"}

    with pytest.raises(ConflictError, match="'7' -> '8'"):
        api.update_campaign(changed(likelihood=likelihood), db_url)
    updated, _ = api.update_campaign(changed(likelihood=likelihood), db_url, force=True)

    assert len(updated.arrays()) == 0
    assert len(updated.arrays(all_versions=True)) == 1


def test_renaming_parameters_with_points_rejected(fit, db_url):
    add_point(fit)
    parameters = {"beta": DEFINITION["parameters"]["alpha"], "m_a": DEFINITION["parameters"]["m_a"]}

    with pytest.raises(ConflictError, match="Create a new campaign"):
        api.update_campaign(changed(parameters=parameters), db_url, force=True)


def test_renaming_parameters_without_points_updates_views(fit, db_url):
    parameters = {"beta": DEFINITION["parameters"]["alpha"], "m_a": DEFINITION["parameters"]["m_a"]}

    updated, _ = api.update_campaign(changed(parameters=parameters), db_url)
    add_point(updated)

    assert list(updated.query("SELECT beta, m_a FROM points").columns) == ["beta", "m_a"]


def test_cli_update_prints_diff(fit, db_url, tmp_path):
    add_point(fit)
    path = tmp_path / "new.yaml"
    path.write_text(yaml.safe_dump({**DEFINITION, "likelihood": {**DEFINITION["likelihood"], "version": "9"}}))

    refused = CliRunner().invoke(main, ["--db", db_url, "update", "toy-2d", "--file", str(path)])
    forced = CliRunner().invoke(main, ["--db", db_url, "update", "toy-2d", "--file", str(path), "--force"])

    assert refused.exit_code == 2
    assert "version: '7' -> '9'" in refused.output
    assert forced.exit_code == 0, forced.output
    assert "version: '7' -> '9'" in forced.output


def test_cli_update_rejects_other_name(fit, db_url, tmp_path):
    path = tmp_path / "new.yaml"
    path.write_text(yaml.safe_dump({**DEFINITION, "name": "other"}))

    result = CliRunner().invoke(main, ["--db", db_url, "update", "toy-2d", "--file", str(path)])

    assert result.exit_code == 2
    assert "cannot be renamed" in result.output


def test_update_of_unknown_campaign(fit, db_url):
    with pytest.raises(NotFoundError, match="campaign 'other' not found"):
        api.update_campaign(changed(name="other"), db_url)
