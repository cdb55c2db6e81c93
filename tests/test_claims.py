"""Claims, leases and recording results, on SQLite and PostgreSQL."""

import math
import time
from datetime import datetime, timezone

import numpy as np
import pytest
import sqlalchemy as sa

from campaign import api
from campaign.config import parse_campaign
from campaign.evaluation import add_design
from campaign.store import models
from campaign.store.claims import (
    Result, claim_points, reclaim_expired, record_results, release_claims, renew_leases,
)


def make_campaign(url, **settings):
    spec = parse_campaign({
        "name": "claims",
        "parameters": {"x": {"low": -2, "high": 2}, "y": {"low": -2, "high": 2}},
        "likelihood": {"python": "tests/likelihoods/evaluation_cases.py:quadratic", "version": "v7"},
        "settings": settings,
    })
    return api.create_campaign(spec, url, check=False)


def claim(fit, session, worker, limit, lease_seconds=60.0):
    return claim_points(
        session, fit.id, fit.space.names, worker, limit, lease_seconds=lease_seconds, campaign_seed=fit.settings.seed,
        executor="worker", host="testhost", pid=1, user="tester",
    )


def done(point_id, chi2, worker_pid=1):
    now = datetime.now(timezone.utc)
    return Result(point_id=point_id, status="done", chi2=chi2, outputs={"radius": 1.0}, executor="worker",
                  host="testhost", pid=worker_pid, user="tester", started_at=now, finished_at=now, eval_seconds=0.1)


def point(fit, point_id):
    with fit.store.transaction() as session:
        return session.get(models.Point, point_id)


def test_claim_sets_lease_and_provenance(db_url):
    fit = make_campaign(db_url, seed=11)
    ids = add_design(fit, 4)
    with fit.store.transaction() as session:
        claims = claim(fit, session, "w1", 3)
    assert [c.point_id for c in claims] == ids[:3]
    assert all(c.attempts == 1 for c in claims)

    row = point(fit, ids[0])
    assert row.status == "running"
    assert row.worker == "w1"
    assert row.executor == "worker"
    assert row.host == "testhost"
    assert row.attempts == 1
    assert row.seed == claims[0].seed
    assert row.lease_expires_at > time.time() + 30
    assert point(fit, ids[3]).status == "pending"


def test_concurrent_claims_skip_locked_rows(db_url):
    """A second claimer must neither wait for nor take the rows of an open claim."""
    if not db_url.startswith("postgresql"):
        pytest.skip("SKIP LOCKED is PostgreSQL's; SQLite serializes claimers with BEGIN IMMEDIATE")
    fit = make_campaign(db_url)
    ids = add_design(fit, 6)
    with fit.store.transaction() as first:
        first_claims = claim(fit, first, "w1", 3)
        with fit.store.transaction() as second:
            # Without SKIP LOCKED this claim waits for the first transaction and hits the timeout.
            second.execute(sa.text("SET LOCAL lock_timeout = '2s'"))
            second_claims = claim(fit, second, "w2", 3)
    first_ids = {c.point_id for c in first_claims}
    second_ids = {c.point_id for c in second_claims}
    assert first_ids.isdisjoint(second_ids)
    assert first_ids | second_ids == set(ids)


def test_renew_extends_only_own_leases(db_url):
    fit = make_campaign(db_url)
    ids = add_design(fit, 2)
    with fit.store.transaction() as session:
        claim(fit, session, "w1", 1, lease_seconds=1.0)
        claim(fit, session, "w2", 1, lease_seconds=1.0)
    before = point(fit, ids[1]).lease_expires_at
    with fit.store.transaction() as session:
        held = renew_leases(session, "w1", 100.0)
    assert held == 1
    assert point(fit, ids[0]).lease_expires_at > time.time() + 90
    assert point(fit, ids[1]).lease_expires_at == before


def test_expired_lease_returns_point_to_pending(db_url):
    fit = make_campaign(db_url, max_attempts=2)
    (point_id,) = add_design(fit, 1)
    with fit.store.transaction() as session:
        claim(fit, session, "dead", 1, lease_seconds=0.05)
    time.sleep(0.2)
    with fit.store.transaction() as session:
        pending, failed = reclaim_expired(session, fit.id, max_attempts=2)
    assert pending == [point_id]
    assert failed == []
    row = point(fit, point_id)
    assert row.status == "pending"
    assert row.worker is None
    assert row.attempts == 1


def test_expired_lease_fails_after_max_attempts(db_url):
    fit = make_campaign(db_url, max_attempts=2)
    (point_id,) = add_design(fit, 1)
    for _ in range(2):
        with fit.store.transaction() as session:
            claim(fit, session, "dead", 1, lease_seconds=0.05)
        time.sleep(0.2)
        with fit.store.transaction() as session:
            reclaim_expired(session, fit.id, max_attempts=2)
    row = point(fit, point_id)
    assert row.status == "failed"
    assert row.attempts == 2
    assert "lease expired after 2 attempt(s)" in row.error
    assert "dead" in row.error


def test_unexpired_lease_is_not_reclaimed(db_url):
    fit = make_campaign(db_url)
    add_design(fit, 1)
    with fit.store.transaction() as session:
        claim(fit, session, "alive", 1, lease_seconds=60)
    with fit.store.transaction() as session:
        assert reclaim_expired(session, fit.id, max_attempts=3) == ([], [])


def test_release_does_not_count_attempt(db_url):
    fit = make_campaign(db_url)
    ids = add_design(fit, 3)
    with fit.store.transaction() as session:
        claim(fit, session, "w1", 2)
        claim(fit, session, "w2", 1)
    with fit.store.transaction() as session:
        released = release_claims(session, "w1")
    assert released == ids[:2]
    for point_id in ids[:2]:
        row = point(fit, point_id)
        assert row.status == "pending"
        assert row.attempts == 0
        assert row.worker is None
    assert point(fit, ids[2]).status == "running"


def test_record_stores_result_and_clears_claim(db_url):
    fit = make_campaign(db_url)
    (point_id,) = add_design(fit, 1)
    with fit.store.transaction() as session:
        claim(fit, session, "w1", 1)
    with fit.store.transaction() as session:
        outcome = record_results(session, [done(point_id, 2.5)], max_attempts=3)
    assert outcome.done == [point_id]
    row = point(fit, point_id)
    assert row.status == "done"
    assert row.chi2 == 2.5
    assert row.outputs == {"radius": 1.0}
    assert row.worker is None
    assert row.lease_expires_at is None
    assert row.likelihood_version == "v7"
    assert row.eval_seconds == 0.1


def test_record_keeps_nonfinite_chi2_exactly(db_url):
    fit = make_campaign(db_url)
    ids = add_design(fit, 3)
    with fit.store.transaction() as session:
        claim(fit, session, "w1", 3)
    values = [math.nan, math.inf, -math.inf]
    with fit.store.transaction() as session:
        record_results(session, [done(i, v) for i, v in zip(ids, values)], max_attempts=3)
    chi2 = fit.arrays().chi2
    assert np.isnan(chi2[0])
    assert chi2[1] == math.inf
    assert chi2[2] == -math.inf


def test_record_bulk_batch(db_url):
    """Large batches take PostgreSQL's COPY path; values must match the per-row path."""
    fit = make_campaign(db_url)
    ids = add_design(fit, 300)
    with fit.store.transaction() as session:
        claim(fit, session, "w1", 299)
    with fit.store.transaction() as session:
        record_results(session, [done(ids[0], 5.0)], max_attempts=3)
    results = [done(i, float(n)) for n, i in enumerate(ids)]
    results[1] = done(ids[1], math.nan)
    results[2] = done(ids[2], -math.inf)
    results[3] = Result(point_id=ids[3], status="failed", error="ValueError: bad")

    with fit.store.transaction() as session:
        outcome = record_results(session, results, max_attempts=3)
    assert outcome.dropped == [ids[0]]
    assert len(outcome.done) == 298
    assert outcome.failed == [ids[3]]
    frame = fit.points()
    assert frame.loc[ids[0], "chi2"] == 5.0
    assert math.isnan(frame.loc[ids[1], "chi2"])
    assert frame.loc[ids[2], "chi2"] == -math.inf
    assert frame.loc[ids[3], "status"] == "failed"
    assert frame.loc[ids[3], "error"] == "ValueError: bad"
    assert frame.loc[ids[299], "chi2"] == 299.0
    assert frame.loc[ids[299], "outputs"] == {"radius": 1.0}
    assert frame.loc[ids[299], "host"] == "testhost"
    assert frame.loc[ids[299], "worker"] is None
    assert fit.status_counts()["running"] == 0


def test_late_result_kept_while_unfinished(db_url):
    fit = make_campaign(db_url)
    (point_id,) = add_design(fit, 1)
    with fit.store.transaction() as session:
        claim(fit, session, "paused", 1, lease_seconds=0.05)
    time.sleep(0.2)
    with fit.store.transaction() as session:
        reclaim_expired(session, fit.id, max_attempts=3)
    assert point(fit, point_id).status == "pending"

    with fit.store.transaction() as session:
        outcome = record_results(session, [done(point_id, 4.0)], max_attempts=3)
    assert outcome.done == [point_id]
    assert point(fit, point_id).status == "done"
    assert point(fit, point_id).chi2 == 4.0


def test_late_result_dropped_once_finished(db_url):
    fit = make_campaign(db_url)
    (point_id,) = add_design(fit, 1)
    with fit.store.transaction() as session:
        claim(fit, session, "paused", 1, lease_seconds=0.05)
    time.sleep(0.2)
    with fit.store.transaction() as session:
        reclaim_expired(session, fit.id, max_attempts=3)
        claim(fit, session, "second", 1)
    with fit.store.transaction() as session:
        record_results(session, [done(point_id, 1.0, worker_pid=2)], max_attempts=3)

    with fit.store.transaction() as session:
        outcome = record_results(session, [done(point_id, 99.0, worker_pid=1)], max_attempts=3)
    assert outcome.dropped == [point_id]
    row = point(fit, point_id)
    assert row.chi2 == 1.0
    assert row.pid == 2
    assert sum(fit.status_counts().values()) == 1


def test_crashed_result_retries_then_fails(db_url):
    fit = make_campaign(db_url, max_attempts=2)
    (point_id,) = add_design(fit, 1)
    crash = Result(point_id=point_id, status="crashed", error="evaluation process exited with status 3 (crashed)")
    for expected in ("pending", "failed"):
        with fit.store.transaction() as session:
            claim(fit, session, "w1", 1)
        with fit.store.transaction() as session:
            record_results(session, [crash], max_attempts=2)
        assert point(fit, point_id).status == expected
    row = point(fit, point_id)
    assert row.attempts == 2
    assert "exited with status 3" in row.error
    assert "no attempts left" in row.error


@pytest.mark.parametrize("n_points", [3, 250])
def test_result_records_evaluating_version(db_url, n_points):
    fit = make_campaign(db_url)
    ids = add_design(fit, n_points)

    with fit.store.transaction() as session:
        record_results(session, [done(i, 1.0) for i in ids[:-1]], max_attempts=3, likelihood_version="v8")
        record_results(session, [done(ids[-1], 1.0)], max_attempts=3)

    assert point(fit, ids[0]).likelihood_version == "v8"
    assert point(fit, ids[-2]).likelihood_version == "v8"
    assert point(fit, ids[-1]).likelihood_version == "v7"
