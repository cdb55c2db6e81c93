"""Compiled predictors agree with XGBoost and are cached by model hash."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import xgboost

from campaign.surrogate.compiled import (
    BinnedForest, BoosterPredictor, default_max_compiled_rows, flatten_booster, model_hash,
)

# float32 thresholds and leaf sums: XGBoost and the compiled code round differently.
RTOL = 2e-5


def _booster(objective: str, n_trees: int = 40, depth: int = 5, seed: int = 0) -> xgboost.Booster:
    rng = np.random.default_rng(seed)
    x = rng.random((2000, 4))
    chi2 = 200.0 * ((x - 0.4) ** 2).sum(axis=1)
    label = (chi2 < 10.0).astype(float) if objective == "binary:logistic" else chi2
    params = {"objective": objective, "max_depth": depth, "eta": 0.1, "nthread": 1, "seed": seed}
    return xgboost.train(params, xgboost.DMatrix(x, label=label), n_trees)


def _assert_agrees(predictor: BoosterPredictor, booster: xgboost.Booster, rows: np.ndarray) -> None:
    expected = booster.inplace_predict(rows, predict_type="margin")
    actual = predictor.predict_margin(rows)
    assert actual.shape == (len(rows),)
    scale = np.max(np.abs(expected))
    assert np.max(np.abs(actual - expected)) <= RTOL * scale


@pytest.mark.parametrize("objective", ["reg:squarederror", "binary:logistic"])
def test_numba_matches_xgboost(objective, tmp_path):
    booster = _booster(objective)
    predictor = BoosterPredictor(booster, "numba", cache=tmp_path)
    assert predictor.backend == "numba"
    rows = np.random.default_rng(1).random((200, 4))
    _assert_agrees(predictor, booster, rows)


def test_numba_handles_missing_values(tmp_path):
    booster = _booster("reg:squarederror")
    predictor = BoosterPredictor(booster, "numba", cache=tmp_path)
    rows = np.random.default_rng(2).random((50, 4))
    rows[::3, 1] = np.nan
    _assert_agrees(predictor, booster, rows)


def test_flatten_pads_shallow_trees():
    booster = _booster("reg:squarederror", n_trees=5, depth=3)
    forest = flatten_booster(booster)
    assert forest.depth <= 3
    assert forest.leaf.shape == (5, 2 ** forest.depth)
    assert forest.threshold.dtype == np.float32


def test_tl2cgen_matches_xgboost(tmp_path):
    booster = _booster("reg:squarederror", n_trees=20, depth=4)
    predictor = BoosterPredictor(booster, "tl2cgen", cache=tmp_path)
    assert predictor.backend == "tl2cgen"
    assert (tmp_path / f"{model_hash(booster)}.tl2cgen.so").exists()
    _assert_agrees(predictor, booster, np.random.default_rng(3).random((64, 4)))


def test_cache_is_reused(tmp_path):
    booster = _booster("reg:squarederror")
    BoosterPredictor(booster, "numba", cache=tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [f"{model_hash(booster)}.forest.npz"]
    again = BoosterPredictor(booster, "numba", cache=tmp_path)
    assert again.backend == "numba"
    assert sorted(p.name for p in tmp_path.iterdir()) == files


def test_large_batches_use_xgboost(tmp_path):
    booster = _booster("reg:squarederror")
    predictor = BoosterPredictor(booster, "numba", cache=tmp_path, max_compiled_rows=10)
    rows = np.random.default_rng(4).random((11, 4))
    np.testing.assert_array_equal(predictor.predict_margin(rows), booster.inplace_predict(rows, predict_type="margin"))


def test_default_batch_limits(tmp_path):
    booster = _booster("reg:squarederror")
    one_thread = BoosterPredictor(booster, "numba", cache=tmp_path)
    assert one_thread.max_compiled_rows == math.inf
    assert BoosterPredictor(booster, "numba", cache=tmp_path, threads=2).max_compiled_rows == 4096
    assert default_max_compiled_rows("tl2cgen", 1) == 256
    # A batch far above the tl2cgen limit still goes to numba: its float32 rounding differs from XGBoost's.
    rows = np.random.default_rng(10).random((3000, 4))
    margins = one_thread.predict_margin(rows)
    expected = booster.inplace_predict(rows, predict_type="margin")
    assert not np.array_equal(margins, expected)
    assert np.max(np.abs(margins - expected)) <= RTOL * np.max(np.abs(expected))


def test_missing_compiler_falls_back(tmp_path, monkeypatch, caplog):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    booster = _booster("reg:squarederror", n_trees=5)
    with caplog.at_level(logging.WARNING, logger="campaign.surrogate.compiled"):
        predictor = BoosterPredictor(booster, "tl2cgen", cache=tmp_path / "cache")
    assert predictor.backend == "xgboost"
    assert "predicting with XGBoost instead" in caplog.text
    _assert_agrees(predictor, booster, np.random.default_rng(5).random((8, 4)))


def test_unknown_backend_rejected():
    from campaign.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown compiled backend 'gpu'"):
        BoosterPredictor(_booster("reg:squarederror", n_trees=2), "gpu")


def test_binned_splits_at_thresholds_and_partial_blocks(tmp_path):
    # Values equal to a threshold go right, as in XGBoost; 13 rows leave a partial block of 8.
    booster = _booster("reg:squarederror", n_trees=30, depth=6)
    forest = flatten_booster(booster)
    used = np.isfinite(forest.threshold)
    rng = np.random.default_rng(6)
    rows = np.column_stack([
        rng.choice(forest.threshold[used & (forest.feature == f)], size=13) for f in range(4)
    ]).astype(np.float32)
    predictor = BoosterPredictor(booster, "numba", cache=tmp_path)
    assert predictor.backend == "numba"
    margins = BinnedForest.build([forest], 4).predict_margins(rows)[0]
    expected = booster.inplace_predict(rows, predict_type="margin")
    assert np.max(np.abs(margins - expected)) <= RTOL * np.max(np.abs(expected))
    _assert_agrees(predictor, booster, rows)


def test_padded_forest_predicts_the_same():
    booster = _booster("reg:squarederror", n_trees=10, depth=3)
    forest = flatten_booster(booster)
    rows = np.random.default_rng(7).random((21, 4)).astype(np.float32)
    shallow = BinnedForest.build([forest], 4).predict_margins(rows)
    deep = BinnedForest.build([forest.padded(forest.depth + 2)], 4).predict_margins(rows)
    np.testing.assert_allclose(deep, shallow, rtol=1e-12)
    assert forest.padded(forest.depth + 2).leaf.shape == (10, 2 ** (forest.depth + 2))


def test_joint_forest_predicts_both_boosters():
    regressor = _booster("reg:squarederror", n_trees=40, depth=5)
    classifier = _booster("binary:logistic", n_trees=25, depth=3, seed=1)
    joint = BinnedForest.build([flatten_booster(regressor), flatten_booster(classifier)], 4)
    rows = np.random.default_rng(8).random((50, 4))
    margins = joint.predict_margins(rows)
    assert margins.shape == (2, 50)
    for booster, actual in zip((regressor, classifier), margins):
        expected = booster.inplace_predict(rows, predict_type="margin")
        assert np.max(np.abs(actual - expected)) <= RTOL * max(1.0, np.max(np.abs(expected)))


def test_compiled_surrogate_matches_xgboost_surrogate(tmp_path):
    from campaign.space import Parameter, ParameterSpace
    from campaign.surrogate.compiled import CompiledSurrogate
    from campaign.surrogate.model import SurrogateModel

    space = ParameterSpace([Parameter(f"p{i}", -2.0, 3.0) for i in range(4)])
    model = SurrogateModel(
        space=space, regressor=_booster("reg:squarederror"), classifier=_booster("binary:logistic", seed=1),
        chi2_min=0.0, delta_chi2=10.0,
    )
    compiled = CompiledSurrogate(model, "numba", cache=tmp_path)
    plain = CompiledSurrogate(model, "xgboost")
    assert compiled.backend == "numba"
    assert plain.backend == "xgboost"
    x = space.from_unit(np.random.default_rng(9).random((37, 4)))
    expected = plain.chi2(x)
    assert np.max(np.abs(compiled.chi2(x) - expected)) <= RTOL * np.max(np.abs(expected))


def test_compiled_surrogate_applies_low_threshold(tmp_path):
    from campaign.space import Parameter, ParameterSpace
    from campaign.surrogate.compiled import CompiledSurrogate
    from campaign.surrogate.model import SurrogateModel

    space = ParameterSpace([Parameter(f"p{i}", -2.0, 3.0) for i in range(4)])
    regressor, classifier = _booster("reg:squarederror"), _booster("binary:logistic", seed=1)
    calibrated = SurrogateModel(space=space, regressor=regressor, classifier=classifier, chi2_min=0.0,
                                delta_chi2=10.0, low_margin_threshold=-1.5)
    uncalibrated = SurrogateModel(space=space, regressor=regressor, classifier=classifier, chi2_min=0.0, delta_chi2=10.0)
    x = space.from_unit(np.random.default_rng(10).random((37, 4)))
    expected = calibrated.surrogate_chi2(x)

    for backend in ("numba", "xgboost"):
        compiled = CompiledSurrogate(calibrated, backend, cache=tmp_path)
        assert compiled.backend == backend
        assert np.max(np.abs(compiled.chi2(x) - expected)) <= RTOL * np.max(np.abs(expected))
    # The threshold lowers the penalty by a known amount: 10 * (softplus(-m) - softplus(-1.5 - m)).
    margin = calibrated.classifier_margin(x)
    shift = 10.0 * (np.logaddexp(0.0, -margin) - np.logaddexp(0.0, -1.5 - margin))
    np.testing.assert_allclose(uncalibrated.surrogate_chi2(x) - expected, shift, rtol=1e-9, atol=1e-9)


def test_binned_forest_wide_booster():
    # 40 features put feature offsets (feature * 8) past one byte in the packed splits.
    rng = np.random.default_rng(9)
    x = rng.random((3000, 40))
    label = (x[:, 0] - 0.3) ** 2 + 10.0 * (x[:, 39] - 0.6) ** 2 + x[:, 33]
    params = {"max_depth": 4, "eta": 0.3, "nthread": 1, "colsample_bynode": 0.5, "seed": 0}
    booster = xgboost.train(params, xgboost.DMatrix(x, label=label), 30)
    forest = flatten_booster(booster)
    assert forest.feature.max() >= 32
    rows = rng.random((19, 40))
    margins = BinnedForest.build([forest], 40).predict_margins(rows)[0]
    expected = booster.inplace_predict(rows, predict_type="margin")
    assert np.max(np.abs(margins - expected)) <= RTOL * max(1.0, np.max(np.abs(expected)))


def test_cached_artifact_costs_no_compile_time(tmp_path):
    booster = _booster("reg:squarederror", n_trees=5)
    first = BoosterPredictor(booster, "numba", cache=tmp_path)
    again = BoosterPredictor(booster, "numba", cache=tmp_path)
    assert not first.from_cache
    assert first.compile_seconds > 0
    assert again.from_cache
    assert again.compile_seconds == 0.0


def test_tl2cgen_compile_keeps_stdout_clean(tmp_path, capsys):
    booster = _booster("reg:squarederror", n_trees=3, depth=2)
    predictor = BoosterPredictor(booster, "tl2cgen", cache=tmp_path)
    assert predictor.backend == "tl2cgen"
    assert capsys.readouterr().out == ""
