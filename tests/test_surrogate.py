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
from campaign.surrogate.training import (
    DEFAULT_HYPERPARAMETERS, MIN_CALIBRATION_POINTS, MIN_LOW_MARGIN_THRESHOLD, calibrate_low_threshold, cross_validate,
    cross_validate_classifier, prepare_training_set, train_surrogate,
)
from campaign.surrogate.tuning import tune_hyperparameters

SPACE = ParameterSpace.from_dict({"a": {"low": -3, "high": 3}, "b": {"low": -3, "high": 3}})
HYPERPARAMETERS = {"classifier": dict(DEFAULT_HYPERPARAMETERS), "regressor": dict(DEFAULT_HYPERPARAMETERS)}


def quadratic_data(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    x = SPACE.design(n, "lhs", seed=seed)
    return x, (x**2).sum(axis=1)


def test_combine_chi2_known_values():
    result = combine_chi2([1.0, 1.0, 1.0], [50.0, 0.0, -50.0], penalty=10.0, threshold=0.0)
    assert result[0] == pytest.approx(1.0)
    assert result[1] == pytest.approx(1.0 + 10.0 * np.log(2.0))
    assert result[2] == pytest.approx(1.0 + 10.0 * 50.0)


def test_combine_chi2_shifts_gate_by_threshold():
    result = combine_chi2([1.0, 1.0], [-1.5, -51.5], penalty=10.0, threshold=-1.5)
    assert result[0] == pytest.approx(1.0 + 10.0 * np.log(2.0))
    assert result[1] == pytest.approx(1.0 + 10.0 * 50.0)


def test_calibrate_threshold_keeps_target_share():
    labels = np.array([1] * 20 + [0] * 5)
    margins = np.concatenate([np.linspace(-3.8, 5.7, 20), np.full(5, -1.0)])
    # 90% of 20 low points is 18, so the two lowest (-3.8 and -3.3) may fall below the threshold.
    threshold = calibrate_low_threshold(margins, labels, 0.9)
    assert threshold == pytest.approx(-2.8)
    assert threshold < margins[2]
    assert np.mean(margins[labels == 1] > threshold) == pytest.approx(0.9)
    assert calibrate_low_threshold(margins, labels, 1.0) < -3.8


def test_calibrate_threshold_exact_share_not_rounded_up():
    labels = np.ones(100, dtype=int)
    margins = np.linspace(-3.0, -0.03, 100)
    # 0.97 * 100 is 97.00000000000001 in floating point; 97 kept points are enough.
    threshold = calibrate_low_threshold(margins, labels, 0.97)
    assert np.sum(margins > threshold) == 97


@pytest.mark.parametrize(("low_margins", "expected"), [
    (np.linspace(1.0, 5.0, 30), 0.0),  # recall already reached at probability 0.5: never tighter than 0
    (np.linspace(-20.0, -10.0, 30), MIN_LOW_MARGIN_THRESHOLD),  # a useless classifier: clipped
    (np.linspace(-3.0, 1.0, MIN_CALIBRATION_POINTS - 1), 0.0),  # too few low points to calibrate
])
def test_calibrate_threshold_limits(low_margins, expected):
    labels = np.ones(len(low_margins), dtype=int)
    assert calibrate_low_threshold(low_margins, labels, 0.97) == expected


def test_calibrated_threshold_reaches_recall_on_held_out_points():
    space = ParameterSpace.from_dict({f"p{i}": {"low": -3, "high": 3} for i in range(4)})
    x = space.design(512, "sobol", seed=0)
    training = prepare_training_set(space, x, 2.0 * (x**2).sum(axis=1), 10.0)
    calibration = cross_validate_classifier(training, HYPERPARAMETERS, seed=0, threads=1, low_recall=0.97)
    threshold = calibration["low_margin_threshold"]
    model, _ = train_surrogate(space, training, HYPERPARAMETERS, seed=0, threads=1, low_margin_threshold=threshold)

    # Held-out points uniform in the true low region, the 4-D ball 2 |x|^2 < 10.
    rng = np.random.default_rng(5)
    direction = rng.standard_normal((4000, 4))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    held_out = direction * np.sqrt(5.0) * rng.random((4000, 1)) ** 0.25
    recall_at_zero = np.mean(model.classifier_margin(held_out) > 0.0)
    recall = np.mean(model.is_low(held_out))

    assert recall_at_zero < 0.9
    assert MIN_LOW_MARGIN_THRESHOLD < threshold < 0.0
    assert calibration["classifier_recall_low"] >= 0.97
    assert calibration["classifier_recall_low_at_zero"] < 0.97
    assert recall >= 0.97
    assert model.low_margin_threshold == threshold
    np.testing.assert_array_equal(model.low_margin(held_out), model.classifier_margin(held_out) - threshold)


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
    metrics = cross_validate(training, HYPERPARAMETERS, seed=0, threads=1, low_recall=0.97)
    assert 0.9 <= metrics["classifier_accuracy"] <= 1.0
    assert MIN_LOW_MARGIN_THRESHOLD <= metrics["low_margin_threshold"] <= 0.0
    assert metrics["classifier_recall_low"] >= 0.97
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
                               seed=0, threads=1, committee_size=2, low_margin_threshold=-1.25)
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
    assert row.metrics["low_margin_threshold"] == -1.25
    assert loaded.low_margin_threshold == -1.25
    np.testing.assert_array_equal(loaded.surrogate_chi2(probe), model.surrogate_chi2(probe))


def test_version_without_threshold_loads_zero(db_url):
    store, campaign_id = _stored_campaign(db_url)
    x, chi2 = quadratic_data(200)
    model, _ = train_surrogate(SPACE, prepare_training_set(SPACE, x, chi2, 2.0), HYPERPARAMETERS,
                               seed=0, threads=1, low_margin_threshold=-1.25)
    _register(store, campaign_id, model)
    # A version registered before thresholds were calibrated has no threshold in its metrics.
    with store.transaction() as session:
        row = session.query(models.ModelVersion).filter_by(campaign_id=campaign_id).one()
        row.metrics = {"regressor_mae_low": 0.1}

    with store.transaction() as session:
        _, loaded = load_model(session, campaign_id, SPACE)
    assert loaded.low_margin_threshold == 0.0


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
