"""Benchmark the evaluation engine: bulk recording, claim overhead, worker scaling.

Usage::

    python -m benchmarks.bench_evaluation [--record-points 20000] [--overhead-points 2000]

1. Bulk recording: ``record_results`` of N claimed points in one
   transaction, on SQLite and PostgreSQL.
2. Claim and record overhead: 4 ``campaign worker`` processes on
   PostgreSQL with a likelihood that returns at once, so the time per point
   is the claim, heartbeat and record work of the worker.
3. Scaling: 1, 2 and 4 workers on PostgreSQL with a likelihood that sleeps
   0.5 s; throughput from the first claim to the last result.

PostgreSQL comes from ``$CAMPAIGN_TEST_POSTGRESQL_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``); each run uses a
schema of its own and drops it.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa

from benchmarks.postgresql import scratch_schema
from benchmarks.report import write_section
from campaign import api
from campaign.config import parse_campaign
from campaign.evaluation import add_design, run_worker
from campaign.store import models
from campaign.store.claims import Result, claim_points, record_results

CASES = Path(__file__).resolve().parents[1] / "tests" / "likelihoods" / "evaluation_cases.py"


def make_campaign(url: str, function: str, **settings):
    spec = parse_campaign({
        "name": "bench",
        "parameters": {"x": {"low": -1, "high": 1}, "y": {"low": -1, "high": 1}},
        "likelihood": {"python": f"{CASES}:{function}"},
        "settings": settings,
    })
    return api.create_campaign(spec, url, check=False)


def time_recording(url: str, n: int) -> tuple[float, float]:
    """Claim ``n`` points in one transaction, then record them in one; return both durations."""
    fit = make_campaign(url, "quadratic")
    add_design(fit, n)
    start = time.perf_counter()
    with fit.store.transaction() as session:
        claims = claim_points(session, fit.id, fit.space.names, "bench", n, lease_seconds=600, campaign_seed=0,
                              executor="worker", host="bench", pid=os.getpid(), user="bench")
    claim_seconds = time.perf_counter() - start

    now = datetime.now(timezone.utc)
    results = [
        Result(point_id=c.point_id, status="done", chi2=float(i), outputs={"radius": 0.5}, executor="worker",
               host="bench", pid=os.getpid(), user="bench", started_at=now, finished_at=now, eval_seconds=0.01)
        for i, c in enumerate(claims)
    ]
    start = time.perf_counter()
    with fit.store.transaction() as session:
        outcome = record_results(session, results, max_attempts=3)
    record_seconds = time.perf_counter() - start
    assert len(outcome.done) == n
    fit.store.dispose()
    return claim_seconds, record_seconds


def worker_process(url: str, env: dict, barrier) -> None:
    os.environ.update(env)
    barrier.wait()
    run_worker(api.open_campaign("bench", url), idle_exit=0.5, poll_seconds=0.05)


def run_workers(url: str, count: int, env: dict) -> float:
    """Run ``count`` worker processes to completion and return their wall-clock time."""
    context = multiprocessing.get_context("forkserver")
    barrier = context.Barrier(count + 1)
    processes = [context.Process(target=worker_process, args=(url, env, barrier)) for _ in range(count)]
    for process in processes:
        process.start()
    barrier.wait()
    start = time.perf_counter()
    for process in processes:
        process.join()
    assert all(p.exitcode == 0 for p in processes)
    return time.perf_counter() - start


def evaluation_span(fit) -> tuple[float, int]:
    """Return seconds from the first evaluation start to the last finish, and the points done."""
    with fit.store.transaction() as session:
        first, last, done = session.execute(
            sa.select(sa.func.min(models.Point.started_at), sa.func.max(models.Point.finished_at), sa.func.count())
            .where(models.Point.campaign_id == fit.id, models.Point.status == "done")
        ).one()
    return (last - first).total_seconds(), done


def measure_overhead(points: int, workers: int) -> tuple[float, float]:
    with scratch_schema() as url:
        fit = make_campaign(url, "quadratic", lease_seconds=60)
        add_design(fit, points)
        run_workers(url, workers, {})
        span, done = evaluation_span(fit)
        assert done == points
    return span, span * workers / points


def measure_scaling(workers: int, points_per_worker: int) -> tuple[float, float]:
    with scratch_schema() as url:
        fit = make_campaign(url, "sleepy", lease_seconds=30)
        add_design(fit, workers * points_per_worker)
        run_workers(url, workers, {"CAMPAIGN_SLEEP": "0.5"})
        span, done = evaluation_span(fit)
    return span, done / span


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record-points", type=int, default=20000, help="Points recorded in one transaction.")
    parser.add_argument("--overhead-points", type=int, default=2000, help="Points evaluated by 4 workers.")
    parser.add_argument("--scaling-points", type=int, default=8, help="Points per worker in the scaling runs.")
    args = parser.parse_args()
    multiprocessing.get_context("forkserver").set_forkserver_preload(["campaign.api", "campaign.evaluation"])
    load_before = os.getloadavg()[0]

    recording = []
    with tempfile.TemporaryDirectory() as directory:
        claim_s, record_s = time_recording(f"sqlite:///{directory}/bench.db", args.record_points)
        recording.append(("SQLite", claim_s, record_s))
    with scratch_schema() as url:
        claim_s, record_s = time_recording(url, args.record_points)
        recording.append(("PostgreSQL", claim_s, record_s))

    overhead_span, overhead_per_point = measure_overhead(args.overhead_points, 4)
    scaling = [(n, *measure_scaling(n, args.scaling_points)) for n in (1, 2, 4)]
    load_after = os.getloadavg()[0]

    n = args.record_points
    lines = [
        f"Load average (1 min) {load_before:.1f} before and {load_after:.1f} after the run; other "
        "processes shared the two cores, so compare rows of one run with each other.",
        "",
        f"Bulk claim and record of {n:,} points, 2 parameters, one transaction each "
        "(`claim_points`, `record_results`):",
        "",
        "| backend | claim s | record s | recorded points/s |",
        "| --- | ---: | ---: | ---: |",
        *[f"| {name} | {c:.2f} | {r:.2f} | {n / r:,.0f} |" for name, c, r in recording],
        "",
        f"Claim and record overhead: 4 `campaign worker` processes on PostgreSQL evaluated "
        f"{args.overhead_points:,} points of a likelihood that returns at once in {overhead_span:.1f} s, "
        f"so each worker spent {overhead_per_point * 1000:.1f} ms per point on claiming, recording and "
        f"the likelihood call ({overhead_span / args.overhead_points * 1000:.1f} ms of wall-clock time per "
        "point for the four together). Each worker records a result and claims its next point in one "
        "transaction. Four worker processes, their heartbeat threads and PostgreSQL share two cores here, "
        "so this figure includes waiting for a core.",
        "",
        f"Scaling on PostgreSQL with a likelihood that sleeps 0.5 s, {args.scaling_points} points per worker "
        "(throughput from the first claim to the last result):",
        "",
        "| workers | seconds | points/s | ideal points/s |",
        "| ---: | ---: | ---: | ---: |",
        *[f"| {w} | {s:.2f} | {rate:.2f} | {w / 0.5:.2f} |" for w, s, rate in scaling],
    ]
    write_section("Evaluation engine: recording, claims and worker scaling", "\n".join(lines),
                  command="python -m benchmarks.bench_evaluation " + " ".join(sys.argv[1:]))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
