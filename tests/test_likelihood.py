"""Calling user likelihoods: seeds, return values and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from campaign.config import LikelihoodRef
from campaign.errors import LikelihoodError
from campaign.likelihood import Likelihood, derive_seed, normalize_result


def test_seed_not_passed_to_catch_all(repo_cwd):
    likelihood = Likelihood(LikelihoodRef(python="tests/likelihoods/quadratic.py:chi2"), ("a", "b"))

    chi2, outputs = likelihood({"a": 1.0, "b": 2.0}, seed=12345)

    assert chi2 == 5.0
    assert outputs == {}


def test_global_random_state_seeded(repo_cwd):
    likelihood = Likelihood(LikelihoodRef(python="numpy.random:random"), ())

    first, _ = likelihood({}, seed=7)
    second, _ = likelihood({}, seed=7)

    assert first == second


def test_derived_seed_depends_on_point():
    assert derive_seed(1, 10) == derive_seed(1, 10)
    assert derive_seed(1, 10) != derive_seed(1, 11)
    assert derive_seed(2, 10) != derive_seed(1, 10)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3.5, 3.5),
        (np.float32(2.0), 2.0),
        (np.array(4.0), 4.0),
        (math.inf, math.inf),
        ({"chi2": 1.0, "br": np.array([1.0, 2.0])}, 1.0),
    ],
)
def test_valid_results(value, expected):
    assert normalize_result(value, "chi2")[0] == expected


def test_loglike_converted_to_chi2():
    assert normalize_result({"loglike": -2.5, "extra": math.nan}, "loglike") == (5.0, {"extra": "NaN"})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("12", "got str"),
        (None, "got NoneType"),
        (np.array([1.0, 2.0]), "of shape (2,)"),
        (True, "got bool"),
        ({"loglike": 1.0}, "without the key 'chi2'"),
    ],
)
def test_invalid_results(value, message):
    with pytest.raises(LikelihoodError, match=message.replace("(", r"\(").replace(")", r"\)")):
        normalize_result(value, "chi2")
