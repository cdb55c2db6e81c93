"""The evaluation engine with real processes: pool, workers, failures, designs and CSV import."""

import math
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from campaign import api
from campaign.cli import main
from campaign.config import parse_campaign
from campaign.errors import ConfigError
from campaign.evaluation import add_design, add_points_from_csv, evaluate_pending, run_worker
from campaign.store import models
from campaign.store.claims import reclaim_expired

LIKELIHOODS = Path(__file__).resolve().parent / "likelihoods"
CASES = LIKELIHOODS / "evaluation_cases.py"


def make_campaign(url, function="quadratic", *, timeout=None, name="toy", **settings):
    likelihood = {"python": f"{CASES}:{function}", "version": "2.1"}
    if timeout is not None:
        likelihood["timeout"] = timeout
    spec = parse_campaign({
        "name": name,
        "parameters": {"x": {"low": -8, "high": 8}, "y": {"low": -8, "high": 8}},
        "likelihood": likelihood,
        "settings": settings,
    })
    return api.create_campaign(spec, url)


def write_csv(path, rows, header="x,y"):
    path.write_text(header + "\n" + "\n".join(",".join(map(str, row)) for row in rows) + "\n")
    return path


def rows_by_x(fit):
    frame = fit.points()
    return {round(x): row for x, (_, row) in zip(frame["x"], frame.iterrows())}


def evaluation_counts(log_path):
    """Count evaluations per point from the likelihood's log, keyed by (x, y)."""
    if not log_path.exists():
        return Counter()
    return Counter(tuple(line.split()[:2]) for line in log_path.read_text().splitlines())


@pytest.fixture(scope="module")
def forkserver():
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["campaign.api", "campaign.evaluation", "evaluation_processes"])
    return context


def with_config_dir(env: dict) -> dict:
    """Pass this test's likelihood allow-list to workers, which fork from a forkserver started earlier."""
    return {"CAMPAIGN_CONFIG_DIR": os.environ["CAMPAIGN_CONFIG_DIR"], **env}


def run_workers(context, url, count, env, join_seconds):
    """Start ``count`` workers that begin claiming together, wait for them, return their exit codes."""
    from evaluation_processes import worker_process

    # The barrier must outlive the children: Process.start drops its reference to the arguments.
    gate = context.Barrier(count)
    env = with_config_dir(env)
    processes = [context.Process(target=worker_process, args=(url, "toy", gate, env, 1.0)) for _ in range(count)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(join_seconds)
    del gate
    return [process.exitcode for process in processes]


def start_worker(context, url, env, idle_exit=1.0):
    from evaluation_processes import worker_process

    process = context.Process(target=worker_process, args=(url, "toy", None, with_config_dir(env), idle_exit))
    process.start()
    return process


def wait_for_status(fit, point_id, status, seconds=30.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with fit.store.transaction() as session:
            if session.get(models.Point, point_id).status == status:
                return
        time.sleep(0.05)
    raise AssertionError(f"point {point_id} did not become {status} within {seconds} s")


# Designs and CSV import


def test_design_reproducible_from_campaign_seed(tmp_path):
    first = make_campaign(f"sqlite:///{tmp_path / 'a.db'}", seed=5)
    second = make_campaign(f"sqlite:///{tmp_path / 'b.db'}", seed=5)
    add_design(first, 16, "lhs")
    add_design(second, 16, "lhs")
    np.testing.assert_array_equal(first.arrays(["pending"]).x, second.arrays(["pending"]).x)

    add_design(first, 16, "lhs")
    x = first.arrays(["pending"]).x
    assert not np.allclose(x[:16], x[16:])
    assert np.all(first.space.contains(x))


def test_design_rejects_bad_arguments(sqlite_url):
    fit = make_campaign(sqlite_url)
    with pytest.raises(ConfigError, match="positive integer"):
        add_design(fit, 0)
    with pytest.raises(ConfigError, match="unknown design 'grid'"):
        add_design(fit, 4, "grid")
    assert fit.status_counts()["pending"] == 0


def test_csv_import_done_and_pending(sqlite_url, tmp_path):
    fit = make_campaign(sqlite_url)
    path = write_csv(tmp_path / "p.csv", [(1, 2, 5.0, 0.3), (-1, 0, "", ""), (2, 2, "nan", ""), (3, 0, "-inf", "")],
                     header="x,y,chi2,mass")
    ids = add_points_from_csv(fit, path)
    assert len(ids) == 4
    frame = fit.points().loc[ids]
    assert list(frame["status"]) == ["done", "pending", "done", "done"]
    assert frame["chi2"].iloc[0] == 5.0
    assert math.isnan(frame["chi2"].iloc[2])
    assert frame["chi2"].iloc[3] == -math.inf
    assert frame["outputs"].iloc[0] == {"mass": 0.3}
    assert list(frame["origin"]) == ["import"] * 4


@pytest.mark.parametrize(("rows", "header", "message"), [
    ([(1, 2)], "x,z", "missing column"),
    ([(1, "abc")], "x,y", "'abc' is not a number"),
    ([(1, 2), (9, 0)], "x,y", "line 3: point outside the parameter box: x=9.0"),
    ([(1, 2, "high")], "x,y,chi2", "chi2 'high' is not a number"),
    ([(1, 2, 3)], "x,y,mass", "extra output columns need a chi2 column"),
    ([(1, "nan")], "x,y", "must be finite"),
])
def test_csv_import_rejects_invalid_file(sqlite_url, tmp_path, rows, header, message):
    fit = make_campaign(sqlite_url)
    with pytest.raises(ConfigError, match=message):
        add_points_from_csv(fit, write_csv(tmp_path / "bad.csv", rows, header))
    assert sum(fit.status_counts().values()) == 0


# Local pool


def test_pool_records_values_failures_and_provenance(db_url, tmp_path):
    fit = make_campaign(db_url, "special")
    ids = add_points_from_csv(fit, write_csv(tmp_path / "p.csv", [(x, 0.5) for x in range(8)]))
    summary = evaluate_pending(fit, workers=2)
    assert (summary.done, summary.failed) == (4, 4)

    rows = rows_by_x(fit)
    assert rows[0]["chi2"] == 0.25
    assert math.isnan(rows[1]["chi2"])
    assert rows[2]["chi2"] == math.inf
    assert rows[3]["chi2"] == -math.inf
    for x in (1, 2, 3):
        assert rows[x]["status"] == "done"
    assert "got str" in rows[4]["error"]
    assert "got NoneType" in rows[5]["error"]
    assert "shape (2,)" in rows[6]["error"]
    assert rows[7]["error"].startswith("ValueError: no physics at x=7.0")
    assert "Traceback" in rows[7]["error"]
    for x in (4, 5, 6, 7):
        assert rows[x]["status"] == "failed"

    row = rows[0]
    assert row["executor"] == "local"
    assert row["host"] == socket.gethostname()
    assert row["pid"] not in (None, os.getpid())
    assert row["user"]
    assert row["started_at"] <= row["finished_at"]
    assert row["eval_seconds"] >= 0
    assert row["likelihood_version"] == "2.1"
    assert row["attempts"] == 1
    assert fit.status_counts()["pending"] == 0
    assert len(ids) == 8


@pytest.mark.slow
def test_pool_timeout_and_crash(db_url, monkeypatch):
    monkeypatch.setenv("CAMPAIGN_SLEEP", "30")
    slow = make_campaign(db_url, "sleepy", timeout=1.0, name="slow")
    add_design(slow, 1)
    crash = make_campaign(db_url, "crashing", name="crash", max_attempts=2)
    add_design(crash, 1)

    started = time.monotonic()
    evaluate_pending(slow, workers=1)
    assert time.monotonic() - started < 20
    row = slow.points().iloc[0]
    assert row["status"] == "failed"
    assert row["error"] == "timed out after 1 s"

    summary = evaluate_pending(crash, workers=1)
    assert (summary.retried, summary.failed) == (1, 1)
    row = crash.points().iloc[0]
    assert row["status"] == "failed"
    assert row["attempts"] == 2
    assert "exited with status 3" in row["error"]


def test_pool_external_command(db_url, tmp_path):
    spec = parse_campaign({
        "name": "toy",
        "parameters": {"x": {"low": -2, "high": 2}, "y": {"low": -2, "high": 2}},
        "likelihood": {"command": [sys.executable, str(LIKELIHOODS / "evaluation_command.py")]},
    })
    fit = api.create_campaign(spec, db_url)
    add_points_from_csv(fit, write_csv(tmp_path / "p.csv", [(1, 1), (-1, 0), (0, 0)]))
    evaluate_pending(fit, workers=1)
    rows = rows_by_x(fit)
    assert rows[1]["chi2"] == 2.0
    assert rows[1]["outputs"] == {"sum": 2.0}
    assert rows[-1]["status"] == "failed"
    assert "exited with status 4" in rows[-1]["error"]
    assert "physics code failed at x=-1.0" in rows[-1]["error"]
    assert rows[0]["status"] == "failed"
    assert "invalid JSON" in rows[0]["error"]


def test_seeds_make_stochastic_likelihood_reproducible(tmp_path):
    values = []
    for name in ("a", "b"):
        fit = make_campaign(f"sqlite:///{tmp_path / name}.db", "stochastic", seed=3)
        add_design(fit, 4)
        evaluate_pending(fit, workers=2)
        values.append(fit.arrays().chi2)
    np.testing.assert_array_equal(values[0], values[1])
    assert len(set(values[0])) == 4


def test_evaluate_rejects_bad_options(sqlite_url):
    fit = make_campaign(sqlite_url)
    with pytest.raises(ConfigError, match="unknown executor 'threads'"):
        evaluate_pending(fit, executor="threads")
    with pytest.raises(ConfigError, match="invalid number of workers 0"):
        evaluate_pending(fit, workers=0)
    with pytest.raises(ConfigError, match="needs the dask executor"):
        evaluate_pending(fit, scheduler="tcp://127.0.0.1:8786")


# Database workers


def test_ten_workers_evaluate_ten_points_once(db_url, forkserver, tmp_path):
    fit = make_campaign(db_url)
    add_design(fit, 10)
    log = tmp_path / "evaluations.log"
    assert run_workers(forkserver, db_url, 10, {"CAMPAIGN_EVAL_LOG": str(log)}, 60) == [0] * 10
    counts = evaluation_counts(log)
    assert len(counts) == 10
    assert set(counts.values()) == {1}
    assert fit.status_counts()["done"] == 10


@pytest.mark.slow
def test_herd_of_32_workers_on_sqlite(sqlite_url, forkserver, tmp_path):
    fit = make_campaign(sqlite_url)
    add_design(fit, 64)
    log = tmp_path / "evaluations.log"
    assert run_workers(forkserver, sqlite_url, 32, {"CAMPAIGN_EVAL_LOG": str(log)}, 120) == [0] * 32
    counts = evaluation_counts(log)
    assert len(counts) == 64
    assert set(counts.values()) == {1}
    assert fit.status_counts()["done"] == 64


def test_heartbeat_keeps_lease_alive(db_url, forkserver):
    fit = make_campaign(db_url, "sleepy", lease_seconds=0.6)
    (point_id,) = add_design(fit, 1)
    worker = start_worker(forkserver, db_url, {"CAMPAIGN_SLEEP": "2.5"}, idle_exit=0.2)
    wait_for_status(fit, point_id, "running")
    while worker.is_alive():
        with fit.store.transaction() as session:
            assert reclaim_expired(session, fit.id, max_attempts=3) == ([], [])
        time.sleep(0.1)
    assert worker.exitcode == 0
    row = fit.points().iloc[0]
    assert row["status"] == "done"
    assert row["attempts"] == 1


def test_killed_worker_point_is_evaluated_by_another(db_url, forkserver, tmp_path):
    fit = make_campaign(db_url, "sleepy", lease_seconds=1.0)
    (point_id,) = add_design(fit, 1)
    log = tmp_path / "evaluations.log"
    victim = start_worker(forkserver, db_url, {"CAMPAIGN_SLEEP": "30"})
    wait_for_status(fit, point_id, "running")
    os.kill(victim.pid, signal.SIGKILL)
    victim.join()

    rescuer = start_worker(forkserver, db_url, {"CAMPAIGN_SLEEP": "0", "CAMPAIGN_EVAL_LOG": str(log)}, idle_exit=3.0)
    rescuer.join(60)
    assert rescuer.exitcode == 0
    row = fit.points().iloc[0]
    assert row["status"] == "done"
    assert row["attempts"] == 2
    assert row["pid"] == rescuer.pid
    assert sum(evaluation_counts(log).values()) == 1


def test_killed_worker_point_fails_after_max_attempts(db_url, forkserver):
    fit = make_campaign(db_url, "sleepy", lease_seconds=0.5, max_attempts=1)
    (point_id,) = add_design(fit, 1)
    victim = start_worker(forkserver, db_url, {"CAMPAIGN_SLEEP": "30"})
    wait_for_status(fit, point_id, "running")
    os.kill(victim.pid, signal.SIGKILL)
    victim.join()

    time.sleep(0.7)
    summary = run_worker(fit, idle_exit=0)
    assert summary.done == 0
    row = fit.points().iloc[0]
    assert row["status"] == "failed"
    assert "lease expired after 1 attempt(s)" in row["error"]


def test_paused_worker_late_result_is_dropped(db_url, forkserver, tmp_path):
    fit = make_campaign(db_url, "sleepy", lease_seconds=0.5)
    (point_id,) = add_design(fit, 1)
    log = tmp_path / "evaluations.log"
    paused = start_worker(forkserver, db_url, {"CAMPAIGN_SLEEP": "1.5", "CAMPAIGN_EVAL_LOG": str(log)}, idle_exit=0.2)
    wait_for_status(fit, point_id, "running")
    os.kill(paused.pid, signal.SIGSTOP)
    try:
        time.sleep(1.0)
        os.environ["CAMPAIGN_SLEEP"] = "0"
        summary = run_worker(fit, idle_exit=0)
    finally:
        os.environ.pop("CAMPAIGN_SLEEP", None)
        os.kill(paused.pid, signal.SIGCONT)
    assert summary.done == 1
    paused.join(30)

    assert paused.exitcode == 0
    row = fit.points().iloc[0]
    assert row["status"] == "done"
    assert row["pid"] == os.getpid()
    assert sum(fit.status_counts().values()) == 1
    assert sum(evaluation_counts(log).values()) == 1


# Dask


@pytest.mark.slow
def test_dask_local_cluster(sqlite_url):
    fit = make_campaign(sqlite_url)
    add_design(fit, 6)
    summary = evaluate_pending(fit, workers=2, executor="dask")
    assert summary.done == 6
    frame = fit.points()
    assert set(frame["executor"]) == {"dask"}
    assert os.getpid() not in set(frame["pid"])
    np.testing.assert_allclose(frame["chi2"], frame["x"] ** 2 + frame["y"] ** 2)


# Command line and Ctrl-C


def run_cli(args, url, env=None, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "campaign", "--db", url, *args],
        env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs,
    )


@pytest.mark.slow
@pytest.mark.parametrize("command", [["worker", "toy"], ["evaluate", "toy", "--workers", "2", "--no-progress"]])
def test_ctrl_c_releases_claims_and_exits_130(db_url, tmp_path, command):
    fit = make_campaign(db_url, "slow_if_positive")
    fast, slow = add_points_from_csv(fit, write_csv(tmp_path / "p.csv", [(-1, 0), (1, 0)]))
    process = run_cli(command, db_url)
    wait_for_status(fit, fast, "done", seconds=60)
    wait_for_status(fit, slow, "running", seconds=60)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)

    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    rows = fit.points()
    assert rows.loc[fast, "status"] == "done"
    assert rows.loc[slow, "status"] == "pending"
    assert rows.loc[slow, "attempts"] == 0


def test_cli_add_points_and_evaluate(sqlite_url):
    make_campaign(sqlite_url)
    runner = CliRunner()
    added = runner.invoke(main, ["--db", sqlite_url, "add-points", "toy", "--design", "sobol", "--n", "4"])
    assert added.exit_code == 0
    assert added.output.strip() == "Added 4 sobol points to 'toy' (ids 1-4)."

    evaluated = runner.invoke(main, ["--db", sqlite_url, "evaluate", "toy", "--workers", "1", "--no-progress"])
    assert evaluated.exit_code == 0
    assert evaluated.output.startswith("4 done, 0 failed")

    bad = runner.invoke(main, ["--db", sqlite_url, "add-points", "toy", "--design", "sobol"])
    assert bad.exit_code == 2
    assert "--design needs --n" in bad.output
    missing = runner.invoke(main, ["--db", sqlite_url, "add-points", "toy", "--from-csv", "/nonexistent.csv"])
    assert missing.exit_code == 2
    assert "cannot read CSV file '/nonexistent.csv'" in missing.output
