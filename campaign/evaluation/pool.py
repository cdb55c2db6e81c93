"""Local executors: a pool of child processes, and evaluation in this process.

Both follow the executor interface of :mod:`campaign.evaluation.worker`:
``free_slots()``, ``submit(claim)``, ``collect(wait)``, ``drain()``,
``in_flight()`` and ``close()``.
"""

from __future__ import annotations

import logging
import time
from multiprocessing.connection import wait as wait_for_ready

from campaign.config import LikelihoodRef
from campaign.evaluation.runner import ChildEvaluator, evaluate_claim
from campaign.likelihood import Likelihood
from campaign.store.claims import Claim, Result

__all__ = ["LocalPool", "InlineExecutor"]

logger = logging.getLogger(__name__)


class LocalPool:
    """Evaluate claims in ``processes`` child processes, one claim each at a time.

    A child that passes the likelihood's timeout is killed and replaced;
    a child that dies yields a ``crashed`` result.
    """

    def __init__(self, ref: LikelihoodRef, names: tuple[str, ...], processes: int, executor: str = "local"):
        self.slots = [ChildEvaluator(ref, names, executor) for _ in range(processes)]
        # Start all children now, so that their imports run in parallel.
        for slot in self.slots:
            slot.start()
        logger.info("started %d evaluation processes", processes)

    def free_slots(self) -> int:
        return sum(not slot.busy for slot in self.slots)

    def submit(self, claim: Claim) -> None:
        slot = next(slot for slot in self.slots if not slot.busy)
        slot.submit(claim)

    def in_flight(self) -> list[int]:
        return [slot.claim.point_id for slot in self.slots if slot.busy]

    def collect(self, wait: float) -> list[Result]:
        """Wait up to ``wait`` seconds for results, timeouts or crashes, and return them."""
        busy = [slot for slot in self.slots if slot.busy]
        if not busy:
            return []
        deadlines = [slot.deadline for slot in busy if slot.deadline is not None]
        if deadlines:
            wait = max(0.0, min(wait, min(deadlines) - time.monotonic()))
        ready = set(wait_for_ready(
            [slot.connection for slot in busy] + [slot.process.sentinel for slot in busy], timeout=wait
        ))
        return self._finished(busy, ready)

    def drain(self) -> list[Result]:
        """Return results that are ready now, without waiting."""
        return self.collect(0.0)

    def _finished(self, busy: list[ChildEvaluator], ready: set) -> list[Result]:
        results = []
        now = time.monotonic()
        for slot in busy:
            if slot.connection in ready or slot.process.sentinel in ready:
                results.append(slot.receive())
            elif slot.deadline is not None and now >= slot.deadline:
                results.append(slot.time_out())
        return results

    def close(self) -> None:
        for slot in self.slots:
            slot.stop()


class InlineExecutor:
    """Evaluate one claim at a time in this process.

    Used by a database worker when the likelihood has no timeout: a crash of
    the likelihood then ends the worker, and the point returns to pending
    when its lease runs out.
    """

    def __init__(self, ref: LikelihoodRef, names: tuple[str, ...], executor: str = "worker"):
        self.likelihood = Likelihood(ref, names)
        self.executor = executor
        self.claim: Claim | None = None

    def free_slots(self) -> int:
        return 0 if self.claim is not None else 1

    def submit(self, claim: Claim) -> None:
        self.claim = claim

    def in_flight(self) -> list[int]:
        return [self.claim.point_id] if self.claim is not None else []

    def collect(self, wait: float) -> list[Result]:
        """Evaluate the submitted claim now; ``wait`` is ignored."""
        if self.claim is None:
            return []
        result = evaluate_claim(self.likelihood, self.claim, self.executor)
        self.claim = None
        return [result]

    def drain(self) -> list[Result]:
        return []

    def close(self) -> None:
        self.claim = None
