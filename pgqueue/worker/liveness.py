"""Liveness: the heartbeat, what it learns (still registered? for how long has the database
been reachable without a gap?), and the cancel requests of this worker's running jobs,
read from the table on every beat and whenever a notification hints at one."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from uuid import UUID

from pgqueue.settings import WorkerSettings
from pgqueue.store import AsyncJobStore, first_line
from pgqueue.worker.attempts import Attempts
from pgqueue.worker.claimer import retryable
from pgqueue.worker.outage import Outage

log = logging.getLogger("pgqueue.worker")


class CancelWatcher:
    """Reads this worker's cancel requests (pgqueue.jobs.cancel_requested_at) and tells the
    attempts. A notification on pgqueue_cancel only asks for a look: it carries nothing."""

    def __init__(
        self,
        store: AsyncJobStore,
        worker_id: UUID,
        attempts: Attempts,
        outage: Outage | None = None,
    ) -> None:
        self.store = store
        self.outage = outage or Outage()
        self.worker_id = worker_id
        self.attempts = attempts
        self._asked = asyncio.Event()

    def request(self) -> None:
        self._asked.set()

    async def check_once(self) -> int:
        """Cancel every attempt of ours that was asked to; how many were told now."""
        if not self.attempts.held():
            return 0
        told = 0
        for job_id, attempt in await self.store.job_cancel_requests(self.worker_id):
            if self.attempts.cancel(job_id, attempt):
                log.info("job %d attempt %d: cancel requested", job_id, attempt)
                told += 1
        return told

    async def run(self) -> None:
        while True:
            await self._asked.wait()
            self._asked.clear()
            began = self.outage.now()
            try:
                await self.check_once()
            except Exception as exc:
                if not retryable(exc):
                    raise
                log.log(
                    self.outage.level(exc, began),
                    "could not read cancel requests (%s); trying again",
                    first_line(exc),
                )
                await asyncio.sleep(1.0)
                self._asked.set()


class Heartbeat:
    """Beats every `heartbeat_interval`. When the beat finds this worker's row gone (it was
    silent past its lease and declared lost), the worker registers again and `on_lost` gets
    the attempts the table still says run here (id, attempt).

    `healthy_for()` is how long beats have succeeded without missing one:
    the rescuer waits for a full lease of it, so after an outage every live worker has had
    the time to beat again before anyone's jobs are taken as lost."""

    def __init__(
        self,
        store: AsyncJobStore,
        worker_id: UUID,
        settings: WorkerSettings,
        register: Callable[[], Awaitable[None]],
        on_lost: Callable[[set[tuple[int, int]]], None],
        on_beat: Callable[[], None],
        outage: Outage | None = None,
    ) -> None:
        self.store = store
        self.outage = outage or Outage()
        self.worker_id = worker_id
        self.settings = settings
        self.register = register
        self.on_lost = on_lost
        self.on_beat = on_beat
        now = time.monotonic()
        self._last_ok = now  # the worker registered just before the heartbeat starts
        self._healthy_since = now

    def healthy_for(self) -> float:
        now = time.monotonic()
        if now - self._last_ok > self.settings.heartbeat_interval * 2:
            return 0.0
        return now - self._healthy_since

    async def beat_once(self) -> None:
        if not await self.store.worker_heartbeat(self.worker_id):
            log.warning("worker %s was declared lost; registering again", self.worker_id)
            # Registered first: a rescue that starts after it sees this worker alive, so
            # what the table says runs here after it stays here.
            await self.register()
            rows = await self.store.job_running_here(self.worker_id)
            self.on_lost({(row[0], row[1]) for row in rows})
        now = time.monotonic()
        if now - self._last_ok > self.settings.heartbeat_interval * 2:
            self._healthy_since = now  # a gap: an outage, or this process was paused
        self._last_ok = now
        self.outage.answered()
        self.on_beat()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval)
            began = self.outage.now()
            try:
                await self.beat_once()
            except Exception as exc:
                if not retryable(exc):
                    raise
                log.log(self.outage.level(exc, began), "heartbeat failed: %s", first_line(exc))
