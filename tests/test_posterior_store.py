"""sample, resume, validate, explain and show on a stored campaign, on SQLite and PostgreSQL."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa
import xgboost
from click.testing import CliRunner

from campaign import api
from campaign.cli import main
from campaign.config import load_campaign_file
from campaign.errors import ConfigError
from campaign.store import models
from campaign.store.points import insert_points
from campaign.surrogate.model import SurrogateModel
from campaign.surrogate.registry import register_model_version

EXAMPLE = "examples/gaussian-4d/campaign.yaml"
MEAN = np.array([1.0, -0.5, 0.3, 2.0])


def _true_chi2(x: np.ndarray) -> np.ndarray:
    import importlib.util

    spec = importlib.util.spec_from_file_location("gaussian_4d", "examples/gaussian-4d/likelihood.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return np.array([module.chi2(*row) for row in x])


def _train(space, x, chi2, delta_chi2=10.0) -> SurrogateModel:
    features = space.to_unit(x)
    params = {"max_depth": 4, "eta": 0.1, "nthread": 1, "seed": 0}
    regressor = xgboost.train(params, xgboost.DMatrix(features, label=chi2), 150)
    labels = (chi2 < chi2.min() + delta_chi2).astype(float)
    classifier = xgboost.train({**params, "objective": "binary:logistic"}, xgboost.DMatrix(features, label=labels), 50)
    return SurrogateModel(space=space, classifier=classifier, regressor=regressor,
                          chi2_min=float(chi2.min()), delta_chi2=delta_chi2)


@pytest.fixture
def fitted(db_url, repo_cwd, tmp_path, monkeypatch):
    """The 4-D Gaussian example with 600 evaluated points and one model version."""
    monkeypatch.setenv("CAMPAIGN_CACHE_DIR", str(tmp_path / "cache"))
    fit = api.create_campaign(load_campaign_file(EXAMPLE), db_url)
    rng = np.random.default_rng(0)
    x = np.clip(MEAN + rng.normal(0.0, 1.0, (600, 4)) * [0.6, 0.9, 0.4, 0.7], fit.space.low, fit.space.high)
    chi2 = _true_chi2(x)
    model = _train(fit.space, x, chi2)
    with fit.store.transaction() as session:
        row = session.get(models.Campaign, fit.id)
        insert_points(session, row, x, origin="import", chi2=chi2, executor="import")
        register_model_version(session, fit.id, model, hyperparameters={}, metrics={}, n_train=600,
                               n_low=int((chi2 < 10).sum()), last_point_id=None, parent_id=None,
                               training_mode="refit", training_seconds=0.0)
    yield fit
    fit.store.dispose()


def test_sample_stores_chain(fitted):
    result = fitted.sample(walkers=16, max_steps=400, check_every=200, seed=7)
    assert result["n_steps"] == 400
    frame = fitted.chain()
    assert len(frame) == result["n_samples"]
    assert list(frame.columns) == ["iteration", "walker", "x1", "x2", "x3", "x4", "log_prob"]
    assert frame["iteration"].min() == result["burn_in"]
    with fitted.store.engine.connect() as connection:
        count = connection.execute(sa.text("SELECT count(*) FROM samples_gaussian_4d")).scalar()
        summaries = connection.execute(sa.select(models.PosteriorSummary.parameter)).scalars().all()
        profiles = connection.execute(sa.select(models.Profile.parameter)).scalars().all()
    assert count == result["n_samples"]
    assert sorted(summaries) == ["x1", "x2", "x3", "x4"]
    assert sorted(profiles) == ["x1", "x2", "x3", "x4"]
    # The surrogate is trained on the true chi2, so its best fit lies near the true minimum.
    best = np.array([result["best_fit"]["params"][name] for name in ("x1", "x2", "x3", "x4")])
    assert np.max(np.abs(best - MEAN)) < 0.5


def test_same_seed_same_stored_chain(fitted):
    first = fitted.sample(walkers=16, max_steps=200, check_every=100, seed=3, profiles=False)
    second = fitted.sample(walkers=16, max_steps=200, check_every=100, seed=3, profiles=False)
    a = fitted.chain(first["chain_id"])
    b = fitted.chain(second["chain_id"])
    assert first["chain_id"] != second["chain_id"]
    np.testing.assert_array_equal(a[["x1", "x2", "x3", "x4"]].to_numpy(), b[["x1", "x2", "x3", "x4"]].to_numpy())


def test_unconverged_chain_resumes(fitted):
    whole = fitted.sample(walkers=16, max_steps=400, check_every=200, seed=5, profiles=False)
    short = fitted.sample(walkers=16, max_steps=200, check_every=200, seed=5, profiles=False)
    resumed = fitted.sample(resume=short["chain_id"], max_steps=400, profiles=False)
    assert resumed["chain_id"] == short["chain_id"]
    assert resumed["n_steps"] == 400
    np.testing.assert_array_equal(
        fitted.chain(whole["chain_id"]).to_numpy(), fitted.chain(short["chain_id"]).to_numpy()
    )


def test_validate_evaluates_true_chi2(fitted):
    fitted.sample(walkers=16, max_steps=200, check_every=100, seed=1)
    result = fitted.validate(5, workers=1)
    assert len(result["point_ids"]) == 6  # five samples and the best fit
    points = fitted.points().loc[result["point_ids"]]
    assert set(points["origin"]) == {"validation"}
    assert set(points["status"]) == {"done"}
    expected = _true_chi2(points[["x1", "x2", "x3", "x4"]].to_numpy())
    np.testing.assert_allclose(result["true_chi2"], expected, rtol=1e-12)
    residual = np.array(result["true_chi2"]) - np.array(result["surrogate_chi2"])
    assert result["statistics"]["rms"] == pytest.approx(np.sqrt(np.mean(residual ** 2)))


def test_explain_sums_to_prediction(fitted):
    from campaign.explain import shap_values

    summary = fitted.explain()
    assert summary["n_points"] > 0
    assert set(summary["mean_abs_shap"]) == {"x1", "x2", "x3", "x4"}
    assert len(summary["mean_abs_interaction"]) == 6
    with fitted.store.transaction() as session:
        from campaign.surrogate.registry import load_model

        _, model = load_model(session, fitted.id, fitted.space)
    features = fitted.space.to_unit(fitted.arrays().x[:100])
    result = shap_values(model.regressor, features)
    prediction = model.regressor.inplace_predict(features)
    np.testing.assert_allclose(result.values.sum(axis=1) + result.base_value, prediction, atol=1e-4 * np.abs(prediction).max())
    np.testing.assert_allclose(result.interactions.sum(axis=2), result.values, atol=1e-3)


def test_cli_commands_and_show(fitted, db_url, tmp_path):
    runner = CliRunner()
    for arguments in (
        ["compile", "gaussian-4d"],
        ["sample", "gaussian-4d", "--walkers", "16", "--max-steps", "200", "--check-every", "100"],
        ["explain", "gaussian-4d", "--plots", str(tmp_path / "plots")],
    ):
        outcome = runner.invoke(main, ["--db", db_url, *arguments])
        assert outcome.exit_code == 0, outcome.output
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "corner.png", "shap_bar.png", "shap_beeswarm.png", "shap_interactions.png", "tau.png",
    ]
    shown = runner.invoke(main, ["--db", db_url, "show", "gaussian-4d"])
    assert shown.exit_code == 0, shown.output
    assert "Latest finished chain" in shown.output
    assert "Profile likelihood intervals" in shown.output
    assert "Caution" not in shown.output  # the fixture's model version records no chi2 error


@pytest.mark.parametrize(("mae_low", "cautioned"), [(1.4, True), (0.05, False)])
def test_show_cautions_about_profile_error(fitted, db_url, mae_low, cautioned):
    with fitted.store.transaction() as session:
        session.scalars(sa.select(models.ModelVersion)).one().metrics = {"regressor_mae_low": mae_low}
    fitted.sample(walkers=16, max_steps=200, check_every=100, seed=1)
    show_result = CliRunner().invoke(main, ["--db", db_url, "show", "gaussian-4d"])
    assert show_result.exit_code == 0, show_result.output
    assert ("Caution: the regressor's cross-validated chi2 error near the minimum is 1.4 "
            "(model version 1)" in show_result.output) is cautioned
    assert ("Caution" in show_result.output) is cautioned


def test_sample_rejects_bad_walkers_seed(fitted):
    for settings, pattern in [
        ({"walkers": 0}, "walkers: need an even number of at least 8.*got 0"),
        ({"walkers": 6}, "got 6"),
        ({"seed": -1}, "seed: must be an integer from 0 .*got -1"),
    ]:
        with pytest.raises(ConfigError, match=pattern):
            fitted.sample(max_steps=100, check_every=100, profiles=False, **settings)
    with fitted.store.transaction() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(models.Chain)) == 0


def test_cli_sample_range_checks(fitted, db_url):
    from campaign import posterior
    from campaign.cli import posterior_commands

    assert posterior_commands.MIN_WALKERS == posterior.MIN_WALKERS
    assert posterior_commands.MAX_SEED == posterior.MAX_SEED
    runner = CliRunner()
    for option, value in [("--seed", "-1"), ("--seed", str(2**32)), ("--walkers", "0"), ("--walkers", "-2")]:
        outcome = runner.invoke(main, ["--db", db_url, "sample", "gaussian-4d", option, value])
        assert outcome.exit_code == 2, outcome.output
        assert f"Invalid value for '{option}'" in outcome.output
        assert value in outcome.output
        assert "Traceback" not in outcome.output


def test_cli_rejects_odd_walkers(fitted, db_url):
    outcome = CliRunner().invoke(main, ["--db", db_url, "sample", "gaussian-4d", "--walkers", "7"])
    assert outcome.exit_code == 2
    assert "even number of at least 8" in outcome.output
    with fitted.store.transaction() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(models.Chain)) == 0


def test_rejected_validation_writes_nothing(fitted, tmp_path, monkeypatch):
    fitted.sample(walkers=16, max_steps=200, check_every=100, seed=1, profiles=False)
    points_before = len(fitted.points())
    monkeypatch.setenv("CAMPAIGN_CONFIG_DIR", str(tmp_path / "collaborator"))

    with pytest.raises(ConfigError, match="campaign allow gaussian-4d"):
        fitted.validate(n=3)

    assert len(fitted.points()) == points_before
    with fitted.store.transaction() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(models.Validation)) == 0


def test_resume_rejects_other_walkers_or_seed(fitted):
    short = fitted.sample(walkers=16, max_steps=200, check_every=200, seed=5, profiles=False)
    for options, pattern in [
        ({"walkers": 32}, "walkers: chain .* was started with walkers 16, got 32"),
        ({"seed": 6}, "seed: chain .* was started with seed 5, got 6"),
    ]:
        with pytest.raises(ConfigError, match=pattern):
            fitted.sample(resume=short["chain_id"], max_steps=400, profiles=False, **options)
    resumed = fitted.sample(resume=short["chain_id"], max_steps=400, profiles=False, walkers=16, seed=5)
    assert resumed["n_steps"] == 400


def test_show_and_chain_skip_interrupted_chain(fitted, db_url):
    finished = fitted.sample(walkers=16, max_steps=200, check_every=100, seed=1, profiles=False)
    with fitted.store.transaction() as session:
        session.add(models.Chain(
            campaign_id=fitted.id, model_version_id=session.scalars(sa.select(models.ModelVersion.id)).one(),
            status="interrupted", n_walkers=16, seed=2, settings={},
        ))
    assert len(fitted.chain()) == finished["n_samples"]
    show_result = CliRunner().invoke(main, ["--db", db_url, "show", "gaussian-4d"])
    assert show_result.exit_code == 0, show_result.output
    assert f"Latest finished chain {finished['chain_id']}" in show_result.output
    assert ("is interrupted after 0 checkpointed steps, and its samples are not stored yet; "
            "continue it with `campaign sample gaussian-4d --resume") in show_result.output


def test_validation_caution_threshold():
    from campaign.validation import VALIDATION_RMS_LIMIT, validation_caution

    assert validation_caution({"rms": None}, "toy") is None
    assert validation_caution({"rms": VALIDATION_RMS_LIMIT}, "toy") is None
    message = validation_caution({"rms": 11.4}, "toy")
    assert message is not None
    assert "rms 11.4" in message
    assert "campaign run toy" in message


def test_interrupt_during_profiles_marks_chain(fitted, monkeypatch):
    from campaign import sampling

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    original = sampling.find_best_fit
    monkeypatch.setattr(sampling, "find_best_fit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fitted.sample(walkers=16, max_steps=200, check_every=100, seed=4)
    with fitted.store.transaction() as session:
        chain = session.scalars(sa.select(models.Chain)).one()
        assert chain.status == "interrupted"
        chain_id = chain.id

    monkeypatch.setattr(sampling, "find_best_fit", original)
    resumed = fitted.sample(resume=chain_id, max_steps=400, check_every=100)
    assert resumed["chain_id"] == chain_id
    assert resumed["best_fit"] is not None
    assert len(fitted.chain(chain_id)) == resumed["n_samples"]
