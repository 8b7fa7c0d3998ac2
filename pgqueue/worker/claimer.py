"""The claim loop: takes due jobs from the table for the attempts registry, as many as it
has free slots for, and sleeps until a wake-up, the next due job, or the safety poll.

A job is claimed only for a slot that is free now, so every claimed job starts at once and
its attempt (counted by the claim) is one it really gets. Nothing is claimed ahead to wait
in the worker: an attempt charged to a job still waiting would be lost with the process."""

from __future__ import annotations

import asyncio
import logging
from uuid import UUID

import psycopg

from pgqueue.errors import SchemaNotMigrated
from pgqueue.job import Job
from pgqueue.settings import WorkerSettings
from pgqueue.store import AsyncJobStore, first_line, is_unavailable
from pgqueue.worker.attempts import Attempts
from pgqueue.worker.completer import Completer
from pgqueue.worker.events import Wakeup, wait_any
from pgqueue.worker.queue_settings import QueueSettings

log = logging.getLogger("pgqueue.worker")
LIMITED_POLL = 0.05  # seconds between claims while a queue with limits is waiting
GATHER = 0.002  # seconds a claim for a few slots waits for more to free


def retryable(exc: BaseException) -> bool:
    """Worth trying again: the database is away, or it refused this statement this time (a
    lock timeout, a deadlock, a cancelled statement). A missing schema or a bug is not."""
    if isinstance(exc, SchemaNotMigrated):
        return False
    return is_unavailable(exc) or isinstance(exc, psycopg.Error)


class Claimer:
    """Claims jobs for one worker process."""

    def __init__(
        self,
        store: AsyncJobStore,
        worker_id: UUID,
        settings: WorkerSettings,
        attempts: Attempts,
        completer: Completer,
        queue_settings: QueueSettings,
        tasks: list[str] | None = None,
    ) -> None:
        self.store = store
        self.worker_id = worker_id
        self.settings = settings
        self.queues = list(settings.queues) if settings.queues else None
        self.tasks = tasks  # only jobs of these tasks are claimed (None: any)
        self.attempts = attempts
        self.completer = completer
        self.queue_settings = queue_settings
        self.wake = Wakeup()  # set by notifications, settings changes, and the stop
        # Free slots worth a claim without waiting a moment for more.
        self.gather = max(1, min(settings.claim_batch, settings.concurrency // 4))

    def free(self) -> int:
        """Jobs to claim now: free slots, less the outcomes not written yet beyond a batch's
        worth, so a slow database cannot make the worker run far ahead of its records."""
        c = self.settings.concurrency
        return min(c - self.attempts.held(), 2 * c - self.attempts.held() - self.completer.backlog)

    async def claim_once(self, limit: int) -> list[Job]:
        """Claim up to `limit` jobs (from limited queues too) and hand them to the attempts
        registry, best first."""
        if self.queue_settings.due():
            self.queue_settings.load(await self.store.queue_config())
        room = self.attempts.room()
        jobs = await self.store.job_claim(self.worker_id, self.queues, limit, tasks=self.tasks)
        rest = min(limit, room) - len(jobs)
        limited = self.queue_settings.limited
        if limited and rest > 0:
            jobs += await self.store.job_claim_limited(
                self.worker_id, limited, rest, tasks=self.tasks
            )
        jobs.sort(key=lambda j: (-j.priority, j.run_at, j.id))
        for job in jobs:
            self.attempts.submit(job)
        return jobs

    async def _idle_delay(self) -> float:
        """How long to sleep when nothing is due: until the next scheduled job, the safety
        poll, or (with a limited queue) a short look again."""
        s = self.settings
        wait = await self.store.job_next_run_at(self.queues, tasks=self.tasks)
        delay = s.poll_interval if wait is None else min(s.poll_interval, max(wait, 0.001))
        if self.queue_settings.limited:
            # A limited queue's budget comes back as jobs finish and starts slide out of
            # the window: look again soon rather than at the next notification.
            delay = min(delay, LIMITED_POLL)
        return delay

    async def run(self, stop: asyncio.Event) -> None:
        """Claim until `stop` is set. Database trouble is waited out with backoff."""
        s = self.settings
        backoff = 0.1
        slot_freed = self.attempts.slot_freed
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            free = self.free()
            if free <= 0:
                slot_freed.clear()
                if self.free() <= 0:
                    await wait_any(s.poll_interval, stop, slot_freed)
                continue
            if free < self.gather and self.attempts.running():
                # A slot or two just freed while others run: give the jobs finishing beside
                # them a moment to free theirs, so one claim serves many slots (quick jobs
                # would otherwise cost a round trip each). A slow job loses GATHER at most.
                deadline = loop.time() + GATHER
                while self.free() < self.gather and loop.time() < deadline:
                    slot_freed.clear()
                    await wait_any(deadline - loop.time(), stop, slot_freed)
                free = self.free()
            limit = min(free, s.claim_batch)
            # Cleared before the claim: a notification that lands during it is not lost.
            self.wake.clear()
            try:
                jobs = await self.claim_once(limit)
                if len(jobs) < limit:
                    if jobs:
                        await asyncio.sleep(0)  # let the jobs start before the next query
                    delay = await self._idle_delay()
                    await self.wake.wait(delay)
                elif self.attempts.running() >= s.concurrency:
                    # Let jobs that finish together free their slots before the next claim.
                    await asyncio.sleep(0)
            except Exception as exc:
                if not retryable(exc):
                    raise
                log.warning("%s; claiming again in %.1fs", first_line(exc), backoff)
                await wait_any(backoff, stop)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
