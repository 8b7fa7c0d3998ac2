"""Rescue: jobs of workers that stopped heartbeating go back to the queue (or to dead).

No leader is needed: the rescue query locks the rows it changes with SKIP LOCKED and
re-checks that each job is still running, so every worker may run it at any time and a job is
rescued once. It runs on each worker's heartbeat tick.
"""

from __future__ import annotations

import logging
from datetime import datetime

from pgqueue.store import AsyncJobStore

log = logging.getLogger("pgqueue.maintenance")


async def rescue_lost_jobs(store: AsyncJobStore, now: datetime | None = None) -> int:
    """Rescue what lost workers held, forget those workers; returns the jobs rescued."""
    rescued = await store.job_rescue_lost(now)
    dead = [job_id for job_id, state, _ in rescued if state == "dead"]
    if rescued:
        log.warning(
            "rescued %d job(s) from lost workers: %s%s",
            len(rescued),
            ",".join(str(job_id) for job_id, _, _ in rescued[:50]),
            f" ({len(dead)} dead, out of attempts)" if dead else "",
        )
    await store.worker_prune(now)
    if dead:
        await store.job_settle_children(dead)
    return len(rescued)


async def settle_waiting_jobs(store: AsyncJobStore) -> None:
    """The sweep: a child whose parents finished while it was being enqueued (so nobody saw
    it yet) is freed or cancelled here."""
    cancelled, released = await store.job_settle_children(None)
    if cancelled or released:
        log.info("dependency sweep: %d job(s) freed, %d cancelled", released, cancelled)
