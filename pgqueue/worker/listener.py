"""LISTEN/NOTIFY wake-ups for the worker, on a dedicated connection.

Notifications are hints and nothing more: any role may send them, so none carries a job or
an instruction. A job notification wakes the claimer (which claims from the table); a cancel
notification makes the worker read the cancel requests of its own running jobs from the
table; a queue notification makes it re-read queue settings. If the connection drops the
worker keeps working by polling, and the listener reconnects, LISTENs again and calls
`on_connected` (anything may have happened meanwhile: the worker looks at the table).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from pgqueue.store.errors import first_line
from pgqueue.worker.outage import Outage

JOBS_CHANNEL = "pgqueue_jobs"
CANCEL_CHANNEL = "pgqueue_cancel"
QUEUES_CHANNEL = "pgqueue_queues"
ANY_QUEUE = "*"  # sent for a queue name too long for a notification
CHECK_EVERY = 30.0  # seconds without a notification before the listener checks its server
CHECK_TIMEOUT = 10.0  # seconds the server has to answer that check

log = logging.getLogger("pgqueue.worker")


class Listener:
    """Keeps a LISTEN connection open and turns notifications into wake-ups."""

    def __init__(
        self,
        dsn: str,
        queues: Sequence[str] | None,
        on_jobs: Callable[[str], None],
        on_cancel: Callable[[], None],
        on_queue_change: Callable[[str], None],
        on_connected: Callable[[], None],
        outage: Outage | None = None,
    ) -> None:
        self.outage = outage or Outage()
        self.dsn = dsn
        self.queues = frozenset(queues) if queues else None
        self.on_jobs = on_jobs
        self.on_cancel = on_cancel
        self.on_queue_change = on_queue_change
        self.on_connected = on_connected
        self.connected = asyncio.Event()
        self.tried = asyncio.Event()  # the first connection was made, or failed

    async def run(self) -> None:
        """Listen until cancelled, reconnecting with backoff."""
        backoff = 0.1
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
            except psycopg.OperationalError as exc:
                # A connection refused is the database away (it starts an outage); a lost
                # one may be this connection alone (a terminated backend).
                log.log(
                    self.outage.level(exc),
                    "listener: cannot connect (%s); retrying in %.1fs",
                    first_line(exc),
                    backoff,
                )
                self.tried.set()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            try:
                channels = (JOBS_CHANNEL, CANCEL_CHANNEL, QUEUES_CHANNEL)
                await conn.execute("; ".join(f"LISTEN {c}" for c in channels))
                self.connected.set()
                self.tried.set()
                if backoff > 0.1:
                    log.log(logging.DEBUG if self.outage.known else logging.INFO,
                            "listener: reconnected")  # fmt: skip
                    self.outage.answered()
                backoff = 0.1
                self.on_connected()
                while True:
                    async for note in conn.notifies(timeout=CHECK_EVERY):
                        self._dispatch(note.channel, note.payload)
                    await self._check(conn)
            except (psycopg.OperationalError, TimeoutError) as exc:
                log.log(
                    self._level(),
                    "listener: connection lost (%s); polling until it is back",
                    first_line(exc),
                )
                await asyncio.sleep(backoff)
                backoff = 0.2
            finally:
                self.connected.clear()
                await conn.close()

    def _level(self) -> int:
        """The listener's troubles are news unless the database is known to be away. They
        start no outage: this one connection may be all that went (a terminated backend)."""
        return logging.DEBUG if self.outage.known else logging.WARNING

    @staticmethod
    async def _check(conn: psycopg.AsyncConnection[Any]) -> None:
        """After a quiet spell: does the server still answer on this connection? One that
        stopped answering (a server process stuck, a network that drops without a word)
        would bring no more wake-ups, and nothing else would tell."""
        try:
            await asyncio.wait_for(conn.execute("SELECT 1 AS listener_check"), CHECK_TIMEOUT)
        except TimeoutError:
            raise TimeoutError(f"no answer in {CHECK_TIMEOUT:g}s") from None

    def _dispatch(self, channel: str, payload: str) -> None:
        if channel == JOBS_CHANNEL:
            if self.queues is None or payload in self.queues or payload == ANY_QUEUE:
                self.on_jobs(payload)
        elif channel == CANCEL_CHANNEL:
            self.on_cancel()
        elif channel == QUEUES_CHANNEL:
            self.on_queue_change(payload)
