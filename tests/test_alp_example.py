"""The ALP example: deterministic chi2 under Python 3.12.

ALPaca needs Python 3.12, and this suite runs on 3.11 and newer, so the test
runs the likelihood in a separate interpreter: ``$CAMPAIGN_PYTHON312``, else
``python3.12`` on PATH. It is skipped with the reason when that interpreter or
alpaca-ALPs is missing.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess

import pytest

from conftest import REPO

DATA = REPO.parent / "shared" / "data" / "alp_bknunu_lhs300.csv"
COLUMNS = ("log10fa", "x_qL33", "x_uR", "x_dR", "x_lL33", "x_eR")

EVALUATE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("alp", "examples/alp-bknunu/likelihood.py")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
points = json.load(sys.stdin)
print(json.dumps([module.chi2(*point) for point in points]))
"""


def find_python312() -> str | None:
    candidate = os.environ.get("CAMPAIGN_PYTHON312") or shutil.which("python3.12")
    if candidate is None:
        return None
    probe = subprocess.run([candidate, "-c", "import alpaca"], capture_output=True, timeout=300)
    return candidate if probe.returncode == 0 else None


@pytest.mark.slow
def test_alp_chi2_matches_stored_points(repo_cwd):
    python = find_python312()
    if python is None:
        pytest.skip("no Python 3.12 with alpaca-ALPs; set CAMPAIGN_PYTHON312 to such an interpreter")
    if not DATA.is_file():
        pytest.skip(f"stored ALP evaluations not found at {DATA}")
    rows = list(csv.DictReader(DATA.open()))[:3]
    points = [[float(row[name]) for name in COLUMNS] for row in rows]

    # Each point is evaluated twice, so the second value comes after the first cache fill.
    completed = subprocess.run(
        [python, "-c", EVALUATE], input=json.dumps(points + points), capture_output=True, text=True,
        timeout=900, cwd=REPO,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    values = json.loads(completed.stdout.strip().splitlines()[-1])

    for row, first, second in zip(rows, values[:3], values[3:]):
        assert first == pytest.approx(float(row["chi2"]), rel=1e-9)
        assert second == first
