"""Rescue: jobs of workers that stopped heartbeating go back to the queue (or to dead, or
to cancelled when a cancel was asked for), never charged again: the attempt was counted
when it started. See River's job rescuer for the same duty, driven there by time alone;
here by the workers' heartbeats, so a long job that is still alive is never re-run."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from uuid import UUID

from pgqueue.store import AsyncJobStore

log = logging.getLogger("pgqueue.maintenance")


class Rescuer:
    """Rescues what lost workers held and forgets those workers.

    `me` is the worker running the rescue (its own jobs are never taken: it knows it is
    alive). `healthy_for` says how long its own connection has worked without a gap; the
    rescue waits until that covers a whole `lease`, so that after an outage or a pause of
    this process every live worker has had the time to beat again before its jobs are
    taken as lost."""

    def __init__(
        self,
        store: AsyncJobStore,
        me: UUID | None = None,
        healthy_for: Callable[[], float] | None = None,
        lease: float = 0.0,
    ) -> None:
        self.store = store
        self.me = me
        self.healthy_for = healthy_for
        self.lease = lease

    def ready(self) -> bool:
        return self.healthy_for is None or self.healthy_for() >= self.lease

    async def run_once(self, now: datetime | None = None) -> int:
        """Rescue now; returns the number of jobs rescued (0 while not ready)."""
        if not self.ready():
            return 0
        rescued = await self.store.job_rescue_lost(self.me, now)
        if rescued:
            ended = [job_id for job_id, state in rescued if state in ("dead", "cancelled")]
            log.warning(
                "rescued %d job(s) from lost workers: %s%s",
                len(rescued),
                ",".join(str(job_id) for job_id, _ in rescued[:50]),
                f" ({len(ended)} dead or cancelled)" if ended else "",
            )
            if ended:
                await self.store.job_settle_children(ended)
        await self.store.worker_prune(self.me, now)
        return len(rescued)
