"""One connection kept for one part of the worker (the claimer, the completer), with the
pool's interface but none of a pool's bookkeeping on every use. Internal API.

psycopg_pool's AsyncConnectionPool costs around a millisecond per borrow and return on a
busy two-core machine: for the claimer that is most of an idle worker's enqueue-to-start
time, and for both it is paid once per claim and once per outcome batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, LiteralString

import psycopg
from psycopg import pq

from pgqueue.store.idle import closed_by_server, watch

Configure = Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]]


class SingleConnection:
    """Hands out one connection, to one user at a time; connects (again) when needed.

    With `each_use`, every use is a transaction of its own that starts with that statement:
    settings made there with SET LOCAL last for that use only, which is how session settings
    are had through a transaction pooler (the next use may run on another server session)."""

    def __init__(
        self,
        dsn: str,
        configure: Configure | None = None,
        *,
        each_use: LiteralString | None = None,
    ) -> None:
        self.dsn = dsn
        self._configure = configure
        self._each_use = each_use
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lock = asyncio.Lock()
        self.closed = False

    async def open(self) -> None:
        async with self.connection():
            pass

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        async with self._lock:
            conn = self._conn
            if conn is not None and (closed_by_server(conn)):
                await conn.close()
                conn = self._conn = None
            if conn is None:
                conn = await psycopg.AsyncConnection.connect(
                    self.dsn, autocommit=True, connect_timeout=5
                )
                if self._configure is not None:
                    await self._configure(conn)
                watch(conn)
                self._conn = conn
            try:
                if self._each_use is None:
                    yield conn
                else:
                    async with conn.transaction():
                        await conn.execute(self._each_use)
                        yield conn
            finally:
                # Broken, or left mid-statement (a cancelled query): start afresh next time.
                if conn.broken or conn.info.transaction_status != pq.TransactionStatus.IDLE:
                    self._conn = None
                    await conn.close()

    async def close(self) -> None:
        self.closed = True
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
