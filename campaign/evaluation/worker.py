"""The evaluation loop: claim pending points, evaluate them, record the results.

The same loop serves the local pool (``campaign evaluate``), the database
worker (``campaign worker``) and the Dask executor; only the executor that
runs the likelihood differs. The loop owns the claims: a heartbeat thread
renews their leases, results go through
:func:`campaign.store.claims.record_results`, and on Ctrl-C (or SIGTERM in
the worker command) the claims still in flight go back to pending.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Protocol, Sequence

from tqdm import tqdm

from campaign.store.campaigns import current_host, current_user
from campaign.store.claims import Claim, RecordOutcome, Result, claim_points, reclaim_expired, record_results, release_claims
from campaign.evaluation.heartbeat import RENEWALS_PER_LEASE, Heartbeat

__all__ = ["EvaluationSummary", "Executor", "run_evaluations", "make_worker_id"]

logger = logging.getLogger(__name__)


class Executor(Protocol):
    """Interface of the objects that run likelihoods for the loop."""

    def free_slots(self) -> int: ...
    def submit(self, claim: Claim) -> None: ...
    def collect(self, wait: float) -> list[Result]: ...
    def drain(self) -> list[Result]: ...
    def in_flight(self) -> list[int]: ...
    def close(self) -> None: ...


@dataclass
class EvaluationSummary:
    """Counts of one evaluation run.

    Attributes:
        done: Points evaluated successfully (chi2 may be NaN or infinite).
        failed: Points marked failed (likelihood error, timeout, attempts used up).
        retried: Evaluations whose process crashed; the point got another attempt.
        dropped: Late results for points that another worker had finished.
        released: Claims returned to pending on interruption.
        seconds: Wall-clock duration.
        worker: The worker id written on claimed points.
    """

    done: int = 0
    failed: int = 0
    retried: int = 0
    dropped: int = 0
    released: int = 0
    seconds: float = 0.0
    worker: str = ""


def make_worker_id() -> str:
    """Return a worker id unique across hosts and process-id reuse."""
    return f"{current_host()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def run_evaluations(
    fit,
    executor: Executor,
    *,
    executor_name: str,
    until_idle: bool,
    max_points: int | None = None,
    idle_exit: float | None = None,
    poll_seconds: float = 1.0,
    progress: bool = False,
) -> EvaluationSummary:
    """Claim, evaluate and record points of ``fit`` until there is nothing left to do.

    Args:
        fit: An open :class:`campaign.api.Campaign`.
        executor: Runs the likelihood; see :class:`Executor`.
        executor_name: Recorded on claimed points (``local``, ``worker``, ``dask``).
        until_idle: Return once no point is pending and no claim is in flight
            (``campaign evaluate``). Otherwise keep polling (``campaign worker``).
        max_points: Stop after claiming this many points.
        idle_exit: With ``until_idle`` false, stop after this many seconds
            without pending points; None polls forever.
        poll_seconds: Interval between claims while idle.
        progress: Show a progress bar on stderr.

    Raises:
        KeyboardInterrupt: After releasing unfinished claims and recording
            finished results.
    """
    summary = EvaluationSummary(worker=make_worker_id())
    settings = fit.settings
    start = time.perf_counter()
    claimed = 0
    idle_since = time.monotonic()
    next_reclaim = 0.0
    bar = _progress_bar(fit, until_idle, progress)
    logger.info("worker %s started on campaign %s (%s executor)", summary.worker, fit.name, executor_name)

    results: list[Result] = []
    with Heartbeat(fit.store, summary.worker, settings.lease_seconds):
        try:
            while True:
                room = executor.free_slots()
                if max_points is not None:
                    room = min(room, max_points - claimed)
                reclaim = time.monotonic() >= next_reclaim
                if reclaim:
                    # Expired leases matter only once per lease period; checking on
                    # every claim would add a query per point.
                    next_reclaim = time.monotonic() + settings.lease_seconds / RENEWALS_PER_LEASE
                claims = []
                if results or room > 0 or reclaim:
                    claims = _record_and_claim(fit, summary, bar, results, room, executor_name, reclaim)
                results = []
                for claim in claims:
                    executor.submit(claim)
                claimed += len(claims)

                if executor.in_flight():
                    results = executor.collect(poll_seconds)
                    idle_since = time.monotonic()
                    continue
                if until_idle or (max_points is not None and claimed >= max_points):
                    break
                if claims:
                    continue
                if idle_exit is not None and time.monotonic() - idle_since >= idle_exit:
                    logger.info("worker %s: no pending points for %g s; exiting", summary.worker, idle_exit)
                    break
                time.sleep(poll_seconds)
        except KeyboardInterrupt:
            _interrupt(fit, executor, summary, bar, results)
            raise
        finally:
            executor.close()
            bar.close()
            summary.seconds = time.perf_counter() - start

    logger.info(
        "worker %s stopped: %d done, %d failed, %d retried, %d dropped in %.1f s",
        summary.worker, summary.done, summary.failed, summary.retried, summary.dropped, summary.seconds,
    )
    return summary


def _record_and_claim(
    fit, summary: EvaluationSummary, bar, results: Sequence[Result], limit: int, executor_name: str, reclaim: bool
) -> list[Claim]:
    """Record finished results and claim up to ``limit`` new points in one transaction.

    One transaction per loop instead of two halves the commits, which
    dominate a worker's overhead per point on PostgreSQL.
    """
    settings = fit.settings
    with fit.store.transaction() as session:
        outcome = record_results(
            session, results, max_attempts=settings.max_attempts, likelihood_version=fit.spec.likelihood.version
        ) if results else None
        if reclaim:
            reclaim_expired(session, fit.id, settings.max_attempts)
        claims = claim_points(
            session, fit.id, fit.space.names, summary.worker, limit,
            lease_seconds=settings.lease_seconds, campaign_seed=settings.seed,
            executor=executor_name, host=current_host(), pid=os.getpid(), user=current_user(),
        )
    if outcome is not None:
        _count(outcome, summary, bar)
    if claims:
        logger.debug("worker %s claimed points %s", summary.worker, [c.point_id for c in claims])
    return claims


def _record(fit, results: Sequence[Result], summary: EvaluationSummary, bar) -> None:
    if not results:
        return
    with fit.store.transaction() as session:
        outcome = record_results(
            session, results, max_attempts=fit.settings.max_attempts, likelihood_version=fit.spec.likelihood.version
        )
    _count(outcome, summary, bar)


def _count(outcome: RecordOutcome, summary: EvaluationSummary, bar) -> None:
    summary.done += len(outcome.done)
    summary.failed += len(outcome.failed)
    summary.retried += len(outcome.retried)
    summary.dropped += len(outcome.dropped)
    bar.update(len(outcome.done) + len(outcome.failed))
    bar.set_postfix(failed=summary.failed, refresh=False)


def _interrupt(fit, executor: Executor, summary: EvaluationSummary, bar, results: list[Result]) -> None:
    """Record what finished, then return the other claims to pending."""
    logger.warning("worker %s interrupted; recording finished results and releasing claims", summary.worker)
    _record(fit, results + executor.drain(), summary, bar)
    executor.close()
    with fit.store.transaction() as session:
        released = release_claims(session, summary.worker)
    summary.released = len(released)
    logger.warning("worker %s released points %s", summary.worker, released)


def _progress_bar(fit, until_idle: bool, enabled: bool):
    total = fit.status_counts()["pending"] if until_idle and enabled else None
    bar = tqdm(total=total, unit="point", desc=fit.name, file=sys.stderr, disable=not enabled, dynamic_ncols=True)
    bar.set_postfix(failed=0, refresh=False)
    return bar
