"""Claims on points: claim, renew, release, reclaim, and record results.

A worker owns a point while its status is ``running``, ``worker`` is its id
and ``lease_expires_at`` (epoch seconds on the database clock) lies in the
future. Every executor records results through :func:`record_results`, which
applies the late-result rule: a result is kept while the point is still
unfinished (pending or running, by any worker), and dropped with a log
line once the point is done or failed. Points are updated in place, so no
result can create a second row.

Claims are atomic: on PostgreSQL the pending rows are selected ``FOR UPDATE
SKIP LOCKED``, so concurrent claimers take disjoint rows without waiting. On
SQLite every transaction of :mod:`campaign.store.engine` starts with ``BEGIN
IMMEDIATE``, so claimers queue for the write lock.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Sequence

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from campaign.likelihood import derive_seed
from campaign.store import models
from campaign.store.engine import database_clock

__all__ = [
    "Claim", "Result", "RecordOutcome", "claim_points", "renew_leases",
    "release_claims", "reclaim_expired", "record_results",
]

logger = logging.getLogger(__name__)

# Bound parameters per IN list; below SQLite's limit of 32766 variables.
ID_CHUNK = 5000
# Dropped late results named one by one in the log; the rest are counted.
LOGGED_DROPS = 10

_points = models.Point.__table__


@dataclass(frozen=True)
class Claim:
    """A claimed point, ready to be evaluated.

    Attributes:
        point_id: Primary key of the point.
        params: Parameter values by name, in the campaign's parameter order.
        seed: Evaluation seed, derived from the campaign seed and the point id.
        attempts: Attempts including this one.
    """

    point_id: int
    params: dict[str, float]
    seed: int
    attempts: int


@dataclass(frozen=True)
class Result:
    """The outcome of one evaluation, with where and when it ran.

    Attributes:
        point_id: The evaluated point.
        status: ``"done"``, ``"failed"`` (the likelihood raised, returned an
            invalid value or timed out) or ``"crashed"`` (the evaluating
            process died; the point gets another attempt).
        chi2: chi2 when done; NaN and infinities are kept as they are.
        outputs: Extra outputs of the likelihood (observables), JSON-ready.
        error: Why it failed or crashed.
        executor: ``"local"``, ``"worker"`` or ``"dask"``.
        host, pid, user: The process that ran the likelihood.
        started_at, finished_at: Wall-clock times of the evaluation (UTC).
        eval_seconds: Duration of the likelihood call.
    """

    point_id: int
    status: str
    chi2: float | None = None
    outputs: dict | None = None
    error: str | None = None
    executor: str | None = None
    host: str | None = None
    pid: int | None = None
    user: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    eval_seconds: float | None = None


@dataclass(frozen=True)
class RecordOutcome:
    """Point ids by the action :func:`record_results` took on their results."""

    done: list[int]
    failed: list[int]
    retried: list[int]
    dropped: list[int]


def claim_points(
    session: Session,
    campaign_id: int,
    names: Sequence[str],
    worker: str,
    limit: int,
    *,
    lease_seconds: float,
    campaign_seed: int,
    executor: str,
    host: str,
    pid: int,
    user: str,
) -> list[Claim]:
    """Claim up to ``limit`` pending points of a campaign, lowest ids first.

    ``names`` are the campaign's parameter names in storage order. The caller's transaction must commit for the claim to take effect. Each
    claimed point becomes ``running`` with a lease of ``lease_seconds`` on
    the database clock, and its attempt counter goes up by one.
    """
    if limit < 1:
        return []
    pending = (
        sa.select(_points.c.id, _points.c.x, _points.c.attempts)
        .where(_points.c.campaign_id == campaign_id, _points.c.status == "pending")
        .order_by(_points.c.id)
        .limit(limit)
        # SQLite ignores FOR UPDATE; there BEGIN IMMEDIATE already serializes claimers.
        .with_for_update(skip_locked=True)
    )
    rows = session.execute(pending).all()
    if not rows:
        return []

    clock = database_clock(session.get_bind().dialect.name)
    now = datetime.now(timezone.utc)
    claims = []
    for point_id, x_bytes, attempts in rows:
        values = np.frombuffer(x_bytes, dtype="<f8")
        claims.append(Claim(
            point_id=point_id,
            params=dict(zip(names, map(float, values))),
            seed=derive_seed(campaign_seed, point_id),
            attempts=attempts + 1,
        ))
    # One statement per claim: a worker claims one or a few points at a time.
    session.execute(
        sa.update(_points)
        .where(_points.c.id == sa.bindparam("b_id"))
        .values(
            status="running",
            worker=worker,
            lease_expires_at=clock + lease_seconds,
            attempts=_points.c.attempts + 1,
            seed=sa.bindparam("b_seed"),
            executor=executor,
            host=host,
            pid=pid,
            user=user,
            started_at=now,
            finished_at=None,
            error=None,
        ),
        [{"b_id": c.point_id, "b_seed": c.seed} for c in claims],
    )
    return claims


def renew_leases(session: Session, worker: str, lease_seconds: float) -> int:
    """Extend the lease of every point ``worker`` holds; return how many it holds."""
    clock = database_clock(session.get_bind().dialect.name)
    result = session.execute(
        sa.update(_points)
        .where(_points.c.worker == worker, _points.c.status == "running")
        .values(lease_expires_at=clock + lease_seconds)
    )
    return result.rowcount


def release_claims(session: Session, worker: str, point_ids: Iterable[int] | None = None) -> list[int]:
    """Put points that ``worker`` still holds back to pending, without counting the attempt.

    Args:
        point_ids: Only these points; None releases every point ``worker`` holds.

    Returns:
        The ids that were released. Points another worker took over, or that
        are finished, are left alone.
    """
    held_query = (
        sa.select(_points.c.id)
        .where(_points.c.worker == worker, _points.c.status == "running")
        .order_by(_points.c.id)
        .with_for_update()
    )
    if point_ids is None:
        held = list(session.scalars(held_query).all())
    else:
        held = []
        for chunk in _chunks(sorted(set(point_ids))):
            held.extend(session.scalars(held_query.where(_points.c.id.in_(chunk))).all())

    for chunk in _chunks(held):
        session.execute(
            sa.update(_points)
            .where(_points.c.id.in_(chunk))
            .values(
                status="pending", worker=None, lease_expires_at=None, started_at=None,
                attempts=sa.case((_points.c.attempts > 0, _points.c.attempts - 1), else_=0),
            )
        )
    return held


def reclaim_expired(session: Session, campaign_id: int, max_attempts: int) -> tuple[list[int], list[int]]:
    """Move points whose lease ran out back to pending, or fail them after ``max_attempts``.

    A lease runs out when its worker stopped renewing it: the worker was
    killed, crashed, lost its connection or was paused.

    Returns:
        ``(pending_ids, failed_ids)``.
    """
    clock = database_clock(session.get_bind().dialect.name)
    expired = session.execute(
        sa.select(_points.c.id, _points.c.attempts, _points.c.worker)
        .where(
            _points.c.campaign_id == campaign_id,
            _points.c.status == "running",
            _points.c.lease_expires_at < clock,
        )
        .order_by(_points.c.id)
        .with_for_update(skip_locked=True)
    ).all()
    retry = [row.id for row in expired if row.attempts < max_attempts]
    give_up = [row for row in expired if row.attempts >= max_attempts]

    if retry:
        session.execute(
            sa.update(_points)
            .where(_points.c.id.in_(retry))
            .values(status="pending", worker=None, lease_expires_at=None)
        )
        logger.warning("campaign %d: leases of points %s expired; they are pending again", campaign_id, _id_list(retry))
    if give_up:
        session.execute(
            sa.update(_points)
            .where(_points.c.id == sa.bindparam("b_id"))
            .values(status="failed", lease_expires_at=None, error=sa.bindparam("b_error"), finished_at=datetime.now(timezone.utc)),
            [
                {
                    "b_id": row.id,
                    "b_error": (
                        f"lease expired after {row.attempts} attempt(s), the maximum: the last worker "
                        f"({row.worker}) stopped renewing it because it was killed, crashed or stalled"
                    ),
                }
                for row in give_up
            ],
        )
        logger.error("campaign %d: points %s failed: lease expired on attempt %d, the maximum",
                     campaign_id, _id_list([row.id for row in give_up]), max_attempts)
    return retry, [row.id for row in give_up]


def record_results(
    session: Session, results: Sequence[Result], *, max_attempts: int, likelihood_version: str | None = None
) -> RecordOutcome:
    """Store evaluation results; the one path every executor records through.

    A result is kept while its point is pending or running, by any worker,
    and dropped (with a log line) when the point is already done or failed.
    A ``crashed`` result sends the point back to pending, or marks it failed
    once it has had ``max_attempts`` attempts. ``likelihood_version`` is the
    version of the likelihood that produced the results. It replaces the
    version stored when the point was added, so each point records what
    evaluated it.
    """
    by_id = {r.point_id: r for r in results}
    status_of: dict[int, tuple[str, int]] = {}
    for chunk in _chunks(sorted(by_id)):
        rows = session.execute(
            sa.select(_points.c.id, _points.c.status, _points.c.attempts)
            .where(_id_in(session, chunk))
            .order_by(_points.c.id)
            .with_for_update()
        ).all()
        status_of.update({point_id: (status, attempts) for point_id, status, attempts in rows})

    outcome = RecordOutcome(done=[], failed=[], retried=[], dropped=[])
    updates = []
    for point_id, result in by_id.items():
        status, attempts = status_of.get(point_id, ("missing", 0))
        if status not in ("pending", "running"):
            outcome.dropped.append(point_id)
            continue
        row = _result_row(result, attempts, max_attempts)
        row["b_version"] = likelihood_version
        getattr(outcome, {"done": "done", "failed": "failed", "pending": "retried"}[row["b_status"]]).append(point_id)
        updates.append(row)

    if len(updates) >= COPY_THRESHOLD and session.get_bind().dialect.name == "postgresql":
        _update_postgresql(session, updates)
    elif updates:
        session.execute(_RECORD_STATEMENT, updates)
    if outcome.dropped:
        logger.warning(
            "dropped %d late result(s) for points already finished or deleted: %s",
            len(outcome.dropped), _id_list(outcome.dropped),
        )
    return outcome


_RECORD_STATEMENT = (
    sa.update(_points)
    .where(_points.c.id == sa.bindparam("b_id"))
    .values(
        status=sa.bindparam("b_status"),
        chi2=sa.bindparam("b_chi2", type_=models.Point.__table__.c.chi2.type),
        outputs=sa.bindparam("b_outputs", type_=models.Point.__table__.c.outputs.type),
        error=sa.bindparam("b_error"),
        worker=None,
        lease_expires_at=None,
        executor=sa.bindparam("b_executor"),
        host=sa.bindparam("b_host"),
        pid=sa.bindparam("b_pid"),
        user=sa.bindparam("b_user"),
        started_at=sa.bindparam("b_started_at"),
        finished_at=sa.bindparam("b_finished_at"),
        eval_seconds=sa.bindparam("b_eval_seconds"),
        likelihood_version=sa.func.coalesce(sa.bindparam("b_version", type_=sa.String), _points.c.likelihood_version),
    )
)


# COPY into a temporary table and one UPDATE ... FROM replace per-row UPDATE
# statements for large batches on PostgreSQL. In one run on two shared cores,
# 20,000 rows took 0.5 s this way and 1.7 s through executemany.
COPY_THRESHOLD = 200

_RESULT_COLUMNS = (
    "id bigint, status text, chi2 float8, outputs jsonb, error text, executor text, host text, "
    "pid integer, user_name text, started_at timestamptz, finished_at timestamptz, eval_seconds float8, "
    "likelihood_version text"
)
_ROW_KEYS = ("b_id", "b_status", "b_chi2", "b_outputs", "b_error", "b_executor", "b_host", "b_pid", "b_user",
             "b_started_at", "b_finished_at", "b_eval_seconds", "b_version")


def _update_postgresql(session: Session, rows: list[dict]) -> None:
    connection = session.connection()
    # The table lives as long as the connection, and COMMIT empties it.
    connection.exec_driver_sql(
        f"CREATE TEMPORARY TABLE IF NOT EXISTS campaign_results ({_RESULT_COLUMNS}) ON COMMIT DELETE ROWS"
    )
    cursor = connection.connection.driver_connection.cursor()
    with cursor.copy("COPY campaign_results FROM STDIN") as copy:
        for row in rows:
            values = [row[key] for key in _ROW_KEYS]
            values[3] = None if values[3] is None else json.dumps(values[3])
            copy.write_row(values)
    connection.exec_driver_sql(
        "UPDATE points AS p SET status = v.status, chi2 = v.chi2, outputs = v.outputs, error = v.error, "
        "worker = NULL, lease_expires_at = NULL, executor = v.executor, host = v.host, pid = v.pid, "
        '"user" = v.user_name, started_at = v.started_at, finished_at = v.finished_at, '
        "eval_seconds = v.eval_seconds, likelihood_version = COALESCE(v.likelihood_version, p.likelihood_version) "
        "FROM campaign_results AS v WHERE p.id = v.id"
    )


def _result_row(result: Result, attempts: int, max_attempts: int) -> dict:
    status = result.status
    error = result.error
    if status == "crashed":
        if attempts >= max_attempts:
            status = "failed"
            error = f"{error} (attempt {attempts} of {max_attempts}; no attempts left)"
        else:
            status = "pending"
    return {
        "b_id": result.point_id,
        "b_status": status,
        "b_chi2": result.chi2 if status == "done" else None,
        "b_outputs": result.outputs if status == "done" else None,
        "b_error": error,
        "b_executor": result.executor,
        "b_host": result.host,
        "b_pid": result.pid,
        "b_user": result.user,
        "b_started_at": result.started_at,
        "b_finished_at": result.finished_at,
        "b_eval_seconds": result.eval_seconds,
    }


def _id_in(session: Session, ids: list[int]) -> sa.ColumnElement[bool]:
    """Match ``ids``: one array parameter on PostgreSQL, where psycopg parses thousands of IN parameters slowly."""
    if session.get_bind().dialect.name == "postgresql":
        return _points.c.id == sa.any_(sa.bindparam("ids", ids, type_=postgresql.ARRAY(sa.BigInteger)))
    return _points.c.id.in_(ids)


def _chunks(ids: Sequence[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), ID_CHUNK):
        yield list(ids[start:start + ID_CHUNK])


def _id_list(ids: Sequence[int]) -> str:
    shown = ", ".join(map(str, ids[:LOGGED_DROPS]))
    return shown if len(ids) <= LOGGED_DROPS else f"{shown} and {len(ids) - LOGGED_DROPS} more"
