"""The flavio b -> s nu nu example, at CI size.

Skipped when flavio is not installed (``pip install '.[flavio]'``). The
checks use facts independent of this project: flavio's own Standard-Model
predictions, the symmetry of the branching ratios, and the +inf chi2 where
an upper-limit pdf has finite support.
"""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest

pytest.importorskip("flavio", reason="flavio is not installed; run pip install '.[flavio]' to test the flavio example")

import flavio  # noqa: E402

from campaign.api import create_campaign  # noqa: E402
from campaign.config import load_campaign_file  # noqa: E402
from campaign.likelihood import load_likelihood  # noqa: E402
from campaign.store import models  # noqa: E402
from campaign.store.points import insert_points  # noqa: E402

from conftest import REPO  # noqa: E402


@pytest.fixture(scope="module")
def example():
    path = REPO / "examples" / "flavio-bsnunu" / "likelihood.py"
    spec = importlib.util.spec_from_file_location("example_flavio_bsnunu", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_standard_model_predictions(example):
    result = example.chi2(0.0, 0.0)

    for name in example.OBSERVABLES:
        assert result[name] == pytest.approx(flavio.sm_prediction(name), rel=1e-10)
    assert 0.0 < result["chi2"] < math.inf


def test_belle2_measurement_included(example):
    likelihood = example.build_likelihood()
    measurement = flavio.Measurement[example.BELLE2_MEASUREMENT]

    assert example.BELLE2_MEASUREMENT in likelihood.measurement_likelihood.get_measurements
    assert measurement.get_central_all() == {"BR(B+->Knunu)": pytest.approx(2.3e-5)}


def test_mirror_point_same_chi2(example):
    point = (3.0, -2.0)
    mirrored = example.mirror(*point)

    assert mirrored[0].real == pytest.approx(-2.0 * example.CL_SM - 3.0)
    assert example.chi2(*point)["chi2"] == pytest.approx(example.chi2(mirrored[0].real, mirrored[1].real)["chi2"], rel=1e-9)


def test_finite_support_gives_infinite_chi2(example):
    # BR(B+ -> K*+ nu nu) is about 40 times the Standard Model here, far above the limits.
    assert example.chi2(-20.0, 20.0)["chi2"] == math.inf


def test_real_parts_match_4d(example):
    two_d = example.chi2(1.5, 4.0)
    four_d = example.chi2_4d(1.5, 0.0, 4.0, 0.0)

    assert four_d == two_d


def test_short_campaign_stores_infinite_chi2(sqlite_url, repo_cwd):
    spec = load_campaign_file("examples/flavio-bsnunu/campaign.yaml")
    campaign = create_campaign(spec, sqlite_url)
    likelihood = load_likelihood(spec.likelihood, spec.space.names)
    x = spec.space.design(16, "sobol", seed=spec.settings.seed)
    results = [likelihood(dict(zip(spec.space.names, row))) for row in x]
    chi2 = np.array([value for value, _ in results])

    with campaign.store.transaction() as session:
        row = session.get(models.Campaign, campaign.id)
        insert_points(session, row, x, "initial", chi2=chi2, outputs=[outputs for _, outputs in results])
    stored = campaign.arrays()

    np.testing.assert_array_equal(stored.chi2, chi2)
    assert np.isinf(chi2).any()
    assert np.isfinite(chi2).any()


@pytest.mark.slow
def test_short_campaign_end_to_end(tmp_path, example, repo_cwd):
    """Run run.sh's commands with a small budget: 16 initial points and one step of 8."""
    import json
    import subprocess
    import sys

    import yaml

    definition = yaml.safe_load((REPO / "examples/flavio-bsnunu/campaign.yaml").read_text())
    definition["settings"].update(initial_points=16, batch_size=8, n_candidates=512, tuning_iterations=4)
    campaign_file = tmp_path / "campaign.yaml"
    # Importing flavio makes PyYAML load OrderedDicts, which safe_dump rejects, so
    # the file is written as JSON, which is also YAML.
    campaign_file.write_text(json.dumps(definition))
    url = f"sqlite:///{tmp_path / 'short.db'}"
    report = tmp_path / "report.html"
    commands = [
        ["create", "--file", str(campaign_file)],
        ["run", "flavio-bsnunu", "--steps", "1", "--workers", "2", "--no-progress"],
        ["sample", "flavio-bsnunu", "--max-steps", "1000", "--check-every", "250", "--backend", "xgboost"],
        ["validate", "flavio-bsnunu", "--n", "2", "--workers", "2"],
        ["explain", "flavio-bsnunu"],
        ["report", "flavio-bsnunu", "-o", str(report)],
    ]

    for command in commands:
        completed = subprocess.run(
            [sys.executable, "-m", "campaign", "--db", url, *command], capture_output=True, text=True, timeout=600,
        )
        assert completed.returncode == 0, f"campaign {' '.join(command)} failed:\n{completed.stderr[-3000:]}"

    from campaign.api import open_campaign

    points = open_campaign("flavio-bsnunu", url).arrays()
    finite = points.chi2[np.isfinite(points.chi2)]
    assert len(points.chi2) >= 16 + 8
    assert finite.min() >= example.CHI2_MIN - 1e-4
    assert np.isinf(points.chi2).any()
    assert report.stat().st_size > 10_000
