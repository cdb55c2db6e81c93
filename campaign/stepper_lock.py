"""The stepper lock: at most one ``campaign step`` per campaign at a time.

The lock is a row in table ``campaign_locks`` with a lease on the database
clock, so hosts with skewed clocks agree on when it runs out. While a step
runs, a background thread renews the lease every third of its length. A
stepper that died stops renewing, and the next stepper takes the lock over
once the lease has run out.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from datetime import datetime, timezone

import sqlalchemy as sa

from campaign.errors import ConflictError
from campaign.store import Store, models
from campaign.store.campaigns import current_host, current_user
from campaign.store.engine import database_clock

__all__ = ["StepperLock"]

logger = logging.getLogger(__name__)


class StepperLock:
    """Hold a campaign's stepper lock inside a ``with`` block.

    Args:
        store: The campaign's database.
        campaign_id: The campaign to lock.
        campaign_name: Used in messages.
        lease_seconds: Lease length; a dead holder blocks the campaign at most this long.

    Raises:
        ConflictError: On entry, when another live stepper holds the lock;
            the message names its host, process id, user and start time.
    """

    def __init__(self, store: Store, campaign_id: int, campaign_name: str, lease_seconds: float):
        self.store = store
        self.campaign_id = campaign_id
        self.campaign_name = campaign_name
        self.lease_seconds = float(lease_seconds)
        self.holder = f"{current_host()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "StepperLock":
        self.acquire()
        self._thread = threading.Thread(target=self._renew_until_stopped, name="stepper-lease", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.release()

    def acquire(self) -> None:
        """Take the lock, or take it over from a holder whose lease ran out."""
        table = models.CampaignLock.__table__
        with self.store.transaction() as session:
            clock = float(session.scalar(sa.select(database_clock(self.store.dialect))))
            values = {
                "holder": self.holder, "host": current_host(), "pid": os.getpid(), "user": current_user(),
                "acquired_at": clock, "lease_expires_at": clock + self.lease_seconds,
            }
            current = session.execute(
                sa.select(table).where(table.c.campaign_id == self.campaign_id).with_for_update()
            ).mappings().first()
            if current is None:
                try:
                    with session.begin_nested():
                        session.execute(table.insert().values(campaign_id=self.campaign_id, **values))
                except sa.exc.IntegrityError:
                    # Another stepper inserted its row between our read and our insert.
                    current = session.execute(sa.select(table).where(table.c.campaign_id == self.campaign_id)).mappings().one()
                    raise ConflictError(self._held_message(current, clock)) from None
            elif current["lease_expires_at"] < clock:
                session.execute(table.update().where(
                    table.c.campaign_id == self.campaign_id, table.c.holder == current["holder"],
                ).values(**values))
                logger.warning("campaign %s: took over the stepper lock of %s, whose lease ran out %.0f s ago",
                               self.campaign_name, current["holder"], clock - current["lease_expires_at"])
            else:
                raise ConflictError(self._held_message(current, clock))
        logger.info("campaign %s: stepper lock taken by %s", self.campaign_name, self.holder)

    def renew(self) -> bool:
        """Extend the lease; return False (and set ``lost``) when another stepper has taken the lock."""
        table = models.CampaignLock.__table__
        with self.store.transaction() as session:
            clock = database_clock(self.store.dialect)
            result = session.execute(
                table.update()
                .where(table.c.campaign_id == self.campaign_id, table.c.holder == self.holder)
                .values(lease_expires_at=clock + self.lease_seconds)
            )
        if result.rowcount == 0:
            self.lost = True
            logger.error("campaign %s: stepper lock of %s was taken over by another stepper",
                         self.campaign_name, self.holder)
        return not self.lost

    def check(self) -> None:
        """Raise ConflictError when the lock was lost, so the step stops before writing more."""
        if self.lost:
            raise ConflictError(
                f"campaign {self.campaign_name!r}: this stepper's lease ran out and another stepper took over "
                f"the campaign; this step stops here (raise settings.lease_seconds if the database was unreachable)"
            )

    def release(self) -> None:
        table = models.CampaignLock.__table__
        with self.store.transaction() as session:
            session.execute(table.delete().where(table.c.campaign_id == self.campaign_id, table.c.holder == self.holder))
        logger.info("campaign %s: stepper lock released by %s", self.campaign_name, self.holder)

    def _renew_until_stopped(self) -> None:
        interval = self.lease_seconds / 3.0
        while not self._stop.wait(interval):
            try:
                if not self.renew():
                    return
            except sa.exc.SQLAlchemyError as exc:
                # The next renewal retries; the lease covers two missed renewals.
                logger.warning("campaign %s: renewing the stepper lease of %s failed: %s",
                               self.campaign_name, self.holder, exc)

    def _held_message(self, row, clock: float) -> str:
        since = datetime.fromtimestamp(row["acquired_at"], timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        remaining = max(0.0, row["lease_expires_at"] - clock)
        return (
            f"campaign {self.campaign_name!r} is being stepped by another process: host {row['host']}, "
            f"pid {row['pid']}, user {row['user'] or 'unknown'}, since {since}. Wait for it to finish; "
            f"if that process is dead, its lock expires in {remaining:.0f} s"
        )
