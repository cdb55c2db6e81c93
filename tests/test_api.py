"""The Python interface reached through ``import campaign``."""

from __future__ import annotations

import pandas as pd
import pytest

import campaign
from sharing_data import GRID, fill_campaign


def test_public_names_resolve():
    for name in campaign.API_NAMES:
        assert callable(getattr(campaign, name)), name
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        campaign.nonexistent


def test_open_points_query_export(sqlite_url, tmp_path):
    data = fill_campaign(sqlite_url)
    fit = campaign.open_campaign(data.name, sqlite_url)

    points = fit.points(status="done")
    assert list(points.columns[:2]) == ["a", "b"]
    assert len(points) == data.n_done

    low = fit.query("SELECT a, b FROM points WHERE chi2 < 1.5")
    assert isinstance(low, pd.DataFrame)
    assert len(low) == sum(1 for a, b in GRID if a * a + b * b < 1.5)

    fit.export(tmp_path / "toy.campaign")
    summary = campaign.import_bundle(tmp_path / "toy.campaign", f"sqlite:///{tmp_path / 'copy.db'}", into="copy")
    assert summary.added["points"] == data.n_points
    assert [c["name"] for c in campaign.campaigns(f"sqlite:///{tmp_path / 'copy.db'}")] == ["copy"]
