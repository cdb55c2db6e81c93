"""Validation of campaign files and flags: each mistake gets a clear message."""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest

from campaign.config import Settings, load_campaign_file, parse_campaign
from campaign.errors import ConfigError

GOOD = {
    "name": "toy",
    "parameters": {"x": {"low": -1, "high": 1}, "m": {"low": 0.1, "high": 10, "scale": "log"}},
    "likelihood": {"python": "tests/likelihoods/quadratic.py:chi2"},
}


def with_changes(**changes):
    data = {**GOOD, **changes}
    return data


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (with_changes(colour="red"), "unknown key(s) colour"),
        (with_changes(parameters={"x": {"low": 1, "high": 1}}), "low=1.0 and high=1.0"),
        (with_changes(parameters={"x": {"low": 2, "high": 1}}), "low must be smaller than high"),
        (with_changes(parameters={"x": {"low": -math.inf, "high": 1}}), "expected a finite number, got -inf"),
        (with_changes(parameters={"x": {"low": float("nan"), "high": 1}}), "parameters.x.low"),
        (with_changes(parameters={"x": {"low": 0, "high": 1, "scale": "log"}}), "a log scale needs low > 0, got low=0.0"),
        (with_changes(parameters={"x": {"low": 0, "high": 1, "scale": "cubic"}}), "got 'cubic'"),
        (with_changes(parameters={"2x": {"low": 0, "high": 1}}), "got '2x'"),
        (with_changes(parameters={"chi2": {"low": 0, "high": 1}}), "clashes with a column"),
        (with_changes(parameters={"Status": {"low": 0, "high": 1}}), "clashes with a column"),
        (with_changes(parameters={"ab": {"low": 0, "high": 1}, "AB": {"low": 0, "high": 1}}), "ignores case"),
        (with_changes(parameters={"x": {"low": 0, "high": 1, "width": 2}}), "unknown key(s) width"),
        (with_changes(parameters={"x": {"low": 0, "high": 1, "prior": {"normal": {"mean": 0}}}}), "mean and std"),
        (with_changes(parameters={"x": {"low": 0, "high": 1, "prior": {"normal": {"mean": 0, "std": -1}}}}), "must be positive, got -1.0"),
        (with_changes(parameters={"x": {"low": -1, "high": 1, "prior": "log-uniform"}}), "log-uniform prior needs low > 0"),
        (with_changes(parameters={"x": {"low": "a", "high": 1}}), "expected a number, got 'a'"),
        (with_changes(parameters={}), "expected a mapping of parameter names"),
        (with_changes(likelihood={"python": "nocolon"}), "got 'nocolon'"),
        (with_changes(likelihood={"python": "a:b", "command": ["x"]}), "exactly one of python"),
        (with_changes(likelihood={"python": "a:b", "returns": "chi"}), "expected chi2 or loglike, got 'chi'"),
        (with_changes(likelihood={"python": "a:b", "timeout": -3}), "positive number of seconds, got -3"),
        (with_changes(settings={"batch_size": 0}), "settings.batch_size: invalid value 0"),
        (with_changes(settings={"acquisition": "magic"}), "committee, gp, random"),
        (with_changes(settings={"low_recall": 0}), "settings.low_recall: invalid value 0"),
        (with_changes(settings={"low_recall": 1.5}), "at most 1"),
        (with_changes(settings={"nonsense": 1}), "settings: unknown key(s) nonsense"),
        (with_changes(name="has space"), "invalid campaign name 'has space'"),
        ({"name": "toy", "parameters": GOOD["parameters"]}, "missing required key 'likelihood'"),
    ],
)
def test_invalid_definition_rejected(data, expected):
    with pytest.raises(ConfigError) as info:
        parse_campaign(data)
    assert expected in str(info.value)


def test_valid_definition_parsed():
    spec = parse_campaign(with_changes(settings={"batch_size": 8, "delta_chi2": 5}))

    assert spec.space.names == ("x", "m")
    assert spec.settings.batch_size == 8
    assert spec.settings.delta_chi2 == 5.0
    assert spec.likelihood.version == "1"


def test_duplicate_yaml_key_rejected(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(textwrap.dedent("""\
        name: toy
        parameters:
          x: {low: 0, high: 1}
          x: {low: 0, high: 2}
        likelihood: {python: "m:f"}
        """))

    with pytest.raises(ConfigError, match="duplicate key 'x' at line 4"):
        load_campaign_file(path)


def test_missing_file_reported(tmp_path):
    with pytest.raises(ConfigError, match="cannot read campaign file"):
        load_campaign_file(tmp_path / "absent.yaml")


def test_default_delta_chi2_grows_with_dimension():
    settings = Settings()

    assert settings.low_region_width(2) == pytest.approx(13.8155, rel=1e-4)
    assert settings.low_region_width(6) > settings.low_region_width(2)


def test_log_scale_round_trip():
    spec = parse_campaign(GOOD)
    x = np.array([[0.5, 1.0], [-1.0, 0.1], [1.0, 10.0]])

    unit = spec.space.to_unit(x)

    assert unit[1].tolist() == [0.0, 0.0]
    assert unit[0, 1] == pytest.approx(0.5)
    np.testing.assert_allclose(spec.space.from_unit(unit), x)


def test_design_inside_box_and_seeded():
    space = parse_campaign(GOOD).space

    first = space.design(100, "sobol", seed=3)
    again = space.design(100, "sobol", seed=3)
    lhs = space.design(50, "lhs", seed=3)

    assert first.shape == (100, 2)
    assert space.contains(first).all()
    assert space.contains(lhs).all()
    np.testing.assert_array_equal(first, again)


def test_log_prior_normal_and_outside():
    spec = parse_campaign(with_changes(parameters={
        "x": {"low": -5, "high": 5, "prior": {"normal": {"mean": 1.0, "std": 2.0}}},
    }))

    values = spec.space.log_prior(np.array([[1.0], [3.0], [6.0]]))

    assert values[0] == 0.0
    assert values[1] == pytest.approx(-0.5)
    assert values[2] == -np.inf
