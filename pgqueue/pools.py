"""An App's connections: one pool for synchronous calls, and one per asyncio event loop
(a psycopg pool cannot cross loops), each opened on first use."""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from typing import Any, Protocol

import psycopg
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from pgqueue.dsn import probe, session_kwargs, with_liveness
from pgqueue.store import AsyncJobStore, JobStore, idle, tolerant_loads


class PoolSettings(Protocol):
    """What the pools are opened with, read when each opens (the CLI sets `dsn` and
    `pooler` on an App after it is made)."""

    dsn: str
    pooler: bool
    pool_size: int
    pool_timeout: float


# Every Pools, for the fork hook below.
_ALL: weakref.WeakSet[Pools] = weakref.WeakSet()
# Pools a forked child inherited: kept from the garbage collector, which would close their
# connections, and closing a connection tells the server to end the session the parent
# still uses.
_INHERITED: list[object] = []


def _forget_after_fork() -> None:
    """In a forked child (a web server's workers started after the app was loaded): open
    new pools rather than share the parent's connections, whose protocol state two
    processes would corrupt."""
    for pools in list(_ALL):
        pools.forget()


os.register_at_fork(after_in_child=_forget_after_fork)


class Pools:
    """The stores of one App, over pools opened on first use and closed by `close`."""

    def __init__(self, settings: PoolSettings) -> None:
        _ALL.add(self)
        self.settings = settings
        self._lock = threading.Lock()
        self._pool: ConnectionPool | None = None
        self._store: JobStore | None = None
        self._async_stores: dict[asyncio.AbstractEventLoop, AsyncJobStore] = {}
        # Per loop, the opening of its pool while it is under way: callers that come
        # meanwhile wait for that one rather than each opening a pool (all but one of which
        # nothing would ever close).
        self._opening: dict[asyncio.AbstractEventLoop, asyncio.Task[AsyncJobStore]] = {}
        self._closers: set[asyncio.Task[None]] = set()

    def _kwargs(self) -> dict[str, object]:
        # Each of the app's own statements is its own transaction: one round trip.
        return {"autocommit": True, **session_kwargs(self.settings.pooler)}

    def store(self) -> JobStore:
        """The synchronous store (thread-safe)."""
        with self._lock:
            if self._store is None:
                s = self.settings
                probe(s.dsn)
                self._pool = ConnectionPool(
                    with_liveness(s.dsn), min_size=1, max_size=s.pool_size, open=True,
                    kwargs=self._kwargs(), name="pgqueue", configure=_read_jsonb,
                    timeout=s.pool_timeout,
                )  # fmt: skip
                self._store = JobStore(self._pool)
            return self._store

    async def async_store(self) -> AsyncJobStore:
        """The asyncio store of the running event loop."""
        loop = asyncio.get_running_loop()
        store = self._async_stores.get(loop)
        if store is not None:
            return store
        opening = self._opening.get(loop)
        if opening is None:
            opening = self._opening[loop] = loop.create_task(self._open(loop))
            opening.add_done_callback(lambda _: self._opening.pop(loop, None))
        # Shielded: a caller cancelled while it waits does not cancel the others' opening.
        return await asyncio.shield(opening)

    async def _open(self, loop: asyncio.AbstractEventLoop) -> AsyncJobStore:
        store = self._async_stores.get(loop)
        if store is None:
            s = self.settings
            await asyncio.to_thread(probe, s.dsn)
            made: weakref.WeakSet[psycopg.AsyncConnection[Any]] = weakref.WeakSet()

            async def keep(conn: psycopg.AsyncConnection[Any]) -> None:
                made.add(conn)
                _read_jsonb(conn)

            pool = AsyncConnectionPool(
                with_liveness(s.dsn), min_size=1, max_size=s.pool_size, open=False,
                kwargs=self._kwargs(), name="pgqueue-async", configure=keep,
                timeout=s.pool_timeout,
            )  # fmt: skip
            await pool.open()
            store = self._async_stores[loop] = AsyncJobStore(pool)  # open: anyone may use it
            # asyncio.run() ends by cancelling every task; a psycopg_pool task that is still
            # connecting then takes the cancellation for a failed connection and waits
            # forever, and asyncio.run() never returns: close the pool at that moment.
            closer = loop.create_task(self._close_at_loop_end(loop, store, pool, made))
            self._closers.add(closer)
            closer.add_done_callback(self._closers.discard)
        return store

    async def _close_at_loop_end(
        self,
        loop: asyncio.AbstractEventLoop,
        store: AsyncJobStore,
        pool: AsyncConnectionPool,
        made: weakref.WeakSet[psycopg.AsyncConnection[Any]],
    ) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            if self._async_stores.get(loop) is store:
                del self._async_stores[loop]
            try:
                await pool.close(timeout=5)
            except BaseException:
                # Cancelled beside the pool's own tasks, close() stops at waiting for them,
                # its idle connections already taken out: closed below, or only by the
                # garbage collector (two server connections left per asyncio.run()).
                pass
            for conn in list(made):
                if not conn.closed:
                    await conn.close()

    def forget(self) -> None:
        """Drop the pools without closing them (see _forget_after_fork)."""
        _INHERITED.append((self._pool, dict(self._async_stores)))
        self._lock = threading.Lock()  # perhaps held by a parent's thread at the fork
        self._pool = None
        self._store = None
        self._async_stores.clear()
        self._opening.clear()
        self._closers = set()

    def close(self) -> None:
        """Close every pool (the next use opens new ones)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
            self._store = None
        for loop, store in list(self._async_stores.items()):
            if not loop.is_closed() and not store.pool.closed:
                try:
                    if loop.is_running():
                        loop.create_task(store.pool.close())
                    else:
                        loop.run_until_complete(store.pool.close())
                except RuntimeError:
                    pass
        self._async_stores.clear()

    async def aclose(self) -> None:
        """Close the running loop's pool, then the others."""
        store = self._async_stores.pop(asyncio.get_running_loop(), None)
        if store is not None:
            await store.pool.close()
        self.close()


def _read_jsonb(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
    # A job's values are whatever its producer inserted: one that Python cannot read back
    # (nested too deep) comes as text saying so instead of failing the query that read it.
    set_json_loads(tolerant_loads, conn)
    # A connection the server closed while it sat in the pool is not handed out (idle.py).
    idle.watch(conn)
