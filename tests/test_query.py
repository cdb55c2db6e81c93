"""Read-only SQL queries: campaign relations, output formats and rejected input."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from campaign.cli import main
from campaign.errors import ConfigError, NotFoundError, SchemaError
from campaign.sql import check_single_statement, run_query
from sharing_data import GRID, N_ITERATIONS, N_WALKERS, fill_campaign


@pytest.fixture
def filled(db_url):
    return db_url, fill_campaign(db_url)


def count_points(url: str) -> int:
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        count = connection.execute(sa.text("SELECT count(*) FROM points")).scalar_one()
    engine.dispose()
    return count


def test_points_relation_columns(filled):
    url, data = filled
    frame = run_query("SELECT * FROM points ORDER BY id", url, campaign=data.name)
    assert list(frame.columns[:4]) == ["id", "a", "b", "chi2"]
    for column in ("status", "origin", "step", "evaluated_at", "created_by"):
        assert column in frame.columns
    assert len(frame) == data.n_points


def test_points_filter_known_values(filled):
    url, data = filled
    frame = run_query("SELECT a, b, chi2 FROM points WHERE chi2 < 1.5 ORDER BY a, b", url, campaign=data.name)
    expected = sorted((a, b) for a, b in GRID if a * a + b * b < 1.5)
    assert list(zip(frame["a"], frame["b"])) == expected
    assert frame["chi2"].tolist() == [a * a + b * b for a, b in expected]


def test_nan_and_inf_chi2_returned(filled):
    url, data = filled
    frame = run_query("SELECT a, chi2 FROM points WHERE step = 1 ORDER BY a", url, campaign=data.name)
    assert math.isnan(frame["chi2"][0])
    assert frame["chi2"][1] == math.inf
    assert frame["chi2"].dtype == float


def test_samples_models_chains_relations(filled):
    url, data = filled
    samples = run_query("SELECT walker, a, b, log_prob FROM samples ORDER BY chain_id, iteration, walker", url, data.name)
    assert len(samples) == N_ITERATIONS * N_WALKERS
    assert samples["a"].to_numpy() == pytest.approx(data.samples[:, 0])
    assert samples["log_prob"].to_numpy() == pytest.approx(-0.5 * (data.samples ** 2).sum(axis=1))

    models = run_query("SELECT version, parent_version, n_train FROM models ORDER BY version", url, data.name)
    assert models["version"].tolist() == [1, 2]
    assert math.isnan(models["parent_version"][0])
    assert models["parent_version"][1] == 1

    chains = run_query("SELECT model_version, n_walkers FROM chains", url, data.name)
    assert chains["model_version"].tolist() == [2]
    assert chains["n_walkers"].tolist() == [N_WALKERS]


def test_campaign_views_hide_other_campaigns(db_url):
    fill_campaign(db_url, "first")
    fill_campaign(db_url, "second")
    assert len(run_query("SELECT id FROM points", db_url, "first")) == len(GRID) + 3
    assert len(run_query("SELECT id FROM points", db_url)) == 2 * (len(GRID) + 3)
    assert run_query("SELECT count(*) AS n FROM models", db_url, "second")["n"][0] == 2


def test_percent_in_like_pattern(filled):
    url, data = filled
    frame = run_query("SELECT count(*) AS n FROM points WHERE origin LIKE 'init%'", url, data.name)
    assert frame["n"][0] == len(GRID)


@pytest.mark.parametrize("sql, keyword", [
    ("DELETE FROM points", "DELETE"),
    ("UPDATE points SET chi2 = 0", "UPDATE"),
    ("DROP TABLE points", "DROP"),
    ("INSERT INTO campaigns (name) VALUES ('x')", "INSERT"),
    ("PRAGMA writable_schema=1", "PRAGMA"),
    ("-- comment\n /* block */ pragma query_only=OFF", "PRAGMA"),
    ("SET TRANSACTION READ WRITE", "SET"),
    ("BEGIN", "BEGIN"),
])
def test_writes_rejected_unchanged(filled, sql, keyword):
    url, data = filled
    before = count_points(url)
    for campaign in (None, data.name):
        with pytest.raises(ConfigError, match="only read queries") as info:
            run_query(sql, url, campaign)
        assert repr(keyword) in str(info.value)
        assert "DROP VIEW" not in str(info.value)
    assert count_points(url) == before


def test_attach_rejected_before_driver(filled, tmp_path):
    url, _ = filled
    attached = tmp_path / "x.db"
    with pytest.raises(ConfigError, match="only read queries.*'ATTACH'"):
        run_query(f"ATTACH DATABASE '{attached}' AS x", url)
    assert not attached.exists()


def test_read_keywords_accepted(filled):
    url, data = filled
    assert run_query("  /* c */ SELECT 1 AS n", url)["n"].tolist() == [1]
    assert run_query("WITH t AS (SELECT 2 AS n) SELECT n FROM t", url)["n"].tolist() == [2]
    assert run_query("values (3)", url).iloc[0, 0] == 3
    assert len(run_query("EXPLAIN SELECT * FROM points", url, data.name)) > 0
    if url.startswith("postgresql"):
        assert len(run_query("TABLE points", url, data.name)) == data.n_points
        assert run_query("(SELECT 4 AS n)", url)["n"].tolist() == [4]
    else:
        with pytest.raises(ConfigError, match="'TABLE'; start it with SELECT, WITH, VALUES or EXPLAIN"):
            run_query("TABLE points", url, data.name)


def test_write_on_base_table_rejected_by_database(filled):
    url, data = filled
    # A write behind a WITH passes the keyword check; the read-only connection
    # or transaction rejects it. With a campaign, "points" is a view, so the
    # qualified base table is used.
    table = "main.points" if url.startswith("sqlite") else "points"
    with pytest.raises(ConfigError, match="read-only and the database rejected a write"):
        run_query(f"WITH t AS (SELECT 1) DELETE FROM {table}", url)
    if url.startswith("postgresql"):
        with pytest.raises(ConfigError, match="read-only and the database rejected a write"):
            run_query("EXPLAIN ANALYZE DELETE FROM points", url)
    assert count_points(url) == data.n_points


def test_second_statement_rejected(filled):
    url, data = filled
    for sql in ("SELECT 1; DROP TABLE points", "SELECT 1; COMMIT; DELETE FROM points"):
        with pytest.raises(ConfigError, match="only one SQL statement"):
            run_query(sql, url, data.name)
    assert count_points(url) == data.n_points


def test_semicolons_in_literals_allowed():
    assert check_single_statement("SELECT ';' AS s; ") == "SELECT ';' AS s"
    assert check_single_statement('SELECT 1 AS "a;b" -- trailing; comment\n;') == 'SELECT 1 AS "a;b" -- trailing; comment\n'
    assert check_single_statement("SELECT 'it''s; fine'") == "SELECT 'it''s; fine'"
    with pytest.raises(ConfigError, match="empty"):
        check_single_statement("  ;  ")
    with pytest.raises(ConfigError, match="only one"):
        check_single_statement("SELECT 1; /* x */ SELECT 2")


def test_unknown_column_lists_columns(filled):
    url, data = filled
    with pytest.raises(ConfigError) as info:
        run_query("SELECT nope FROM points", url, data.name)
    message = str(info.value)
    assert "unknown column" in message
    assert "nope" in message
    assert "points: id, a, b, chi2" in message


def test_syntax_error_message_short(filled):
    url, data = filled
    with pytest.raises(ConfigError) as info:
        run_query("SELECT a FROM points WHERE ORDER", url, data.name)
    message = str(info.value)
    assert message.startswith("SQL syntax error:")
    assert "ORDER" in message
    assert "\n" not in message
    with pytest.raises(ConfigError, match="starts with 'SELEC'"):
        run_query("SELEC a FROM points", url, data.name)


def test_unknown_table_lists_relations(filled):
    url, data = filled
    with pytest.raises(ConfigError, match="unknown table.*points, samples, models, chains"):
        run_query("SELECT * FROM nowhere", url, data.name)


def test_unknown_campaign(filled):
    url, _ = filled
    with pytest.raises(NotFoundError, match="'nope' not found; existing campaigns: toy"):
        run_query("SELECT 1", url, "nope")


def test_empty_database_schema_error(tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    with pytest.raises(SchemaError, match="no campaign schema"):
        run_query("SELECT 1", url)
    assert not (tmp_path / "empty.db").exists() or (tmp_path / "empty.db").stat().st_size == 0


def test_cli_formats(filled, tmp_path):
    url, data = filled
    runner = CliRunner()
    sql = "SELECT a, b, chi2 FROM points WHERE chi2 = 0"

    table = runner.invoke(main, ["--db", url, "query", data.name, sql])
    assert table.exit_code == 0, table.output
    assert table.output.splitlines()[0].split() == ["a", "b", "chi2"]
    assert "(1 row)" in table.output

    as_json = runner.invoke(main, ["--db", url, "query", data.name, sql, "--format", "json"])
    assert json.loads(as_json.output) == [{"a": 0.0, "b": 0.0, "chi2": 0.0}]

    as_csv = runner.invoke(main, ["--db", url, "query", data.name, sql, "--format", "csv"])
    assert as_csv.output.splitlines() == ["a,b,chi2", "0.0,0.0,0.0"]

    path = tmp_path / "out.parquet"
    written = runner.invoke(main, ["--db", url, "query", data.name, sql, "--format", "parquet", "-o", str(path)])
    assert written.exit_code == 0, written.output
    assert f"Wrote 1 row to {path}." in written.output
    assert pd.read_parquet(path).to_dict("records") == [{"a": 0.0, "b": 0.0, "chi2": 0.0}]


NON_FINITE_SQL = (
    "SELECT a, CASE WHEN a = 4 THEN -chi2 ELSE chi2 END AS signed, chi2 FROM points WHERE step > 0 ORDER BY a"
)


def test_cli_table_nan_differs_from_null(filled):
    url, data = filled
    result = CliRunner().invoke(main, ["--db", url, "query", data.name, NON_FINITE_SQL])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines()[2:5]]
    assert rows == [["-3", "-", "-"], ["3", "nan", "nan"], ["4", "-inf", "inf"]]


def test_cli_csv_json_nan_differs_from_null(filled):
    url, data = filled
    runner = CliRunner()
    as_csv = runner.invoke(main, ["--db", url, "query", data.name, NON_FINITE_SQL, "--format", "csv"])
    assert as_csv.exit_code == 0, as_csv.output
    assert as_csv.output.splitlines() == ["a,signed,chi2", "-3.0,,", "3.0,NaN,NaN", "4.0,-inf,inf"]

    as_json = runner.invoke(main, ["--db", url, "query", data.name, NON_FINITE_SQL, "--format", "json"])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.output) == [
        {"a": -3.0, "signed": None, "chi2": None},
        {"a": 3.0, "signed": "NaN", "chi2": "NaN"},
        {"a": 4.0, "signed": "-Infinity", "chi2": "Infinity"},
    ]


def test_parquet_nan_differs_from_null(filled, tmp_path):
    import pyarrow.parquet as pq

    url, data = filled
    path = tmp_path / "out.parquet"
    result = CliRunner().invoke(main, ["--db", url, "query", data.name, NON_FINITE_SQL, "--format", "parquet", "-o", str(path)])
    assert result.exit_code == 0, result.output
    table = pq.read_table(path)
    assert table.column("chi2").null_count == 1
    signed = table.column("signed").to_pylist()
    assert signed[0] is None
    assert math.isnan(signed[1])
    assert signed[2] == -math.inf


def test_cli_bad_input_exit_2(filled):
    url, data = filled
    runner = CliRunner()
    cases = [
        [data.name, "SELECT nope FROM points"],
        [data.name, "DELETE FROM points"],
        [data.name, "PRAGMA writable_schema=1"],
        ["ATTACH DATABASE 'attached.db' AS x"],
        [data.name, "SELECT 1; DELETE FROM points"],
        ["missing", "SELECT 1"],
        [data.name, "SELECT a FROM points", "--format", "parquet"],
    ]
    for arguments in cases:
        result = runner.invoke(main, ["--db", url, "query", *arguments])
        assert result.exit_code == 2, (arguments, result.output)
        assert "Traceback" not in result.output
    assert count_points(url) == data.n_points


def test_result_views_hide_other_campaigns(db_url):
    fill_campaign(db_url, "first")
    fill_campaign(db_url, "second")
    for table in ("best_fits", "profiles", "validations", "posterior_summaries", "steps", "shap_summaries"):
        everything = len(run_query(f"SELECT * FROM {table}", db_url))
        first = len(run_query(f"SELECT * FROM {table}", db_url, "first"))
        assert first * 2 == everything, table
    best = run_query("SELECT model_version, chi2 FROM best_fits", db_url, "first")
    assert best["model_version"].tolist() == [2]
