"""campaign step and run on a real database with real evaluations of a known quadratic chi2."""

from __future__ import annotations

import dataclasses
import os
import socket

import numpy as np
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from campaign import api
from campaign.cli import main
from campaign.config import parse_campaign
from campaign.errors import ConflictError
from campaign.scheduler import _StepContext, list_steps, run_step
from campaign.stepper_lock import StepperLock
from campaign.store import models

SETTINGS = {
    "seed": 3, "initial_points": 24, "batch_size": 6, "delta_chi2": 2.0, "tuning_iterations": 2,
    "n_candidates": 256, "committee_size": 2, "lease_seconds": 30,
}


def make_campaign(url: str, name: str = "quad", **settings):
    spec = parse_campaign({
        "name": name,
        "parameters": {"a": {"low": -2, "high": 3}, "b": {"low": -3, "high": 2}},
        "likelihood": {"python": "tests/likelihoods/step_quadratic.py:chi2"},
        "settings": {**SETTINGS, **settings},
    })
    return api.create_campaign(spec, url)


def point_count(fit) -> int:
    return sum(fit.status_counts().values())


def test_step_design_train_propose(db_url, repo_cwd):
    fit = make_campaign(db_url)
    lines: list[str] = []
    report = fit.step(workers=1, echo=lines.append)

    assert report.number == 1
    assert report.n_proposed == 6
    assert report.n_evaluated == 6
    assert report.model_version == 1
    assert fit.status_counts()["done"] == 30
    assert report.best_chi2 == pytest.approx(fit.arrays().chi2.min())
    assert any(line.startswith("step 1: train model v1 (tune") for line in lines)
    assert set(report.timings) >= {"design", "train", "propose", "evaluate"}

    with fit.store.transaction() as session:
        version = session.scalars(sa.select(models.ModelVersion)).one()
        assert version.n_train == 24
        assert version.training_mode == "tune"
        assert set(version.metrics) >= {"regressor_mae_low", "regressor_rmse_low", "classifier_accuracy", "classifier_auc"}
    surrogate = fit.model(1)
    assert surrogate.surrogate_chi2(np.array([[0.5, -1.0]]))[0] < surrogate.surrogate_chi2(np.array([[-2.0, 2.0]]))[0]


def test_run_reuses_hyperparameters_and_shows(sqlite_url, repo_cwd):
    fit = make_campaign(sqlite_url, retrain="continue")
    reports = fit.run(steps=3, workers=1)
    assert [r.number for r in reports] == [1, 2, 3]
    with fit.store.transaction() as session:
        modes = session.scalars(sa.select(models.ModelVersion.training_mode).order_by(models.ModelVersion.version)).all()
        parents = session.scalars(sa.select(models.ModelVersion.parent_id).order_by(models.ModelVersion.version)).all()
    # 24 points tune; 30 < 2 * 24 continue; 36 < 48 continue.
    assert modes == ["tune", "continue", "continue"]
    assert parents[0] is None
    assert parents[1] is not None
    assert reports[-1].best_chi2 <= reports[0].best_chi2

    result = CliRunner().invoke(main, ["--db", sqlite_url, "show", "quad"])
    assert result.exit_code == 0, result.output
    assert "Steps:" in result.output
    assert "Model versions:" in result.output
    assert "continue" in result.output
    assert "/3 quiet" in result.output


def test_cli_run_names_its_stop_reason(sqlite_url, repo_cwd):
    make_campaign(sqlite_url)
    by_steps = CliRunner().invoke(main, ["--db", sqlite_url, "run", "quad", "--steps", "1", "--workers", "1"])
    assert by_steps.exit_code == 0, by_steps.output
    assert "not converged; stopped after --steps 1." in by_steps.output
    by_budget = CliRunner().invoke(main, ["--db", sqlite_url, "run", "quad", "--max-evaluations", "33", "--workers", "1"])
    assert by_budget.exit_code == 0, by_budget.output
    assert "not converged; stopped at --max-evaluations 33." in by_budget.output


def test_max_evaluations_limits_run(sqlite_url, repo_cwd):
    fit = make_campaign(sqlite_url)
    reports = fit.run(max_evaluations=33, workers=1)
    assert [r.n_proposed for r in reports] == [6, 3]
    assert point_count(fit) == 33


@pytest.mark.parametrize(("limit", "accurate"), [(1e-9, False), (1e9, True)])
def test_convergence_needs_accurate_regressor(sqlite_url, repo_cwd, limit, accurate):
    fit = make_campaign(sqlite_url, convergence_mae=limit, convergence_patience=1, convergence_tolerance=1e9)

    reports = fit.run(steps=2, workers=1)

    assert reports[-1].convergence["accurate"] is accurate
    if not accurate:
        assert reports[-1].convergence["converged"] is False


def test_second_stepper_conflict_names_holder(db_url, repo_cwd):
    fit = make_campaign(db_url)
    with StepperLock(fit.store, fit.id, fit.name, lease_seconds=60):
        with pytest.raises(ConflictError) as caught:
            run_step(fit, workers=1)
    message = str(caught.value)
    assert socket.gethostname() in message
    assert f"pid {os.getpid()}" in message
    assert "since" in message
    assert point_count(fit) == 0


def test_dead_stepper_lease_expires(db_url, repo_cwd):
    fit = make_campaign(db_url)
    with fit.store.transaction() as session:
        clock = session.scalar(sa.select(sa.func.count()))  # any scalar query opens the transaction
        assert clock == 1
        session.add(models.CampaignLock(campaign_id=fit.id, holder="gone:1:dead", host="gone", pid=1,
                                        user="nobody", acquired_at=1.0, lease_expires_at=2.0))
    report = run_step(fit, workers=1)
    assert report.status == "done"
    with fit.store.transaction() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(models.CampaignLock)) == 0


def test_resume_after_kill_in_evaluate(db_url, repo_cwd):
    fit = make_campaign(db_url)
    fit.step(workers=1)

    # Leave step 2 as a killed process leaves it: batch stored, not evaluated.
    with StepperLock(fit.store, fit.id, fit.name, lease_seconds=30) as lock:
        context = _StepContext(fit, lock, lambda line: None, 1, "local", False)
        number = context.start()
        context.design(number)
        context.train(number)
        context.propose(number, 6)
    assert fit.status_counts()["pending"] == 6
    assert list_steps(fit)[-1]["phase"] == "evaluate"

    report = fit.step(workers=1)
    assert report.number == 2
    assert report.resumed
    assert report.n_evaluated == 6
    assert point_count(fit) == 36
    assert fit.status_counts()["done"] == 36
    with fit.store.transaction() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(models.ModelVersion)) == 2


def test_interrupted_before_batch_starts_new_step(sqlite_url, repo_cwd):
    fit = make_campaign(sqlite_url)
    with StepperLock(fit.store, fit.id, fit.name, lease_seconds=30) as lock:
        context = _StepContext(fit, lock, lambda line: None, 1, "local", False)
        number = context.start()
        context.design(number)
    report = fit.step(workers=1)
    steps = list_steps(fit)
    assert [(s["number"], s["status"]) for s in steps] == [(1, "interrupted"), (2, "done")]
    assert report.number == 2
    assert point_count(fit) == 30


def test_same_seed_same_models_and_proposals(tmp_path, repo_cwd):
    fits = [make_campaign(f"sqlite:///{tmp_path / f'{i}.db'}") for i in range(2)]
    for fit in fits:
        fit.run(steps=2, workers=1)
    digests, proposals = [], []
    for fit in fits:
        with fit.store.transaction() as session:
            digests.append(session.scalars(sa.select(models.Booster.sha256).order_by(models.Booster.id)).all())
        frame = fit.points()
        proposals.append(frame[frame["origin"] != "initial"][["a", "b"]].to_numpy())
    assert digests[0] == digests[1]
    np.testing.assert_array_equal(proposals[0], proposals[1])


def test_other_likelihood_version_ignored(sqlite_url, repo_cwd):
    fit = make_campaign(sqlite_url)
    fit.step(workers=1)
    with fit.store.transaction() as session:
        session.execute(sa.update(models.Point).where(models.Point.id <= 3).values(likelihood_version="0.9"))
    n_current = len(fit.arrays())
    lines = []

    fit.step(workers=1, echo=lines.append)

    assert any("3 with version '0.9'" in line for line in lines)
    with fit.store.transaction() as session:
        newest = session.scalars(sa.select(models.ModelVersion).order_by(models.ModelVersion.version.desc())).first()
    assert newest.n_train == n_current

def test_new_version_gets_new_design(sqlite_url, repo_cwd):
    fit = make_campaign(sqlite_url)
    fit.step(workers=1)
    spec = dataclasses.replace(fit.spec, likelihood=dataclasses.replace(fit.spec.likelihood, version="2"))
    updated, _ = api.update_campaign(spec, sqlite_url, force=True)

    report = updated.step(workers=1)

    assert len(updated.arrays()) == SETTINGS["initial_points"] + report.n_evaluated
    assert updated.describe()["best_chi2"] == report.best_chi2


def test_failed_batch_is_not_quiet(sqlite_url, repo_cwd, tmp_path):
    fit = make_campaign(sqlite_url, convergence_tolerance=1e9, convergence_patience=1)
    fit.step(workers=1)
    broken = tmp_path / "broken.py"
    broken.write_text("def chi2(a, b):\n    raise RuntimeError('detector offline')\n")
    spec = dataclasses.replace(fit.spec, likelihood=dataclasses.replace(fit.spec.likelihood, python=f"{broken}:chi2"))
    updated, _ = api.update_campaign(spec, sqlite_url, force=True)

    report = updated.step(workers=1)

    assert report.n_evaluated == 0
    assert report.n_failed > 0
    assert report.convergence["quiet_steps"] == 0


def test_convergence_text_caps_quiet_steps():
    from campaign.config import Settings
    from campaign.scheduler import describe_convergence

    settings = Settings()
    patience = settings.convergence_patience
    blocked = {"quiet_steps": patience + 7, "settled": True, "batch_mae_low": 2.08}
    text = describe_convergence(blocked, settings)
    assert text.startswith(f"{patience}/{patience} quiet steps reached, regressor settled")
    assert f"batch MAE 2.08 (limit {settings.convergence_mae:g})" in text
    early = describe_convergence({"quiet_steps": 0, "settled": False, "batch_mae_low": None}, settings)
    assert early == f"0/{patience} quiet steps, regressor not settled"
