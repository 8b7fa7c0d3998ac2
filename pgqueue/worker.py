"""The worker: claims jobs, runs them with bounded concurrency, records outcomes, and stops
gracefully. Written once, for asyncio; sync handlers run in a thread pool."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import orjson
import psycopg
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from pgqueue.app import App
from pgqueue.completer import Completer, outcome_row
from pgqueue.context import JobContext
from pgqueue.errors import DatabaseUnavailable, SchemaNotMigrated
from pgqueue.execute import Runner
from pgqueue.job import Cancelled, Failed, Job, JobState, Outcome, Released, Snoozed, Succeeded
from pgqueue.maintenance import rescue_lost_jobs, settle_waiting_jobs
from pgqueue.notify import Listener
from pgqueue.schedule import run_scheduler
from pgqueue.settings import WorkerSettings
from pgqueue.store import AsyncJobStore

log = logging.getLogger("pgqueue.worker")
LIMITED_POLL = 0.05  # seconds between claims while a queue with limits is waiting
PUSH_SLOTS = 8  # at most this many slots offered for jobs handed over at insert
SEEN_FOR = 600.0  # seconds a pushed (job, attempt) is remembered, against double starts
NEEDS_REVISION = "0007"  # the oldest schema this worker runs on (hand-over slots)
QUICK_JOB = 0.005  # seconds: jobs this short on average let the next claim overlap a batch
job_log = logging.getLogger("pgqueue.job")


async def _configure_connection(conn: psycopg.AsyncConnection[Any]) -> None:
    # Claimed rows carry args/kwargs as jsonb: orjson parses them several times faster.
    set_json_loads(orjson.loads, conn)


_OUTCOME_LEVELS: dict[type, tuple[int, str]] = {
    Succeeded: (logging.INFO, "succeeded"),
    Failed: (logging.WARNING, "failed"),
    Snoozed: (logging.INFO, "snoozed"),
    Released: (logging.INFO, "released (shutdown)"),
    Cancelled: (logging.INFO, "cancelled"),
}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def row_from_push(body: str) -> tuple[Any, ...]:
    """The job row a push notification carries (JSON, in job_claim's column order)."""
    row = orjson.loads(body)
    for i in (6, 11, 12):  # run_at, created_at, started_at
        row[i] = datetime.fromisoformat(row[i])
    return tuple(row)


def job_from_claim(row: tuple[Any, ...], worker_id: UUID) -> Job:
    (
        job_id,
        queue,
        task,
        args,
        kwargs,
        priority,
        run_at,
        attempts,
        max_attempts,
        unique_key,
        timeout,
        created_at,
        started_at,
    ) = row
    return Job(
        id=job_id,
        queue=queue,
        task=task,
        args=args,
        kwargs=kwargs,
        state=JobState.RUNNING,
        priority=priority,
        run_at=run_at,
        attempts=attempts,
        max_attempts=max_attempts,
        unique_key=unique_key,
        timeout=timeout,
        last_error=None,
        errors=[],
        result=None,
        worker_id=worker_id,
        created_at=created_at,
        started_at=started_at,
        finished_at=None,
    )


class Worker:
    """One worker process's engine. `await run()` until `stop()` is called (or a signal)."""

    def __init__(
        self, app: App, settings: WorkerSettings | None = None, dsn: str | None = None
    ) -> None:
        self.app = app
        self.settings = settings or WorkerSettings()
        self.dsn = dsn if dsn is not None else app.dsn
        self.id = uuid4()
        self.id_text = str(self.id)
        self.queues = list(self.settings.queues) if self.settings.queues else None
        self.active: dict[int, asyncio.Task[None]] = {}
        # Claimed while every slot was taken (quick jobs only): they start as slots free.
        self.waiting: collections.deque[Job] = collections.deque()
        self.avg_duration: float | None = None
        self.contexts: dict[int, JobContext] = {}
        self.cancel_requested: set[int] = set()
        self.early_cancels: dict[int, float] = {}
        # Slots offered in pgqueue.worker_slots for jobs handed over at insert (push).
        # Slot numbers never repeat (until they wrap), so sets keep the count exact whatever
        # order notifications and withdrawals come back in.
        self.offered_slots: set[int] = set()
        self._withdrawing: set[int] | None = None  # slots taken while a withdrawal runs
        self.slot_seq = 0
        self.pushed_seen: dict[tuple[int, int], float] = {}
        self.resync = False
        self.adopt = False
        self._listened = False
        self._fetches: set[asyncio.Task[None]] = set()
        self.shutting_down: set[int] = set()
        self.processed = 0
        self.limited: list[str] = []
        self.retention: dict[str, dict[str, float]] = {}
        self.retention_default: dict[str, float] = {
            "succeeded": self.settings.retain_succeeded,
            "dead": self.settings.retain_dead,
            "cancelled": self.settings.retain_cancelled,
        }
        self.config_at = 0.0
        self.config_stale = True
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self.threads = ThreadPoolExecutor(
            max_workers=self.settings.concurrency, thread_name_prefix="pgqueue-job"
        )

    # -- control ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the worker to shut down gracefully; safe from any thread or signal handler."""
        loop, stop = self._loop, self._stop
        if loop is None or stop is None:
            return
        if loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            stop.set()
        else:
            loop.call_soon_threadsafe(stop.set)

    def wait_started(self, timeout: float | None = None) -> bool:
        """For tests and embedding: block until the worker is registered and listening."""
        return self._started.wait(timeout)

    @property
    def stuck_threads(self) -> int:
        """Sync attempts still running in threads although their jobs were given up."""
        return len(self.runner.stuck) if hasattr(self, "runner") else 0

    # -- main -------------------------------------------------------------------------------

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.wake = asyncio.Event()
        self.slot_freed = asyncio.Event()
        s = self.settings
        self.runner = Runner(self.app, self.threads)
        started = False
        try:
            pool = await self._connect()
        except BaseException:
            self._started.set()  # wait_started() returns on failure too
            self.threads.shutdown(wait=False)
            raise
        if pool is None:
            self._started.set()
            self.threads.shutdown(wait=False)
            return
        self.store = AsyncJobStore(pool)
        self.completer = Completer(
            self.store,
            self.id,
            s.outcome_batch,
            on_written=self.slot_freed.set,
            delete_now=self._delete_now,
        )
        try:
            started = True
            self.listener = listener = Listener(
                self.dsn,
                self.queues,
                self.wake,
                self._on_cancel,
                self._on_queue_change,
                on_push=self._on_push,
                on_connected=self._on_listener_connected,
            )
            helpers = [
                asyncio.create_task(listener.run(), name="pgqueue-listener"),
                asyncio.create_task(self.completer.run(), name="pgqueue-completer"),
                asyncio.create_task(self._heartbeat(), name="pgqueue-heartbeat"),
                asyncio.create_task(self._maintenance(), name="pgqueue-maintenance"),
            ]
            if s.scheduler and self.app.schedules:
                helpers.append(
                    asyncio.create_task(
                        run_scheduler(self.store, self.app.schedule_specs(), self._stop),
                        name="pgqueue-scheduler",
                    )
                )
            for helper in helpers:
                helper.add_done_callback(self._helper_died)
            # Start without notifications if need be: the safety poll covers until they work.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(listener.connected.wait(), timeout=10)
            log.info(
                "worker %s started: queues=%s concurrency=%d pid=%d",
                self.id,
                ",".join(self.queues) if self.queues else "*",
                s.concurrency,
                os.getpid(),
            )
            self._started.set()
            try:
                await self._claim_loop()
            finally:
                await self._shutdown()
                for helper in helpers:
                    helper.cancel()
                await asyncio.gather(*helpers, return_exceptions=True)
                try:
                    await self.store.worker_unregister(self.id)
                except DatabaseUnavailable:
                    pass
        finally:
            self._started.set()
            await pool.close()
            self.threads.shutdown(wait=False, cancel_futures=True)
            if started:
                log.info("worker %s stopped after %d job(s)", self.id, self.processed)

    def _new_pool(self) -> AsyncConnectionPool:
        # Few connections: claims, outcomes and heartbeats are batched, never one per job.
        return AsyncConnectionPool(
            self.dsn,
            min_size=2,
            max_size=4,
            open=False,
            name="pgqueue-worker",
            kwargs={"autocommit": True},
            timeout=5.0,
            configure=_configure_connection,
        )

    async def _connect(self) -> AsyncConnectionPool | None:
        """Open a pool and register, retrying while the database is away. None if stopped."""
        assert self._stop is not None
        backoff = 0.5
        while not self._stop.is_set():
            pool = self._new_pool()
            store = AsyncJobStore(pool)
            try:
                # One direct attempt first: it fails fast, with libpq's reason, in one line.
                probe = await psycopg.AsyncConnection.connect(self.dsn, connect_timeout=5)
                await probe.close()
                await pool.open(wait=True, timeout=5)
                version = await store.schema_version()
                if version is None:
                    raise SchemaNotMigrated(
                        "the pgqueue schema is not migrated: run `pgqueue migrate`"
                    )
                if version < NEEDS_REVISION:
                    raise SchemaNotMigrated(
                        f"the pgqueue schema is at revision {version} and this worker needs "
                        f"{NEEDS_REVISION}: run `pgqueue migrate`"
                    )
                await store.worker_register(
                    self.id,
                    socket.gethostname(),
                    os.getpid(),
                    self.queues,
                    self.settings.concurrency,
                    self.settings.lease,
                )
                return pool
            except (DatabaseUnavailable, PoolTimeout, psycopg.OperationalError) as exc:
                reason = str(exc) if isinstance(exc, DatabaseUnavailable) else _one_line(exc)
                log.warning("database unavailable (%s); retrying in %.1fs", reason, backoff)
                await pool.close()
                await self._sleep(backoff)
                backoff = min(backoff * 2, 10.0)
            except BaseException:
                await pool.close()
                raise
        return None

    async def _sleep(self, seconds: float, *events: asyncio.Event) -> None:
        """Sleep, cut short by a stop request or any of `events`."""
        assert self._stop is not None
        waiters = [asyncio.create_task(e.wait()) for e in (self._stop, *events)]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    # -- claiming ---------------------------------------------------------------------------

    def _free_slots(self) -> int:
        """Jobs to claim now. Running jobs, jobs waiting for a slot and offered slots take
        room. While jobs take a few milliseconds at most, one batch more than the concurrency
        may be held, waiting to start: the next claim then runs beside the current batch
        instead of after it, when every slot would sit empty for its round trip. Finished
        jobs whose outcome is not written yet count too, beyond a batch's worth, so a slow
        database cannot make the worker claim far ahead."""
        c = self.settings.concurrency
        cap = 2 * c if self._quick() else c
        held = self._held()
        return min(cap - held, cap + c - held - self.completer.backlog)

    def _held(self) -> int:
        return len(self.active) + len(self.waiting) + self.offered

    def _room(self) -> int:
        """Slots free to start a job right now."""
        return self.settings.concurrency - self._held()

    def _quick(self) -> bool:
        return self.avg_duration is not None and self.avg_duration < QUICK_JOB

    async def _refresh_config(self) -> None:
        """Which of our queues have cluster-wide limits (claimed through the limited path)."""
        rows = await self.store.queue_config()
        ours = set(self.queues) if self.queues else None
        s = self.settings
        defaults = {
            "succeeded": s.retain_succeeded,
            "dead": s.retain_dead,
            "cancelled": s.retain_cancelled,
        }
        self.retention = {
            row[0]: {
                state: value if value is not None else defaults[state]
                for state, value in zip(("succeeded", "dead", "cancelled"), row[6:9], strict=True)
            }
            for row in rows
        }
        self.retention_default = defaults
        self.limited = sorted(
            name
            for name, paused, conc, rate, *_ in rows
            if not paused
            and (conc is not None or rate is not None)
            and (ours is None or name in ours)
        )
        self.config_at = time.monotonic()
        self.config_stale = False

    async def _claim(self, limit: int) -> list[tuple[Any, ...]]:
        """Claim up to `limit` jobs, from limited queues too."""
        if self.config_stale or time.monotonic() - self.config_at > self.settings.poll_interval:
            await self._refresh_config()
        room = self._room()
        rows = await self.store.job_claim(self.id, self.queues, limit)
        # Limited queues' jobs are never claimed to wait: they would hold their global budget.
        rest = min(limit, room) - len(rows)
        if self.limited and rest > 0:
            rows += await self.store.job_claim_limited(self.id, self.limited, rest)
        return rows

    async def _idle_delay(self) -> float:
        """How long to sleep when nothing is due: until the next scheduled job, the safety
        poll, or (with a limited queue) a short look again."""
        s = self.settings
        wait = await self.store.job_next_run_at(self.queues)
        delay = s.poll_interval if wait is None else min(s.poll_interval, max(wait, 0.001))
        if self.limited:
            # A limited queue's budget comes back as jobs finish and starts slide out of
            # the window: look again soon rather than at the next notification.
            delay = min(delay, LIMITED_POLL)
        return delay

    async def _claim_loop(self) -> None:
        assert self._stop is not None
        s = self.settings
        backoff = 0.1
        while not self._stop.is_set():
            try:
                if self.resync:
                    await self._resync()
                elif self.adopt:
                    await self._adopt()
                free = self._free_slots()
                if free <= 0 and self.offered:
                    # Woken with all room offered: take the offers back to claim instead.
                    await self._withdraw()
                    free = self._free_slots()
            except (DatabaseUnavailable, psycopg.Error) as exc:
                log.warning("%s; trying again in %.1fs", _one_line(exc), backoff)
                await self._sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if free <= 0:
                self.slot_freed.clear()
                await self._sleep(s.poll_interval, self.slot_freed)
                continue
            limit = min(free, s.claim_batch)
            # Cleared before the claim: a notification that lands during it is not lost.
            self.wake.clear()
            try:
                rows = await self._claim(limit)
            except (DatabaseUnavailable, psycopg.Error) as exc:
                log.warning("%s; claiming again in %.1fs", _one_line(exc), backoff)
                await self._sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            if rows:
                jobs = sorted(
                    (job_from_claim(r, self.id) for r in rows),
                    key=lambda j: (-j.priority, j.run_at, j.id),
                )
                for job in jobs:
                    self._start(job)
            if len(rows) < limit:
                # Nothing more is due (the jobs above are already started): offer idle
                # slots for jobs handed over at insert, then sleep until a notification,
                # the next due job, or the safety poll.
                try:
                    await self._offer(self._room())
                    delay = await self._idle_delay()
                except (DatabaseUnavailable, psycopg.Error):
                    delay = backoff
                await self._sleep(delay, self.wake)
            elif len(self.active) >= s.concurrency and not self._quick():
                # Let jobs that finish together free their slots before the next claim.
                await asyncio.sleep(0)

    def _start(self, job: Job) -> None:
        if len(self.active) < self.settings.concurrency:
            self._launch(job)
        else:
            self.waiting.append(job)

    def _launch(self, job: Job) -> None:
        self.active[job.id] = asyncio.create_task(self._execute(job))
        if job.id in self.early_cancels:
            del self.early_cancels[job.id]
            self._on_cancel(job.id)

    # -- jobs handed over at insert (push) -----------------------------------------------------

    @property
    def offered(self) -> int:
        return len(self.offered_slots)

    async def _offer(self, room: int) -> None:
        """Offer up to PUSH_SLOTS of this idle worker's free slots to the insert trigger."""
        n = min(PUSH_SLOTS - self.offered, room)
        if n <= 0 or self._stop is None or self._stop.is_set():
            return
        listener = self.listener
        if not (listener.connected.is_set() and listener.holds_lock):
            return  # a hand-over would go unheard until the listener is back
        slots = [(self.slot_seq + i) % 2**31 for i in range(n)]
        self.slot_seq = (self.slot_seq + n) % 2**31
        # Counted before the insert: a slot can be taken, and heard of, before it returns.
        self.offered_slots.update(slots)
        try:
            await self.store.worker_offer_slots(self.id, self.queues, slots, listener.lock_id)
        except BaseException:
            self.offered_slots.difference_update(slots)
            raise

    async def _withdraw(self) -> None:
        """Take back our offered slots; those being taken right now stay counted."""
        self._withdrawing = set()
        try:
            remaining = await self.store.worker_withdraw_slots(self.id)
            self.offered_slots = remaining - self._withdrawing
        finally:
            self._withdrawing = None

    def _on_push(self, payload: str) -> None:
        """A producer's transaction handed us a job (already running for us) and committed."""
        worker, _, rest = payload.partition(" ")
        if worker != self.id_text:
            return
        slot, _, body = rest.partition(" ")
        try:
            taken = int(slot)
            self.offered_slots.discard(taken)
            if self._withdrawing is not None:
                self._withdrawing.add(taken)
            if body.startswith("["):
                self._take_pushed(row_from_push(body))
            else:
                fetch = asyncio.create_task(self._fetch_pushed([int(body)]))
                self._fetches.add(fetch)
                fetch.add_done_callback(self._fetches.discard)
        except (ValueError, TypeError, IndexError, KeyError):
            # A notification of another shape (another version of the trigger, say): the
            # job is found in the table instead.
            log.warning("unreadable job notification; the job is read from the table")
            self.resync = True
            self.wake.set()

    async def _fetch_pushed(self, ids: list[int]) -> None:
        """A pushed job too big for its notification: read it (the rescue covers failure)."""
        try:
            for row in await self.store.job_running_for(self.id, ids):
                self._take_pushed(row)
        except (DatabaseUnavailable, psycopg.Error) as exc:
            log.warning("could not read pushed job(s) %s: %s", ids, _one_line(exc))
            self.resync = True

    def _take_pushed(self, row: tuple[Any, ...]) -> None:
        job = job_from_claim(row, self.id)
        key = (job.id, job.attempts)
        if key in self.pushed_seen or job.id in self.active:
            return  # already started (read from the table, then its notification came)
        self.pushed_seen[key] = time.monotonic()
        if self._stop is not None and self._stop.is_set():
            # Handed over while we stop: back to the queue, the attempt not counted.
            self.completer.put(outcome_row(job, Released()))
            return
        self._start(job)

    def _on_listener_connected(self) -> None:
        # Notifications sent while the listener was away are lost: look at the tables. (The
        # first time there is nothing to find: no slot was offered yet.)
        self.resync = self.resync or self._listened
        self._listened = True
        self.wake.set()

    async def _resync(self) -> None:
        """Recount our offered slots and start jobs handed to us that we never heard of."""
        self.resync = True
        await self._withdraw()
        await self._adopt()
        self.resync = False

    async def _adopt(self) -> None:
        """Start jobs running for us in the table that we know nothing of: handed over while
        no notification could reach us. Runs in the claim loop, never beside a claim."""
        self.adopt = True
        # What we know of must be taken before the query: a job of ours that finishes and
        # has its outcome written while the query runs still shows as running in its result.
        known = set(self.active) | {j.id for j in self.waiting} | self.completer.pending_ids()
        rows = await self.store.job_running_for(self.id)
        self.adopt = False
        for row in rows:
            if row[0] not in known:
                self._take_pushed(row)

    # -- running ----------------------------------------------------------------------------

    async def _execute(self, job: Job) -> None:
        ctx = JobContext(job=job, attempt=job.attempts, logger=job_log, _app=self.app)
        self.contexts[job.id] = ctx
        task = self.app.tasks.get(job.task)
        timeout = job.timeout if job.timeout is not None else (task.timeout if task else None)
        started = time.monotonic()
        try:
            try:
                if job.id in self.cancel_requested:
                    raise asyncio.CancelledError  # cancelled before it could start
                outcome: Outcome = await self.runner.run(job, ctx, timeout)
            except asyncio.CancelledError:
                outcome = (
                    Released()
                    if job.id in self.shutting_down
                    else Cancelled("cancelled while running")
                )
            if job.id in self.cancel_requested and not isinstance(outcome, Released):
                outcome = Cancelled("cancelled while running")
            self.completer.put(outcome_row(job, outcome, ctx._followups))
            self.processed += 1
            duration = time.monotonic() - started
            avg = self.avg_duration
            self.avg_duration = duration if avg is None else 0.9 * avg + 0.1 * duration
            self._log_outcome(job, outcome, duration)
            if job.id in self.runner.stuck:
                await self.runner.wait_thread(job.id)
        finally:
            # A later attempt of the same job may have started here meanwhile (this one's
            # thread outlived its timeout): leave that one's entries alone.
            if self.active.get(job.id) is asyncio.current_task():
                del self.active[job.id]
                self.contexts.pop(job.id, None)
                self.cancel_requested.discard(job.id)
            stopping = self._stop is not None and self._stop.is_set()
            if self.waiting and not stopping and len(self.active) < self.settings.concurrency:
                self._launch(self.waiting.popleft())
            self.slot_freed.set()

    def _log_outcome(self, job: Job, outcome: Outcome, duration: float) -> None:
        """One line per outcome: successes at INFO, retries WARNING, dead ERROR."""
        level, what = _OUTCOME_LEVELS[type(outcome)]
        if not job_log.isEnabledFor(level):
            return  # the hot path when successes are not wanted: no formatting at all
        detail = ""
        match outcome:
            case Failed(error, None):
                level, what, detail = logging.ERROR, "dead", f": {error['error']}"
            case Failed(error, retry_in):
                detail = f", retry in {retry_in:.1f}s: {error['error']}"
            case Snoozed(delay):
                detail = f" for {delay:.1f}s"
        fields = {
            "job_id": job.id,
            "task": job.task,
            "queue": job.queue,
            "attempt": job.attempts,
            "duration_ms": round(duration * 1000, 3),
            "outcome": what,
        }
        job_log.log(
            level,
            "job %d %s queue=%s attempt=%d duration=%.1fms %s%s",
            job.id,
            job.task,
            job.queue,
            job.attempts,
            duration * 1000,
            what,
            detail,
            extra={"job": fields},
        )

    def _helper_died(self, task: asyncio.Task[Any]) -> None:
        """A background part ended on its own (a bug): say so and stop, rather than go on
        half-working; the supervisor or the service manager starts a fresh worker."""
        if task.cancelled() or self._stop is None or self._stop.is_set():
            return
        exc = task.exception()
        log.error("worker part %s stopped unexpectedly (%r); shutting down", task.get_name(), exc)
        self.stop()

    def _delete_now(self, state: str, queue: str) -> bool:
        """Retention 0 for this queue and final state: delete at completion."""
        return self.retention.get(queue, self.retention_default).get(state, 1.0) == 0

    async def _prune(self) -> None:
        """Delete finished jobs past their retention, a batch at a time, for at most about a
        second per heartbeat; each batch is its own short transaction (SKIP LOCKED)."""
        s = self.settings
        values = [*self.retention_default.values()]
        values += [v for per_queue in self.retention.values() for v in per_queue.values()]
        horizon = min(values) if values else 0.0
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            deleted = await self.store.job_prune(self.retention_default, horizon, s.prune_batch)
            if deleted < s.prune_batch:
                break

    def _on_queue_change(self, queue: str) -> None:
        if self.queues is None or queue in self.queues:
            self.config_stale = True
            self.wake.set()

    def _on_cancel(self, job_id: int) -> None:
        task = self.active.get(job_id)
        if task is None:
            # Possibly claimed a moment ago and not started yet: remember it briefly.
            self.early_cancels[job_id] = time.monotonic()
            if len(self.early_cancels) > 1000:
                horizon = time.monotonic() - 60
                self.early_cancels = {k: v for k, v in self.early_cancels.items() if v > horizon}
            return
        self.cancel_requested.add(job_id)
        ctx = self.contexts.get(job_id)
        if ctx is None:
            return  # its task has not started: _execute sees the request first thing
        ctx._cancel()
        handler = self.app.tasks.get(ctx.job.task) if ctx else None
        # Async handlers are cancelled at their next await; sync ones see ctx.cancelled.
        if handler is not None and handler.is_async:
            task.cancel()

    # -- liveness ---------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        """Only the liveness update keeps to the interval; maintenance runs on its own."""
        s = self.settings
        while True:
            await asyncio.sleep(s.heartbeat_interval)
            try:
                if not await self.store.worker_heartbeat(self.id):
                    # Declared lost (silent past the lease): its jobs were rescued. Drop the
                    # copies still running here, then come back as a live worker.
                    log.warning("worker %s was declared lost; registering again", self.id)
                    self.waiting.clear()  # rescued too, and not started: not ours any more
                    for job_id in list(self.active):
                        self._on_cancel(job_id)
                    await self.store.worker_register(
                        self.id,
                        socket.gethostname(),
                        os.getpid(),
                        self.queues,
                        s.concurrency,
                        s.lease,
                    )
                    self.resync = True
            except (DatabaseUnavailable, psycopg.Error) as exc:
                log.warning("heartbeat failed: %s", _one_line(exc))
            except Exception:
                log.exception("heartbeat: unexpected error")

    async def _maintenance(self) -> None:
        """Rescue lost workers' jobs, settle dependencies, prune old jobs: race-free on every
        node, each statement short."""
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval)
            horizon = time.monotonic() - SEEN_FOR
            self.pushed_seen = {k: t for k, t in self.pushed_seen.items() if t > horizon}
            self.adopt = True  # the claim loop looks for unheard-of hand-overs now and then
            try:
                await rescue_lost_jobs(self.store)
                await settle_waiting_jobs(self.store)
                await self._prune()
            except (DatabaseUnavailable, psycopg.Error) as exc:
                log.warning("maintenance failed: %s", _one_line(exc))
            except Exception:
                log.exception("maintenance: unexpected error")

    # -- shutdown ---------------------------------------------------------------------------

    async def _stop_handovers(self) -> None:
        """Take back every slot, waiting for producers that hold one to commit or roll back;
        then release the jobs handed over to us that we have not heard of yet."""
        try:
            await self.store.worker_drop_slots(self.id, wait=min(self.settings.shutdown_grace, 5))
            self.offered_slots.clear()
            if self._fetches:
                await asyncio.wait(set(self._fetches), timeout=5)
            await self._adopt()  # we are stopping: these go straight back to the queue
        except (DatabaseUnavailable, psycopg.Error) as exc:
            # The trigger skips a worker that is gone; the rescue covers what was handed over.
            log.warning("could not take back offered slots: %s", _one_line(exc))

    async def _shutdown(self) -> None:
        grace = self.settings.shutdown_grace
        # Claimed but not started: straight back to the queue, the attempt not counted (or
        # cancelled, if a cancel came for it meanwhile).
        while self.waiting:
            job = self.waiting.popleft()
            outcome: Outcome = Released()
            if self.early_cancels.pop(job.id, None) is not None:
                outcome = Cancelled("cancelled before it started")
            self.completer.put(outcome_row(job, outcome))
        await self._stop_handovers()
        if self.active:
            log.info("stopping: waiting up to %gs for %d running job(s)", grace, len(self.active))
            await asyncio.wait(list(self.active.values()), timeout=grace)
        if self.active:
            log.warning(
                "grace period over: releasing %d job(s) back to the queue", len(self.active)
            )
            await asyncio.sleep(0)  # let tasks created just now start, so they can be released
            for job_id, task in list(self.active.items()):
                self.shutting_down.add(job_id)
                ctx = self.contexts.get(job_id)
                if ctx is not None:
                    ctx._cancel()
                task.cancel()
                self.runner.stuck.pop(job_id, None)
            await asyncio.wait(list(self.active.values()), timeout=5)
        if not await self.completer.flush(timeout=max(grace, 10)):
            log.error(
                "could not record %d outcome(s) before exiting; the rescue will handle those jobs",
                self.completer.backlog,
            )


def run_worker(app: App, settings: WorkerSettings, dsn: str | None = None) -> Worker:
    """Run a worker in this thread until SIGTERM/SIGINT (the CLI's `pgqueue work`)."""
    import signal

    worker = Worker(app, settings, dsn)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        signals = 0

        def on_signal(signum: int) -> None:
            nonlocal signals
            signals += 1
            if signals == 1:
                log.info(
                    "received %s: shutting down gracefully (again to exit at once)",
                    signal.Signals(signum).name,
                )
                worker.stop()
            else:
                log.warning("received %s again: exiting now", signal.Signals(signum).name)
                logging.shutdown()
                os._exit(1)

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)
        await worker.run()

    asyncio.run(main())
    return worker
