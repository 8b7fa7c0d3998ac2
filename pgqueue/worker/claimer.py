"""The claim loop: takes due jobs from the table for the attempts registry, as many as it
has free slots for, and sleeps until a wake-up, the next due job, or the safety poll.

A job is claimed only for a slot that is free now, so every claimed job starts at once and
its attempt (counted by the claim) is one it really gets. Nothing is claimed ahead to wait
in the worker: an attempt charged to a job still waiting would be lost with the process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from uuid import UUID

import psycopg

from pgqueue.errors import SchemaNotMigrated
from pgqueue.job import Job
from pgqueue.settings import WorkerSettings
from pgqueue.store import AsyncJobStore, OutcomeRow, first_line, is_unavailable
from pgqueue.store.aio import ClaimPosition, position
from pgqueue.worker.attempts import Attempts
from pgqueue.worker.completer import Completer
from pgqueue.worker.events import Wakeup, wait_any
from pgqueue.worker.listener import ANY_QUEUE
from pgqueue.worker.outage import Outage
from pgqueue.worker.queue_settings import QueueSettings

log = logging.getLogger("pgqueue.worker")
LIMITED_POLL = 0.05  # seconds between claims while a queue with limits is waiting
GATHER = 0.002  # seconds a claim for a few slots waits for more to free
UNSURE_FOR = 60.0  # seconds after a failed claim that strays are looked for (see _unsure_until)
DISCOVER_EVERY = 1.0  # seconds: an every-queue worker looks for queues it has not heard of
FULL_WALK_EVERY = 1.0  # seconds: a claim of one queue starts from the start (see _after)
MAX_KNOWN = 64  # queue names kept from notifications; past that, every claim looks everywhere
# Seconds between the claims right after this worker starts waiting (see Claimer.run).
CATCH_UP = (0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2)


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
        outage: Outage | None = None,
    ) -> None:
        self.store = store
        self.outage = outage or Outage()
        self.worker_id = worker_id
        self.settings = settings
        self.queues = list(settings.queues) if settings.queues else None
        self.tasks = tasks  # only jobs of these tasks are claimed (None: any)
        self.attempts = attempts
        self.completer = completer
        self.queue_settings = queue_settings
        self.wake = Wakeup()  # set by notifications, settings changes, and the stop
        # A worker of every queue claims from the queues it knows to have jobs, and looks
        # for others (a walk over the whole claim index) once a DISCOVER_EVERY, after a
        # sleep that no notification cut short, and after notifications were lost. The walk
        # reads the same index entries as the claim: doing it every time doubled its cost.
        self.known: set[str] = set()
        self._hinted: set[str] = set()  # queues named by notifications during this claim
        self._discover_at = 0.0  # loop time of the next claim over every queue
        # Free slots worth a claim without waiting a moment for more.
        self.gather = max(1, min(settings.claim_batch, settings.concurrency // 4))
        # Whether the table says this worker waits for jobs (it registers waiting): inserts
        # notify only then. The claims right after it starts waiting come quickly, then
        # slower (CATCH_UP): an insert whose trigger ran while this worker was busy, in a
        # transaction that committed after it began to wait, notified nobody.
        self.waiting = True
        self._catch_up = 0
        # Per queue, where the last claim of that queue alone stopped: the next one starts
        # there, not at the dead index entries of every job claimed since the last vacuum
        # (job_claim_queue). Forgotten after a claim that found fewer than it asked, and at
        # least once a FULL_WALK_EVERY, so that a job that landed behind it (its transaction
        # committed late) waits a second at most.
        self._after: dict[str, ClaimPosition] = {}
        self._full_walk_at = 0.0
        # Until when a claim may have been lost: its statement failed, perhaps after the
        # database committed it (the connection broke before the answer came back), or
        # before it did (its backend, cut off from this worker, may still be waiting for a
        # lock, and commit later). The jobs it took would run for this worker by the table
        # and nowhere here, and no rescue takes them while this worker lives: until then,
        # release_strays gives them back before each claim.
        self._unsure_until = 0.0
        self._limited_dry = 2  # limited claims in a row that took nothing (see _held_back)

    def hint(self, queue: str) -> None:
        """A notification: jobs may be due in `queue` (ANY_QUEUE: in some queue). It is only
        a hint (anyone may send one): at worst it costs a claim that finds nothing."""
        if self.queues is None and queue not in self.queue_settings.limited:
            # (A limited queue is claimed through its own path at every claim anyway.)
            if queue == ANY_QUEUE or len(self.known) >= MAX_KNOWN:
                self.rediscover()
            else:
                self.known.add(queue)
                self._hinted.add(queue)
        self.wake.set()

    def rediscover(self) -> None:
        """Look in every queue at the next claim (notifications may have been missed)."""
        self._discover_at = 0.0
        self.wake.set()

    async def release_strays(self) -> int:
        """Give back the jobs the table says run here that this worker never received (see
        _unsure_until): as releases, which count no attempt, written by the completer and
        guarded like any outcome. What is known is read after the table: a job whose
        outcome was written in between gets a release that changes nothing."""
        rows = await self.store.job_running_here(self.worker_id)
        known = self.attempts.known() | self.completer.pending()
        strays = [row for row in rows if (row[0], row[1]) not in known]
        for job_id, attempt, queue, started in strays:
            log.warning("job %d: claimed, but the claim's answer was lost; released", job_id)
            self.completer.put(
                OutcomeRow(
                    job_id, attempt, "queued", delay=0.0, refund=1, queue=queue, started=started
                )
            )
        return len(strays)

    def _claim_queues(self) -> list[str] | None:
        """The queues the next claim reads (None: every queue; empty: none, as a look
        everywhere just found nothing and nobody has said otherwise since)."""
        if self.queues is not None:
            return self.queues
        now = asyncio.get_running_loop().time()
        if now >= self._discover_at:
            self._discover_at = now + DISCOVER_EVERY
            return None
        return sorted(self.known)

    def _learn(self, jobs: list[Job], limit: int, everywhere: bool) -> None:
        """What a claim says about where jobs are. One that took fewer than it asked took
        every due job where it looked: only the queues it found jobs in, and those notified
        meanwhile, are worth reading next time. A full claim over every queue adds the
        queues it found."""
        found = {job.queue for job in jobs}
        if len(jobs) < limit:
            self.known = found | self._hinted
        elif everywhere:
            self.known |= found

    def _start(self, queues: list[str] | None) -> ClaimPosition | None:
        """Where a claim of `queues` starts (None: at the start)."""
        if queues is None or len(queues) != 1:
            return None
        now = asyncio.get_running_loop().time()
        if now >= self._full_walk_at:
            self._full_walk_at = now + FULL_WALK_EVERY
            self._after.clear()
        return self._after.get(queues[0])

    def _note_end(self, queues: list[str] | None, jobs: list[Job], limit: int) -> None:
        """Remember where a full claim of one queue stopped; forget it otherwise."""
        if queues is None or len(queues) != 1:
            return
        if not jobs or len(jobs) < limit:
            self._after.pop(queues[0], None)
        else:
            self._after[queues[0]] = max(position(job) for job in jobs)

    def free(self) -> int:
        """Jobs to claim now: free slots, as long as running jobs and outcomes not written
        yet stay within four times the concurrency, so a slow database cannot make the worker
        run far ahead of its records. Within that, outcomes gather while a batch is written
        and the next batch grows with the load (at twice the concurrency the claimer waited
        for each write of quick jobs: 6% slower)."""
        c = self.settings.concurrency
        return min(c - self.attempts.held(), 4 * c - self.attempts.held() - self.completer.backlog)

    async def claim_once(self, limit: int) -> list[Job]:
        """Claim up to `limit` jobs (from limited queues too) and hand them to the attempts
        registry, best first."""
        if self.queue_settings.due():
            self.queue_settings.load(await self.store.queue_config())
        room = self.attempts.room()
        queues = self._claim_queues()
        self._hinted = set()
        jobs = (
            await self.store.job_claim(
                self.worker_id, queues, limit, tasks=self.tasks, after=self._start(queues)
            )
            if queues is None or queues
            else []
        )
        self._note_end(queues, jobs, limit)
        if self.queues is None:
            self._learn(jobs, limit, everywhere=queues is None)
        rest = min(limit, room) - len(jobs)
        limited = self.queue_settings.limited
        if limited and rest > 0:
            taken = await self.store.job_claim_limited(
                self.worker_id, limited, rest, tasks=self.tasks
            )
            self._limited_dry = 0 if taken else self._limited_dry + 1
            jobs += taken
        jobs.sort(key=lambda j: (-j.priority, j.run_at, j.id))
        for job in jobs:
            self.attempts.submit(job)
        return jobs

    def _held_back(self) -> bool:
        """Whether a claim that took fewer than it asked was held back by a queue's limits
        rather than short of due jobs: it took jobs from a limited queue, or it is the first
        of that queue's claims to take none (a per-key cap reached while outcomes are being
        written). Such a claim is no reason to say this worker waits: waiting means that
        inserts should wake it, and limited queues are looked at every LIMITED_POLL anyway.
        Saying it flipped the flag, a write each way, at almost every claim of a per-key
        backlog (500 writes in a 60,000-job drain, a sixth of the claimer's time)."""
        return bool(self.queue_settings.limited) and self._limited_dry < 2

    async def _say_waiting(self, waiting: bool) -> None:
        """Tell the table when this worker starts or stops waiting for jobs."""
        if waiting != self.waiting:
            await self.store.worker_waiting(self.worker_id, waiting)
            self.waiting = waiting
            self._catch_up = 0

    def _caught_up(self, delay: float) -> float:
        """`delay`, or less while catching up after this worker began to wait."""
        if self._catch_up < len(CATCH_UP):
            delay = min(delay, CATCH_UP[self._catch_up])
            self._catch_up += 1
        return delay

    async def _idle_delay(self) -> float:
        """How long to sleep when nothing is due: until the next scheduled job, the safety
        poll, or (with a limited queue) a short look again."""
        s = self.settings
        if self.queue_settings.limited:
            # A limited queue's budget comes back as jobs finish (an outcome written here
            # wakes the claimer too) and as starts slide out of the window: look again soon
            # rather than at the next notification.
            return LIMITED_POLL
        wait = await self.store.job_next_run_at(self.queues, tasks=self.tasks)
        return s.poll_interval if wait is None else min(s.poll_interval, max(wait, 0.001))

    async def run(self, stop: asyncio.Event) -> None:
        """Claim until `stop` is set. Database trouble is waited out with backoff."""
        s = self.settings
        backoff = 0.1
        slot_freed = self.attempts.slot_freed
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            free = self.free()
            if free <= 0:
                if self.waiting:
                    try:
                        await self._say_waiting(False)  # full: a wake-up would find no room
                    except Exception as exc:
                        if not retryable(exc):
                            raise
                        log.log(
                            self.outage.level(exc), "%s; saying so again later", first_line(exc)
                        )
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
                if free <= 0:
                    continue  # taken meanwhile (outcomes piled up): a claim of 0 asks nothing
            limit = min(free, s.claim_batch)
            # Cleared before the claim: a notification that lands during it is not lost.
            self.wake.clear()
            try:
                if self._unsure_until > loop.time():
                    await self.release_strays()
                jobs = await self.claim_once(limit)
                self.outage.answered()
                await self._say_waiting(len(jobs) < limit and not self._held_back())
                if len(jobs) < limit:
                    if jobs:
                        await asyncio.sleep(0)  # let the jobs start before the next query
                    delay = self._caught_up(await self._idle_delay())
                    await self.wake.wait(delay)
                    if not self.wake.is_set() and not self.queue_settings.limited:
                        self.rediscover()  # woken by the clock: a delayed job may be due
                elif self.attempts.running() >= s.concurrency:
                    # Let jobs that finish together free their slots before the next claim.
                    await asyncio.sleep(0)
            except Exception as exc:
                if not retryable(exc):
                    raise
                self._unsure_until = loop.time() + UNSURE_FOR
                self.outage.level(exc)
                # Every try is told, during an outage too (the other parts keep quiet then).
                log.warning("%s; claiming again in %.1fs", first_line(exc), backoff)
                await wait_any(backoff, stop)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
        if self._unsure_until > loop.time():
            # Stopping with a claim in doubt: give its jobs back now rather than to the
            # rescue after the lease (which would count an attempt that never started).
            with contextlib.suppress(Exception):
                await self.release_strays()
