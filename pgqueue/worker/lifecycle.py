"""The worker process's lifecycle: connect and register, start the parts, stop gracefully.

The parts, each owning its state:
- Attempts (attempts.py): running and waiting attempts, slots, marks.
- Runner (runner.py): runs an attempt to its outcome.
- Completer (completer.py): writes outcomes in batches.
- Claimer (claimer.py): claims jobs into Attempts.
- Listener (listener.py): notifications, which are hints only.
- Heartbeat and CancelWatcher (liveness.py).
- Stopping (stopping.py): the grace period, releases, the last outcomes.
- Maintenance services (pgqueue.maintenance): rescue, dependency sweep, pruning, scheduler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import uuid4

import psycopg
from psycopg_pool import AsyncConnectionPool

import pgqueue
from pgqueue.app import App
from pgqueue.dsn import with_liveness
from pgqueue.errors import ConfigurationError
from pgqueue.maintenance import DependencySweeper, Pruner, Rescuer, Scheduler, every
from pgqueue.settings import WorkerSettings
from pgqueue.store import AsyncJobStore, first_line, idle, is_unavailable
from pgqueue.store.errors import refused_reason
from pgqueue.store.single import SingleConnection
from pgqueue.worker.attempts import Attempts
from pgqueue.worker.claimer import Claimer
from pgqueue.worker.completer import Completer
from pgqueue.worker.connections import (
    POOLED_CLAIMS,
    configure,
    configure_claims,
    configure_pooled,
)
from pgqueue.worker.events import cancel_and_wait, wait_any
from pgqueue.worker.listener import Listener
from pgqueue.worker.liveness import CancelWatcher, Heartbeat
from pgqueue.worker.outage import Outage, QuietWhileAway
from pgqueue.worker.queue_settings import QueueSettings
from pgqueue.worker.runner import Runner
from pgqueue.worker.stopping import RELEASE_HOLD, shut_down
from pgqueue.worker.transactions import HandlerConnections

log = logging.getLogger("pgqueue.worker")
# The oldest schema this worker runs on: raise it with any migration whose columns or
# functions the worker's statements use (test_migrations runs a worker on it).
NEEDS_REVISION = "0028"
UNREGISTER_WAIT = 3.0  # seconds a stopping worker gives the removal of its row


class Worker:
    """One worker process's engine. `await run()` until `stop()` is called (or a signal)."""

    def __init__(
        self, app: App, settings: WorkerSettings | None = None, dsn: str | None = None
    ) -> None:
        self.app = app
        self.settings = settings or WorkerSettings()
        self.dsn = dsn if dsn is not None else app.dsn
        # Behind a transaction pooler: no session state on any connection, and LISTEN only
        # over a listen DSN (else the claimer polls).
        self.pooled = self.settings.pooled or app.pooler
        self.listen_dsn = self.settings.listen_dsn
        if self.listen_dsn is None and not self.pooled:
            self.listen_dsn = self.dsn
        self.id = uuid4()
        self.queues = list(self.settings.queues) if self.settings.queues else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._failure: BaseException | None = None  # a part that died: raised by run()
        self._on_stop: list[Callable[[], None]] = []  # parts to wake when told to stop
        self.runner: Runner | None = None
        self.attempts: Attempts | None = None  # for tests and embedding: what runs here
        self.outage = Outage()

    # -- control ------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the worker to shut down gracefully; safe from any thread or signal handler."""
        loop, stop = self._loop, self._stop
        if loop is None or stop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._signal_stop()
        else:
            loop.call_soon_threadsafe(self._signal_stop)

    def _signal_stop(self) -> None:
        assert self._stop is not None
        self._stop.set()
        for wake in self._on_stop:
            wake()

    def wait_started(self, timeout: float | None = None) -> bool:
        """For tests and embedding: block until the worker is registered and listening."""
        return self._started.wait(timeout)

    @property
    def processed(self) -> int:
        return self.runner.processed if self.runner else 0

    abandoned_tasks = 0  # set by run_worker: tasks that outlived the stop (see there)

    @property
    def stuck_threads(self) -> int:
        """Sync attempts still running in threads although their attempt timed out."""
        return len(self.runner.executor.stuck) if self.runner else 0

    # -- running ------------------------------------------------------------------------------

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        stop = self._stop = asyncio.Event()
        threads = ThreadPoolExecutor(
            max_workers=self.settings.concurrency, thread_name_prefix="pgqueue-job"
        )
        pools: list[AsyncConnectionPool] = []
        # Every connection of the worker notices a peer that vanished (see dsn.LIVENESS).
        dsn = with_liveness(self.dsn)
        # The claimer's and the completer's own connections (see store/single.py).
        if self.pooled:
            claims = SingleConnection(dsn, configure_pooled, each_use=POOLED_CLAIMS)
            outcomes = SingleConnection(dsn, configure_pooled)
        else:
            claims = SingleConnection(dsn, configure_claims)
            outcomes = SingleConnection(dsn, configure)
        try:
            if not await self._connect(pools, claims, outcomes):
                return
            await self._run_parts(pools[0], claims, outcomes, threads, stop)
            if self._failure is not None:
                raise self._failure
        finally:
            self._started.set()  # wait_started() returns on failure too
            for pool in pools:
                await pool.close()
            await claims.close()
            await outcomes.close()
            threads.shutdown(wait=False, cancel_futures=True)

    @property
    def _configure(self) -> Callable[[psycopg.AsyncConnection[Any]], Any]:
        return configure_pooled if self.pooled else configure

    def _pool(self, name: str, size: int, configure: Any) -> AsyncConnectionPool:
        async def configured(conn: psycopg.AsyncConnection[Any]) -> None:
            await configure(conn)
            idle.watch(conn)

        return AsyncConnectionPool(
            with_liveness(self.dsn),
            min_size=1,
            max_size=size,
            open=False,
            name=name,
            kwargs={"autocommit": True},
            timeout=5.0,
            configure=configured,
        )

    @property
    def tasks(self) -> list[str]:
        """The tasks this worker serves: it claims jobs of these only."""
        return sorted(self.app.tasks)

    async def _register(self, store: AsyncJobStore) -> None:
        """Declare the app's tasks and their defaults, then this worker."""
        s = self.settings
        await store.task_register(
            [
                {
                    "name": t.name,
                    "queue": t.queue,
                    "priority": t.priority,
                    "max_attempts": t.max_attempts,
                    "timeout": t.timeout,
                }
                for t in self.app.tasks.values()
            ]
        )
        await store.worker_register(
            self.id,
            socket.gethostname(),
            os.getpid(),
            self.queues,
            s.concurrency,
            s.lease,
            self.tasks,
            pgqueue.__version__,
        )

    async def _connect(
        self, pools: list[AsyncConnectionPool], claims: SingleConnection, outcomes: SingleConnection
    ) -> bool:
        """Open the connections and register, retrying while the database is away. False if
        stopped first. A refused login or a missing schema is raised at once."""
        assert self._stop is not None
        backoff = 0.5
        while not self._stop.is_set():
            # Few connections: heartbeats, cancels and maintenance share this pool; claims
            # and outcomes have one connection each.
            main = self._pool("pgqueue-worker", 2, self._configure)
            try:
                # The claimer's connection first: a direct connection fails fast, with libpq's
                # reason, in one line (the pool would retry until its timeout). The pool's and
                # the completer's then open side by side: the first claim and the first
                # outcome batch do not wait for a connection.
                await claims.open()
                opened = await asyncio.gather(
                    main.open(wait=True, timeout=5), outcomes.open(), return_exceptions=True
                )
                for result in opened:
                    if isinstance(result, BaseException):
                        raise result
                store = AsyncJobStore(main)
                await store.worker_schema_fits(self.id, NEEDS_REVISION)
                await self._register(store)
                pools[:] = [main]
                return True
            except Exception as exc:
                await main.close()
                if reason := refused_reason(exc):
                    raise ConfigurationError(reason) from None
                if not is_unavailable(exc):
                    raise
                log.warning(
                    "database unavailable (%s); retrying in %.1fs", first_line(exc), backoff
                )
                await wait_any(backoff, self._stop)
                backoff = min(backoff * 2, 10.0)
        return False

    async def _run_parts(
        self,
        main: AsyncConnectionPool,
        claims: SingleConnection,
        outcomes: SingleConnection,
        threads: ThreadPoolExecutor,
        stop: asyncio.Event,
    ) -> None:
        s = self.settings
        store = AsyncJobStore(main)
        queue_settings = QueueSettings(s)
        outage = self.outage
        completer = Completer(
            AsyncJobStore(outcomes),
            self.id,
            s.outcome_batch,
            delete_now=queue_settings.delete_now,
            outage=outage,
        )
        # ctx.transaction()'s connections
        connections = HandlerConnections(with_liveness(self.dsn), s.concurrency, self.pooled)
        hold = RELEASE_HOLD
        runner = self.runner = Runner(self.app, threads, completer, connections, hold=hold)
        attempts = self.attempts = Attempts(s.concurrency, runner.make, runner.execute)
        claimer = Claimer(
            AsyncJobStore(claims), self.id, s, attempts, completer, queue_settings, self.tasks,
            outage,
        )  # fmt: skip

        def written() -> None:
            attempts.slot_freed.set()
            if queue_settings.limited:
                claimer.wake.set()  # a limited queue's budget may have come back

        completer.on_written = written
        cancels = CancelWatcher(store, self.id, attempts, outage)
        self._on_stop.append(claimer.wake.set)

        def lost(still_ours: set[tuple[int, int]]) -> None:
            for job in attempts.abandon_all(still_ours):
                log.info("job %d: given up (rescued from this worker)", job.id)

        def queue_changed(queue: str) -> None:
            if queue_settings.changed(queue):
                # Look in every queue: one whose limits were lifted (or that was resumed)
                # is not among those this worker knows to have jobs (hints of limited
                # queues are not kept), and would wait for the safety poll.
                claimer.rediscover()

        def listener_connected() -> None:
            claimer.rediscover()  # jobs and cancels may have come while we were away
            cancels.request()

        heartbeat = Heartbeat(
            store, self.id, s, lambda: self._register(store), lost, cancels.request, outage
        )
        listener = None
        if self.listen_dsn is not None:
            # A listen DSN of its own has troubles of its own (the pooler may be fine).
            own = outage if self.listen_dsn == self.dsn else Outage(what="listen DSN")
            listener = Listener(
                with_liveness(self.listen_dsn), self.queues, claimer.hint, cancels.request,
                queue_changed, listener_connected, own,
            )  # fmt: skip
        else:
            log.warning(
                "the DSN is a transaction pooler and no listen DSN was given (--listen-dsn, "
                "PGQUEUE_LISTEN_DSN): no LISTEN, polling for jobs every %gs",
                s.poll_interval,
            )
        rescuer = Rescuer(store, self.id, heartbeat.healthy_for, s.lease)
        sweeper = DependencySweeper(store)
        pruner = Pruner(store, queue_settings, s.prune_batch)

        async def maintain() -> None:
            await rescuer.run_once()
            await sweeper.run_once()
            await pruner.run_once()

        parts = {
            "completer": completer.run(),
            "heartbeat": heartbeat.run(),
            "cancels": cancels.run(),
            "maintenance": every(s.heartbeat_interval, "maintenance", maintain, outage),
        }
        if listener is not None:
            parts["listener"] = listener.run()
        if s.scheduler and self.app.schedules:
            parts["scheduler"] = self._schedule(Scheduler(store, self.app.schedule_specs()))
        quiet = QuietWhileAway(outage)
        logging.getLogger("psycopg.pool").addFilter(quiet)
        helpers = [asyncio.create_task(c, name=f"pgqueue-{n}") for n, c in parts.items()]
        for helper in helpers:
            helper.add_done_callback(self._helper_died)
        started = False
        try:
            # Start without notifications if the listener's first try failed: the safety
            # poll covers until they work.
            if listener is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(listener.tried.wait(), timeout=10)
            log.info(
                "worker %s started: queues=%s concurrency=%d pid=%d",
                self.id,
                ",".join(self.queues) if self.queues else "*",
                s.concurrency,
                os.getpid(),
            )
            started = True
            self._started.set()
            await claimer.run(stop)
        finally:
            await shut_down(attempts, completer, s.shutdown_grace, hold, outage)
            for part in await cancel_and_wait(helpers):
                log.warning("worker part %s ignored its cancellation", part.get_name())
            with contextlib.suppress(Exception):
                await connections.close()
            if not outage.known:  # else its row goes once its lease has passed
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(store.worker_unregister(self.id), UNREGISTER_WAIT)
            logging.getLogger("psycopg.pool").removeFilter(quiet)
            if started:
                log.info("worker %s stopped after %d job(s)", self.id, runner.processed)

    async def _schedule(self, scheduler: Scheduler) -> None:
        assert self._stop is not None
        while not self._stop.is_set():
            began = self.outage.now()
            try:
                await scheduler.run_once()
            except Exception as exc:
                if is_unavailable(exc) or isinstance(exc, psycopg.Error):
                    log.log(self.outage.level(exc, began), "scheduler: %s", first_line(exc))
                else:
                    log.exception("scheduler: unexpected error")
            await wait_any(scheduler.delay(), self._stop)

    def _helper_died(self, task: asyncio.Task[Any]) -> None:
        """A part ended on its own (a bug, or a missing schema): say so in one line and
        stop, rather than go on half-working."""
        if task.cancelled() or self._stop is None or self._stop.is_set():
            return
        exc = task.exception()
        self._failure = exc or RuntimeError(f"worker part {task.get_name()} ended")
        log.error("worker part %s stopped: %s; shutting down", task.get_name(), exc)
        self.stop()
