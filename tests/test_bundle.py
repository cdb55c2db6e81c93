"""Bundles: export/import round trips, merges and rejected files."""

from __future__ import annotations

import math
import shutil
import sqlite3

import numpy as np
import pytest
import sqlalchemy as sa
import xgboost as xgb
from click.testing import CliRunner

from campaign import api
from campaign.bundle import export_bundle, import_bundle
from campaign.cli import main
from campaign.errors import ConfigError, ConflictError, SchemaError
from campaign.store import models
from campaign.store.campaigns import find_campaign
from campaign.store.points import insert_points
from sharing_data import GRID, campaign_spec, fill_campaign


@pytest.fixture
def bundle(db_url, tmp_path):
    """A bundle exported from a filled campaign on each backend."""
    data = fill_campaign(db_url)
    path = tmp_path / "toy.campaign"
    export_bundle(data.name, path, db_url)
    return path, data, db_url


@pytest.fixture
def sqlite_bundle(sqlite_url, tmp_path):
    """A bundle exported from SQLite, for checks of the file that do not depend on the backend."""
    data = fill_campaign(sqlite_url)
    path = tmp_path / "toy.campaign"
    export_bundle(data.name, path, sqlite_url)
    return path, data, sqlite_url


def point_rows(url: str, name: str) -> list[tuple]:
    frame = api.open_campaign(name, url).points()
    columns = ["a", "b", "chi2", "status", "origin", "step", "created_by", "user", "outputs", "likelihood_version"]
    return sorted(tuple(_comparable(v) for v in row) for row in frame[columns].itertuples(index=False))


def _comparable(value):
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, dict):
        return tuple(sorted(value.items()))
    return value


def table_counts(url: str) -> dict[str, int]:
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        names = set(sa.inspect(connection).get_table_names())
        counts = {
            table: connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in models.Base.metadata.tables if table in names
        }
    engine.dispose()
    return counts


def model_rows(url: str, name: str) -> list[tuple]:
    fit = api.open_campaign(name, url)
    with fit.store.transaction() as session:
        rows = session.scalars(
            sa.select(models.ModelVersion).where(models.ModelVersion.campaign_id == fit.id).order_by(models.ModelVersion.version)
        ).all()
        parents = {row.id: row.version for row in rows}
        return [
            (row.version, parents.get(row.parent_id), row.metrics, [(b.role, b.data) for b in row.boosters])
            for row in rows
        ]


def test_round_trip_preserves_points(bundle, tmp_path):
    path, data, url = bundle
    target = f"sqlite:///{tmp_path / 'target.db'}"
    summary = import_bundle(path, target)
    assert summary.created
    assert summary.added["points"] == data.n_points
    assert point_rows(target, data.name) == point_rows(url, data.name)


def test_round_trip_preserves_models_and_chains(bundle, tmp_path):
    path, data, url = bundle
    target = f"sqlite:///{tmp_path / 'target.db'}"
    import_bundle(path, target)
    assert model_rows(target, data.name) == model_rows(url, data.name)

    booster = xgb.Booster(model_file=bytearray(data.boosters[(2, "regressor")]))
    stored = dict(model_rows(target, data.name)[1][3])["regressor"]
    copied = xgb.Booster(model_file=bytearray(stored))
    features = xgb.DMatrix(GRID, feature_names=["a", "b"])
    assert np.array_equal(copied.predict(features), booster.predict(features))

    samples = api.query("SELECT a, b, log_prob FROM samples ORDER BY iteration, walker", target, data.name)
    assert samples[["a", "b"]].to_numpy() == pytest.approx(data.samples)
    counts = table_counts(target)
    for table in ("posterior_summaries", "profiles", "shap_summaries", "best_fits", "validations", "steps"):
        assert counts[table] == table_counts(url)[table], table


def test_import_into_source_backend(bundle):
    path, data, url = bundle
    summary = import_bundle(path, url, into="copy")
    assert summary.created
    assert point_rows(url, "copy") == point_rows(url, data.name)
    assert model_rows(url, "copy") == model_rows(url, data.name)
    validation_points = api.query("SELECT count(*) AS n FROM validations v JOIN campaigns c ON c.id = v.campaign_id "
                                  "WHERE c.name = 'copy'", url)
    assert validation_points["n"][0] == 1


def test_second_import_adds_nothing(bundle):
    path, data, url = bundle
    before = table_counts(url)
    summary = import_bundle(path, url)
    assert not summary.created
    assert summary.matched["points"] == data.n_points
    assert summary.matched["model_versions"] == 2
    assert summary.matched["chains"] == 1
    assert table_counts(url) == before


def test_merge_adds_missing_points(bundle, tmp_path):
    path, data, _ = bundle
    target = f"sqlite:///{tmp_path / 'target.db'}"
    fit = api.create_campaign(campaign_spec(), target, check=False)
    with fit.store.transaction() as session:
        row = find_campaign(session, fit.name)
        insert_points(session, row, GRID[:4], "manual")
        insert_points(session, row, np.array([[4.5, -4.5]]), "manual", chi2=[40.5])

    summary = import_bundle(path, target)
    assert summary.matched["points"] == 4
    assert summary.added["points"] == data.n_points - 4

    frame = fit.points()
    assert len(frame) == data.n_points + 1
    first = frame[(frame["a"] == GRID[0][0]) & (frame["b"] == GRID[0][1])]
    assert first["status"].tolist() == ["done"]
    assert first["chi2"].tolist() == [(GRID[0] ** 2).sum()]


def test_merge_different_space_rejected(bundle, tmp_path):
    path, _, _ = bundle
    target = f"sqlite:///{tmp_path / 'target.db'}"
    api.create_campaign(campaign_spec(low_b=-4.0), target, check=False)
    before = table_counts(target)
    with pytest.raises(ConflictError) as info:
        import_bundle(path, target)
    message = str(info.value)
    assert "parameter space differs" in message
    assert "~ b:" in message
    assert "-4.0" in message
    assert table_counts(target) == before


def test_failed_import_leaves_nothing(sqlite_bundle, tmp_path):
    path, data, _ = sqlite_bundle
    broken = tmp_path / "broken.campaign"
    shutil.copyfile(path, broken)
    with sqlite3.connect(broken) as connection:
        connection.execute("UPDATE points SET x = x'00' WHERE id = (SELECT max(id) FROM points)")
    connection.close()
    target = f"sqlite:///{tmp_path / 'target.db'}"
    api.campaigns(target)
    before = table_counts(target)
    with pytest.raises(ConfigError, match="bundle is corrupt"):
        import_bundle(broken, target)
    assert table_counts(target) == before
    assert api.campaigns(target) == []


@pytest.mark.parametrize("damage", ["text", "truncated", "no-schema"])
def test_bad_file_rejected(tmp_path, sqlite_bundle, damage):
    path, _, _ = sqlite_bundle
    bad = tmp_path / "bad.campaign"
    if damage == "text":
        bad.write_text("not a bundle\n")
        expected = "not an SQLite database"
    elif damage == "truncated":
        bad.write_bytes(path.read_bytes()[:4096])
        expected = "corrupt campaign bundle"
    else:
        sqlite3.connect(bad).execute("CREATE TABLE t (x)").connection.close()
        expected = "no campaign_alembic_version table"
    target = tmp_path / "target.db"
    with pytest.raises(ConfigError, match=expected):
        import_bundle(bad, f"sqlite:///{target}")
    assert not target.exists()


def test_newer_schema_rejected(sqlite_bundle, tmp_path):
    path, _, _ = sqlite_bundle
    newer = tmp_path / "newer.campaign"
    shutil.copyfile(path, newer)
    with sqlite3.connect(newer) as connection:
        connection.execute("UPDATE campaign_alembic_version SET version_num = '9999'")
    connection.close()
    with pytest.raises(SchemaError, match="newer campaign"):
        import_bundle(newer, f"sqlite:///{tmp_path / 'target.db'}")
    assert newer.read_bytes() != b""


def test_export_keeps_existing_file(sqlite_bundle):
    path, data, url = sqlite_bundle
    before = path.read_bytes()
    with pytest.raises(ConflictError, match="exists already"):
        export_bundle(data.name, path, url)
    assert path.read_bytes() == before
    export_bundle(data.name, path, url, overwrite=True)
    assert len(list(path.parent.glob(f".{path.name}*"))) == 0


def test_bundle_readable_with_sqlite3(sqlite_bundle):
    path, data, _ = sqlite_bundle
    with sqlite3.connect(path) as connection:
        count = connection.execute("SELECT count(*) FROM points_toy WHERE chi2 < 1.5").fetchone()[0]
    connection.close()
    assert count == sum(1 for a, b in GRID if a * a + b * b < 1.5)


def test_cli_export_import(db_url, tmp_path):
    data = fill_campaign(db_url)
    runner = CliRunner()
    path = tmp_path / "cli.campaign"
    exported = runner.invoke(main, ["--db", db_url, "export", data.name, str(path)])
    assert exported.exit_code == 0, exported.output
    assert f"{data.n_points} points, 2 model versions, 1 chain." in exported.output

    target = f"sqlite:///{tmp_path / 'cli-target.db'}"
    imported = runner.invoke(main, ["--db", target, "import", str(path), "--into", "shared-toy"])
    assert imported.exit_code == 0, imported.output
    assert "Created campaign 'shared-toy'" in imported.output
    assert len(api.open_campaign("shared-toy", target).points()) == data.n_points

    again = runner.invoke(main, ["--db", target, "export", data.name, str(path)])
    assert again.exit_code == 2
    missing = runner.invoke(main, ["--db", target, "import", str(tmp_path / "missing.campaign")])
    assert missing.exit_code == 2
    assert "not found" in missing.output
