"""LISTEN/NOTIFY wake-ups for the worker, on a dedicated connection.

The listener only sets flags: `wake` when a job was inserted or re-queued in one of the
worker's queues, and calls `on_cancel(job_id)` for a cancel request and `on_push(payload)`
for a job handed to a worker by the insert trigger. If the connection drops the worker keeps
working by polling, and the listener reconnects, LISTENs again and calls `on_connected`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

JOBS_CHANNEL = "pgqueue_jobs"
CANCEL_CHANNEL = "pgqueue_cancel"
QUEUES_CHANNEL = "pgqueue_queues"
PUSH_CHANNEL = "pgqueue_push"
# The advisory lock class that marks a worker's listening session as live (migration 0007):
# the insert trigger hands jobs only to workers whose lock is held.
PUSH_LOCK_CLASS = 1886548833

log = logging.getLogger("pgqueue.worker")


class Listener:
    """Keeps a LISTEN connection open and turns notifications into wake-ups."""

    def __init__(
        self,
        dsn: str,
        queues: Sequence[str] | None,
        wake: asyncio.Event,
        on_cancel: Callable[[int], None],
        on_queue_change: Callable[[str], None] = lambda queue: None,
        on_push: Callable[[str], None] = lambda payload: None,
        on_connected: Callable[[], None] = lambda: None,
    ) -> None:
        self.dsn = dsn
        self.queues = frozenset(queues) if queues else None
        self.wake = wake
        self.on_cancel = on_cancel
        self.on_queue_change = on_queue_change
        self.on_push = on_push
        self.on_connected = on_connected
        self.connected = asyncio.Event()
        # Held by the listening session while connected: jobs may be handed over to us.
        self.lock_id = random.randint(1, 2**31 - 1)
        self.holds_lock = False
        self._conn: psycopg.AsyncConnection[object] | None = None

    async def run(self) -> None:
        """Listen until cancelled, reconnecting with backoff."""
        backoff = 0.1
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
            except psycopg.OperationalError as exc:
                log.warning(
                    "listener: cannot connect (%s); retrying in %.1fs", _first_line(exc), backoff
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self._conn = conn
            try:
                channels = (JOBS_CHANNEL, CANCEL_CHANNEL, QUEUES_CHANNEL, PUSH_CHANNEL)
                await conn.execute("; ".join(f"LISTEN {c}" for c in channels))
                await self._lock(conn)
                self.connected.set()
                self.on_connected()
                if backoff > 0.1:
                    log.info("listener: reconnected")
                backoff = 0.1
                # Anything may have happened while we were not listening.
                self.wake.set()
                async for note in conn.notifies():
                    self._dispatch(note.channel, note.payload)
            except psycopg.OperationalError as exc:
                log.warning(
                    "listener: connection lost (%s); polling until it is back", _first_line(exc)
                )
                backoff = 0.1 if backoff <= 0.1 else backoff
                await asyncio.sleep(backoff)
                backoff = 0.2
            finally:
                self.connected.clear()
                self.holds_lock = False
                self._conn = None
                await conn.close()

    async def _lock(self, conn: psycopg.AsyncConnection[object]) -> None:
        """Take our live-session lock; another id if this one is held (by another worker, or
        by our previous session not yet gone)."""
        for _ in range(5):
            cur = await conn.execute(
                "SELECT pg_try_advisory_lock(%s, %s)", (PUSH_LOCK_CLASS, self.lock_id)
            )
            row: Any = await cur.fetchone()
            if row is not None and row[0]:
                self.holds_lock = True
                return
            self.lock_id = random.randint(1, 2**31 - 1)

    def _dispatch(self, channel: str, payload: str) -> None:
        if channel == PUSH_CHANNEL:
            self.on_push(payload)
        elif channel == JOBS_CHANNEL:
            if self.queues is None or payload in self.queues:
                self.wake.set()
        elif channel == QUEUES_CHANNEL:
            self.on_queue_change(payload)
        elif channel == CANCEL_CHANNEL:
            try:
                job_id = int(payload)
            except ValueError:
                return
            self.on_cancel(job_id)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
