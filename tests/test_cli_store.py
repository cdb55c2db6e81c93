"""The create, list, show and db commands, as a user runs them."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from campaign import __version__
from campaign.cli import main
from campaign.store import Store

EXAMPLE = "examples/gaussian-4d/campaign.yaml"


def run(db_url, *args):
    return CliRunner().invoke(main, ["--db", db_url, *args])


def campaign_count(db_url) -> int:
    with Store(db_url).engine.connect() as connection:
        return connection.execute(sa.text("SELECT count(*) FROM campaigns")).scalar_one()


def test_version():
    result = CliRunner().invoke(main, ["--version"])

    assert result.exit_code == 0
    assert __version__ in result.output


@pytest.mark.parametrize("command", [[], ["create"], ["list"], ["show"], ["db"], ["db", "current"], ["db", "upgrade"]])
def test_help_for_every_command(command):
    result = CliRunner().invoke(main, [*command, "--help"])

    assert result.exit_code == 0
    assert "Usage:" in result.output


def test_create_list_show_example(db_url, repo_cwd):
    created = run(db_url, "create", "--file", EXAMPLE)
    listed = run(db_url, "list")
    shown = run(db_url, "show", "gaussian-4d")

    assert created.exit_code == 0, created.output
    assert "Created campaign 'gaussian-4d' with 4 parameters" in created.output
    assert "gaussian-4d" in listed.output
    assert shown.exit_code == 0, shown.output
    assert "x2" in shown.output
    assert "chi2 < chi2_min + 10" in shown.output
    assert "points_gaussian_4d" in shown.output


def test_create_from_flags(db_url, repo_cwd):
    result = run(
        db_url, "create", "flags", "-p", "x:-5:5", "-p", "m:0.1:10:log",
        "-l", "tests/likelihoods/quadratic.py:chi2", "--set", "batch_size=4", "--timeout", "30",
    )
    shown = run(db_url, "show", "flags")

    assert result.exit_code == 0, result.output
    assert "batch_size=4" in shown.output
    assert "timeout 30 s" in shown.output
    assert "log" in shown.output


BAD_FILES = [
    ("name: bad\nparameters: {x: {low: 1, high: 0}}\nlikelihood: {python: 'tests/likelihoods/quadratic.py:chi2'}\n",
     "parameters.x: low must be smaller than high, got low=1.0 and high=0.0"),
    ("name: bad\nparameters: {x: {low: 0, high: 1}}\nlikelihood: {python: 'tests/likelihoods/absent.py:chi2'}\n",
     "file 'tests/likelihoods/absent.py'"),
    ("name: bad\nparameters: {x: {low: 0, high: 1}}\nlikelihood: {python: 'no_such_module_xyz:chi2'}\n",
     "cannot import module 'no_such_module_xyz'"),
    ("name: bad\nparameters: {x: {low: 0, high: 1}}\nlikelihood: {python: 'tests/likelihoods/quadratic.py:nope'}\n",
     "has no callable named 'nope'"),
    ("name: bad\nparameters: {x: {low: 0, high: 1}}\nlikelihood: {command: ['/no/such/program']}\n",
     "executable '/no/such/program' not found"),
    ("name: bad\nparameters: {x: {low: 0, high: 1}}\nlikelihood: {python: 'math:hypot'}\nsettings: {seed: -1}\n",
     "settings.seed: invalid value -1"),
    ("name: bad\nparameters: {x: {low: 0, high: .inf}}\nlikelihood: {python: 'math:hypot'}\n",
     "parameters.x.high: expected a finite number, got inf"),
    ("name: bad\nparameters: [x, y]\nlikelihood: {python: 'math:hypot'}\n", "expected a mapping of parameter names"),
    ("name: [unclosed\n", "invalid YAML"),
]


@pytest.mark.parametrize(("text", "message"), BAD_FILES)
def test_bad_file_changes_nothing(db_url, repo_cwd, tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)

    result = run(db_url, "create", "--file", str(path))

    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert campaign_count(db_url) == 0


def test_duplicate_name_exit_2(db_url, repo_cwd):
    run(db_url, "create", "--file", EXAMPLE)

    again = run(db_url, "create", "--file", EXAMPLE)

    assert again.exit_code == 2
    assert "exists already" in again.output
    assert campaign_count(db_url) == 1


def test_signature_mismatch_reported(sqlite_url, repo_cwd):
    result = run(sqlite_url, "create", "sig", "-p", "y:0:1", "-l", "examples/gaussian-4d/likelihood.py:chi2")

    assert result.exit_code == 2
    assert "cannot be called with the parameters y" in result.output


def test_bad_parameter_flag_is_usage_error(sqlite_url):
    result = run(sqlite_url, "create", "f", "-p", "x:1", "-l", "m:f")

    assert result.exit_code == 2
    assert "expected NAME:LOW:HIGH" in result.output


def test_show_unknown_campaign(sqlite_url):
    result = run(sqlite_url, "show", "ghost")

    assert result.exit_code == 2
    assert "campaign 'ghost' not found" in result.output


def test_debug_shows_traceback(sqlite_url, caplog):
    with caplog.at_level(logging.ERROR):
        result = CliRunner().invoke(main, ["--debug", "--db", sqlite_url, "show", "ghost"])

    assert result.exit_code == 2
    assert any(record.exc_info for record in caplog.records)


def test_unreachable_database_is_failure_without_password():
    result = run("postgresql://alice:s3cret@127.0.0.1:9/none", "list")

    assert result.exit_code == 1
    assert "s3cret" not in result.output
    assert "Traceback" not in result.output


def test_default_database_in_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CAMPAIGN_DATABASE_URL", raising=False)

    result = CliRunner().invoke(main, ["list"])

    assert result.exit_code == 0
    assert (tmp_path / "campaign.db").exists()



def test_backend_choices_match_compiled():
    from campaign.cli.posterior_commands import COMPILED_BACKENDS
    from campaign.surrogate.compiled import BACKENDS

    assert COMPILED_BACKENDS == BACKENDS


def test_help_imports_no_xgboost():
    code = "import sys; from campaign.cli import main; print('xgboost' in sys.modules, 'pandas' in sys.modules)"

    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)

    assert completed.stdout.split() == ["False", "False"]


def test_database_error_names_masked_url(tmp_path):
    url = f"sqlite:///{tmp_path}/missing-dir/x.db"

    result = run(url, "list")

    assert result.exit_code == 1
    assert f"database error on {url}: unable to open database file" in result.output
    assert "sqlalche.me" not in result.output
