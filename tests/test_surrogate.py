"""The two-stage surrogate on arrays, and model versions in a real database."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from campaign.errors import ConflictError, NotFoundError
from campaign.space import ParameterSpace
from campaign.store import Store, models
from campaign.store.campaigns import insert_campaign
from campaign.config import parse_campaign
from campaign.surrogate import combine_chi2, load_model, register_model_version
from campaign.surrogate.model import low_labels
from campaign.surrogate.training import DEFAULT_HYPERPARAMETERS, cross_validate, prepare_training_set, train_surrogate
from campaign.surrogate.tuning import tune_hyperparameters

SPACE = ParameterSpace.from_dict({"a": {"low": -3, "high": 3}, "b": {"low": -3, "high": 3}})
HYPERPARAMETERS = {"classifier": dict(DEFAULT_HYPERPARAMETERS), "regressor": dict(DEFAULT_HYPERPARAMETERS)}


def quadratic_data(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    x = SPACE.design(n, "lhs", seed=seed)
    return x, (x**2).sum(axis=1)


def test_combine_chi2_known_values():
    result = combine_chi2([1.0, 1.0, 1.0], [50.0, 0.0, -50.0], penalty=10.0)
    assert result[0] == pytest.approx(1.0)
    assert result[1] == pytest.approx(1.0 + 10.0 * np.log(2.0))
    assert result[2] == pytest.approx(1.0 + 10.0 * 50.0)


def test_low_labels_nonfinite_not_low():
    labels = low_labels(np.array([0.0, 4.0, 6.0, np.nan, np.inf, -np.inf]), 0.0, 5.0)
    assert labels.tolist() == [1, 1, 0, 0, 0, 0]


def test_training_set_excludes_nonfinite_from_regressor():
    x, chi2 = quadratic_data(100)
    chi2[:5] = [np.nan, np.inf, np.inf, np.nan, np.inf]
    training = prepare_training_set(SPACE, x, chi2, 2.0)
    assert not training.regressor_mask[:5].any()
    assert training.labels[:5].sum() == 0
    assert training.chi2_min == pytest.approx(np.nanmin(chi2[5:]))


def test_training_set_without_finite_chi2_raises():
    x, _ = quadratic_data(10)
    with pytest.raises(ConflictError, match="finite chi2"):
        prepare_training_set(SPACE, x, np.full(10, np.inf), 2.0)


def test_surrogate_learns_quadratic():
    x, chi2 = quadratic_data(400)
    training = prepare_training_set(SPACE, x, chi2, 2.0)
    model, _ = train_surrogate(SPACE, training, HYPERPARAMETERS, seed=1, threads=1, committee_size=3)

    inside, outside = np.array([[0.2, -0.1]]), np.array([[2.8, -2.8]])
    assert model.classifier_margin(inside)[0] > 0
    assert model.classifier_margin(outside)[0] < 0
    assert model.predict_chi2(inside)[0] == pytest.approx(0.05, abs=0.6)
    assert model.surrogate_chi2(outside)[0] > 10.0
    mean, spread = model.committee_chi2(inside)
    assert spread[0] >= 0
    assert len(model.committee) == 3


def test_cross_validated_metrics_ranges():
    x, chi2 = quadratic_data(300)
    training = prepare_training_set(SPACE, x, chi2, 2.0)
    metrics = cross_validate(training, HYPERPARAMETERS, seed=0, threads=1)
    assert 0.9 <= metrics["classifier_accuracy"] <= 1.0
    assert 0.9 <= metrics["classifier_auc"] <= 1.0
    assert 0 < metrics["regressor_mae_low"] < 1.0
    assert metrics["regressor_rmse_low"] >= metrics["regressor_mae_low"]


def test_tuning_is_reproducible():
    x, chi2 = quadratic_data(150)
    training = prepare_training_set(SPACE, x, chi2, 2.0)
    first = tune_hyperparameters(training, iterations=3, seed=5, threads=1)
    second = tune_hyperparameters(training, iterations=3, seed=5, threads=1)
    assert first == second
    assert set(first) == {"classifier", "regressor"}
    assert first["regressor"]["n_estimators"] >= 1


def _stored_campaign(url: str) -> tuple[Store, int]:
    spec = parse_campaign({
        "name": "surrogate-test", "parameters": SPACE.to_dict(),
        "likelihood": {"python": "tests/likelihoods/quadratic.py:chi2"},
    })
    store = Store(url)
    with store.transaction() as session:
        campaign_id = insert_campaign(session, spec).id
    return store, campaign_id


def _register(store: Store, campaign_id: int, model) -> int:
    with store.transaction() as session:
        row = register_model_version(
            session, campaign_id, model, hyperparameters=HYPERPARAMETERS, metrics={"regressor_mae_low": 0.1},
            n_train=300, n_low=40, last_point_id=None, parent_id=None, training_mode="refit", training_seconds=0.5,
        )
        return row.version


def test_registry_roundtrip(db_url):
    store, campaign_id = _stored_campaign(db_url)
    x, chi2 = quadratic_data(200)
    model, _ = train_surrogate(SPACE, prepare_training_set(SPACE, x, chi2, 2.0), HYPERPARAMETERS,
                               seed=0, threads=1, committee_size=2)
    assert _register(store, campaign_id, model) == 1
    assert _register(store, campaign_id, model) == 2

    with store.transaction() as session:
        row, loaded = load_model(session, campaign_id, SPACE, 1)
        boosters = session.query(models.Booster).filter_by(model_version_id=row.id).all()
    probe = SPACE.design(50, seed=3)
    np.testing.assert_array_equal(loaded.predict_chi2(probe), model.predict_chi2(probe))
    np.testing.assert_array_equal(loaded.classifier_margin(probe), model.classifier_margin(probe))
    assert sorted((b.role, b.member) for b in boosters) == [
        ("classifier", 0), ("committee", 0), ("committee", 1), ("regressor", 0)]
    assert all(b.format == "ubj" for b in boosters)
    assert loaded.chi2_min == model.chi2_min


def test_load_missing_version_lists_existing(db_url):
    store, campaign_id = _stored_campaign(db_url)
    with store.transaction() as session:
        with pytest.raises(NotFoundError, match="no model versions"):
            load_model(session, campaign_id, SPACE)
    x, chi2 = quadratic_data(100)
    model, _ = train_surrogate(SPACE, prepare_training_set(SPACE, x, chi2, 2.0), HYPERPARAMETERS, seed=0, threads=1)
    _register(store, campaign_id, model)
    with store.transaction() as session:
        with pytest.raises(NotFoundError, match="existing versions: 1"):
            load_model(session, campaign_id, SPACE, 7)


def test_concurrent_registration_unique_versions(db_url):
    store, campaign_id = _stored_campaign(db_url)
    x, chi2 = quadratic_data(100)
    model, _ = train_surrogate(SPACE, prepare_training_set(SPACE, x, chi2, 2.0), HYPERPARAMETERS, seed=0, threads=1)
    versions: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def register_three():
        barrier.wait()
        try:
            for _ in range(3):
                versions.append(_register(store, campaign_id, model))
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=register_three) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(versions) == list(range(1, 10))
