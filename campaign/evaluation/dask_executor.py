"""The Dask executor: evaluate claims on a Dask cluster, record them here.

The submitting process claims points, submits one task per point to the
cluster (the ``distributed`` package) and records each result when its
future completes. Without a scheduler address, a ``LocalCluster`` of worker
processes with one thread each starts on this machine's loopback interface.
"""

from __future__ import annotations

import logging
import time
import uuid

from campaign.config import LikelihoodRef
from campaign.evaluation.runner import crashed_result, describe_exception, evaluate_claim
from campaign.likelihood import Likelihood
from campaign.store.campaigns import current_host, current_user
from campaign.store.claims import Claim, Result

__all__ = ["DaskExecutor", "evaluate_on_dask_worker"]

logger = logging.getLogger(__name__)

#: Tasks queued per Dask worker thread, so that a finished task finds the next one waiting.
TASKS_PER_THREAD = 2

# Likelihoods loaded in this Dask worker process, by reference and parameter names.
_loaded: dict[tuple[LikelihoodRef, tuple[str, ...]], Likelihood] = {}


def evaluate_on_dask_worker(ref: LikelihoodRef, names: tuple[str, ...], claim: Claim) -> Result:
    """Evaluate one claim inside a Dask worker, loading the likelihood once per process."""
    key = (ref, names)
    if key not in _loaded:
        _loaded[key] = Likelihood(ref, names)
    return evaluate_claim(_loaded[key], claim, "dask")


class DaskExecutor:
    """Submit claims to a Dask cluster.

    Args:
        ref: The campaign's likelihood reference.
        names: Parameter names, in storage order.
        scheduler: Address of a running scheduler (``tcp://host:8786``); None
            starts a ``LocalCluster``.
        workers: Worker processes of the ``LocalCluster``; None lets Dask choose.
    """

    def __init__(self, ref: LikelihoodRef, names: tuple[str, ...], scheduler: str | None = None,
                 workers: int | None = None):
        from distributed import Client, LocalCluster

        self.ref = ref
        self.names = names
        self.cluster = None
        # Dask sets its "distributed" logger to INFO; follow campaign's verbosity instead.
        distributed_logger = logging.getLogger("distributed")
        distributed_logger.setLevel(max(logging.getLogger("campaign").getEffectiveLevel(), distributed_logger.level))
        if scheduler is None:
            self.cluster = LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True,
                host="127.0.0.1", dashboard_address="127.0.0.1:0",
            )
            self.client = Client(self.cluster)
        else:
            self.client = Client(scheduler)
        threads = sum(self.client.nthreads().values())
        self.capacity = max(1, threads) * TASKS_PER_THREAD
        self.futures: dict[int, object] = {}
        self.deadlines: dict[int, float] = {}
        self.claims: dict[int, Claim] = {}
        logger.info("Dask executor: %d worker thread(s) at %s", threads, self.client.scheduler.address)

    def free_slots(self) -> int:
        return self.capacity - len(self.futures)

    def submit(self, claim: Claim) -> None:
        future = self.client.submit(
            evaluate_on_dask_worker, self.ref, self.names, claim,
            key=f"campaign-point-{claim.point_id}-{uuid.uuid4().hex[:8]}", pure=False,
        )
        self.futures[claim.point_id] = future
        self.claims[claim.point_id] = claim
        if self.ref.timeout:
            # NOTE: the deadline starts at submission, so time queued on a busy
            # cluster counts towards the timeout.
            self.deadlines[claim.point_id] = time.monotonic() + self.ref.timeout

    def in_flight(self) -> list[int]:
        return list(self.futures)

    def collect(self, wait: float) -> list[Result]:
        """Wait up to ``wait`` seconds for the first finished task, then return every finished one."""
        from distributed import wait as wait_for_futures

        if not self.futures:
            return []
        if self.deadlines:
            wait = max(0.0, min(wait, min(self.deadlines.values()) - time.monotonic()))
        try:
            wait_for_futures(list(self.futures.values()), timeout=wait, return_when="FIRST_COMPLETED")
        except TimeoutError:
            pass
        return self.drain()

    def drain(self) -> list[Result]:
        results = []
        now = time.monotonic()
        for point_id, future in list(self.futures.items()):
            if future.done():
                results.append(self._result(point_id, future))
            elif point_id in self.deadlines and now >= self.deadlines[point_id]:
                results.append(self._time_out(point_id, future))
        return results

    def _result(self, point_id: int, future) -> Result:
        claim = self._forget(point_id)
        try:
            return future.result()
        except Exception as exc:  # the Dask worker died or the task could not run
            logger.error("point %d: Dask task failed: %s", point_id, exc)
            return crashed_result(claim, "dask", f"Dask task failed: {describe_exception(exc)}")

    def _time_out(self, point_id: int, future) -> Result:
        # NOTE: Dask cannot stop a running task; the worker thread stays busy
        # until the likelihood returns, and that result is discarded.
        future.cancel()
        self._forget(point_id)
        logger.warning("point %d: timed out after %g s on Dask", point_id, self.ref.timeout)
        return Result(
            point_id=point_id, status="failed", error=f"timed out after {self.ref.timeout:g} s",
            executor="dask", host=current_host(), user=current_user(), eval_seconds=self.ref.timeout,
        )

    def _forget(self, point_id: int) -> Claim:
        self.futures.pop(point_id)
        self.deadlines.pop(point_id, None)
        return self.claims.pop(point_id)

    def close(self) -> None:
        if self.client is None:
            return
        for future in self.futures.values():
            future.cancel()
        self.futures.clear()
        self.deadlines.clear()
        self.claims.clear()
        self.client.close()
        self.client = None
        if self.cluster is not None:
            self.cluster.close()
