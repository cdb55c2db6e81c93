"""Heartbeats: renew the leases of a worker's claims while it evaluates.

The heartbeat runs on a thread because an evaluation in the worker's own
process blocks the main thread. The thread only runs SQL; likelihoods are
never called from it.
"""

from __future__ import annotations

import logging
import threading

from campaign.store import Store
from campaign.store.claims import renew_leases

__all__ = ["Heartbeat"]

logger = logging.getLogger(__name__)

#: Renewals per lease; a worker survives this many missed heartbeats minus one.
RENEWALS_PER_LEASE = 3


class Heartbeat:
    """A background thread that extends the leases ``worker`` holds.

    Args:
        store: The campaign database.
        worker: The worker id written on claimed points.
        lease_seconds: Lease length; renewed every ``lease_seconds / 3``.
    """

    def __init__(self, store: Store, worker: str, lease_seconds: float):
        self.store = store
        self.worker = worker
        self.lease_seconds = lease_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{worker}", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        interval = self.lease_seconds / RENEWALS_PER_LEASE
        while not self._stop.wait(interval):
            try:
                with self.store.transaction() as session:
                    held = renew_leases(session, self.worker, self.lease_seconds)
                logger.debug("worker %s renewed %d lease(s)", self.worker, held)
            except Exception:  # a database hiccup must not end the heartbeat; the next beat retries
                logger.warning("worker %s: renewing leases failed; retrying in %.3g s",
                               self.worker, interval, exc_info=True)
