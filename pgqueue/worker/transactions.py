"""`ctx.transaction()`: a connection whose transaction commits together with the job's outcome.

A handler's writes through it and the job's `succeeded` are one transaction: either both are
in the database or neither is. The handler's `with` block does not commit; the worker does,
after the handler returned, by writing the success on that connection (guarded like every
outcome: still running, this attempt, this worker) and committing. Anything else (an error,
a retry, a cancel, a shutdown, the job rescued meanwhile, a success whose guard fails) rolls
the transaction back, and the outcome goes the usual way. If the commit itself fails, the
attempt is written as failed through the completer, whose guard refuses it if the commit
did land after all; so every job's writes exist exactly once when it ends `succeeded`.

The parts:
- HandlerConnections: the pools, opened on first use (sync for handlers in threads, async
  for those on the loop), each of at most `concurrency` connections.
- Pending: the open transaction of one attempt, held by its JobContext.
- TransactionScope: what `ctx.transaction()` returns, for `with` and `async with`.
- commit_with_outcome: the worker's side, called by the runner.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from pgqueue.dsn import session_kwargs
from pgqueue.errors import ConfigurationError, PgQueueError
from pgqueue.sql import QUERIES
from pgqueue.store import idle, plans
from pgqueue.store.aio import AsyncJobStore
from pgqueue.store.params import Applied, OutcomeRow, finish_params
from pgqueue.store.sync import drive_on

log = logging.getLogger("pgqueue.worker")


class HandlerConnections:
    """Connections for handlers' transactions, opened on first use."""

    def __init__(self, dsn: str, size: int, pooled: bool = False) -> None:
        self.dsn = dsn
        self.size = size
        self.kwargs = session_kwargs(pooled)  # nothing prepared through a transaction pooler
        self._lock = threading.Lock()
        self._async_lock = asyncio.Lock()  # two async handlers' first uses open one pool
        self._sync: ConnectionPool | None = None
        self._async: AsyncConnectionPool | None = None

    def sync_pool(self) -> ConnectionPool:
        with self._lock:
            if self._sync is None:
                self._sync = ConnectionPool(
                    self.dsn,
                    min_size=0,
                    max_size=self.size,
                    open=True,
                    name="pgqueue-tx",
                    kwargs=self.kwargs,
                    configure=idle.watch,
                )
            return self._sync

    async def async_pool(self) -> AsyncConnectionPool:
        async with self._async_lock:
            if self._async is None:
                pool = AsyncConnectionPool(
                    self.dsn,
                    min_size=0,
                    max_size=self.size,
                    open=False,
                    name="pgqueue-tx-async",
                    kwargs=self.kwargs,
                    configure=idle.watch_async,
                )
                await pool.open()
                self._async = pool
            return self._async

    async def close(self) -> None:
        if self._async is not None:
            await self._async.close()
        if self._sync is not None:
            await asyncio.to_thread(self._sync.close)


@dataclass(slots=True)
class Pending:
    """An attempt's open transaction: its connection and the pool it goes back to."""

    conn: Any
    pool: Any
    is_async: bool


class TransactionScope:
    """`with ctx.transaction() as conn` (sync handlers) or `async with` (async ones). The
    same connection and transaction for every use in one attempt; leaving the block with an
    exception rolls it back (a later use starts a new one)."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    def _source(self) -> HandlerConnections:
        source = self.ctx._connections
        if source is None:
            raise ConfigurationError("ctx.transaction() is only available in a worker")
        if self.ctx._ended:
            raise PgQueueError(
                "this attempt is over (it timed out or was cancelled): its handler can open "
                "no transaction any more"
            )
        return source  # type: ignore[no-any-return]

    def __enter__(self) -> psycopg.Connection[Any]:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise ConfigurationError("in an async handler, use `async with ctx.transaction()`")
        pending = self.ctx._tx
        if pending is None:
            pool = self._source().sync_pool()
            pending = self.ctx._tx = Pending(idle.getconn(pool), pool, is_async=False)
            if self.ctx._ended:  # ended while this thread waited for the connection
                discard_sync(self.ctx)
                self._source()  # raises
        if pending.is_async:
            raise ConfigurationError("this attempt's transaction is an async one")
        return pending.conn  # type: ignore[no-any-return]

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            discard_sync(self.ctx)

    async def __aenter__(self) -> psycopg.AsyncConnection[Any]:
        pending = self.ctx._tx
        if pending is None:
            pool = await self._source().async_pool()
            pending = self.ctx._tx = Pending(await idle.getconn_async(pool), pool, is_async=True)
        if not pending.is_async:
            raise ConfigurationError("this attempt's transaction is a sync one")
        return pending.conn  # type: ignore[no-any-return]

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            await discard(self.ctx)


def discard_sync(ctx: Any) -> None:
    """Roll back and give back a sync attempt's transaction (in the handler's thread)."""
    pending, ctx._tx = ctx._tx, None
    if pending is not None:
        _rollback_sync(pending)


def _rollback_sync(pending: Pending) -> None:
    try:
        pending.conn.rollback()
    except psycopg.Error:
        pass  # a broken connection: the pool replaces it
    pending.pool.putconn(pending.conn)


_LATER: set[asyncio.Task[None]] = set()


async def _rollback_after(thread: concurrent.futures.Future[Any], pending: Pending) -> None:
    await asyncio.wait({asyncio.wrap_future(thread)})
    await asyncio.to_thread(_rollback_sync, pending)


async def discard(ctx: Any, thread: concurrent.futures.Future[Any] | None = None) -> None:
    """Roll back and give back the attempt's transaction, whichever kind it is. `thread`:
    the sync handler's thread, still running after its attempt ended (timed out or
    cancelled). Its connection is then given back only once that thread returns: given
    back now, the statements that thread still sends would run in another job's
    transaction and commit with that job's success. Meanwhile its running statement is
    cancelled, and what it writes stays in its own transaction, rolled back at the end
    (the outcome is recorded meanwhile, without waiting for that thread)."""
    pending, ctx._tx = ctx._tx, None
    if pending is None:
        return
    if not pending.is_async:
        if thread is None:
            await asyncio.to_thread(_rollback_sync, pending)
            return
        with contextlib.suppress(Exception):
            getattr(pending.conn, "cancel_safe", pending.conn.cancel)()
        later = asyncio.get_running_loop().create_task(_rollback_after(thread, pending))
        _LATER.add(later)  # (the loop keeps only weak references to its tasks)
        later.add_done_callback(_LATER.discard)
        return
    try:
        await pending.conn.rollback()
    except psycopg.Error:
        pass
    await pending.pool.putconn(pending.conn)


def _finish_sync(pending: Pending, worker_id: UUID, row: OutcomeRow) -> Applied:
    conn = pending.conn
    try:
        with conn.cursor() as cur:
            cur.execute(QUERIES["job_finish_many"], finish_params(worker_id, [row]))
            applied = Applied.of(cur.fetchall())
            if applied.get(row.id) == "succeeded" and row.followups:
                drive_on(plans.job_insert_many(list(row.followups)), cur)
        if applied.get(row.id) == "succeeded":
            conn.commit()
        else:
            conn.rollback()
        return applied
    finally:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            try:
                conn.rollback()
            except psycopg.Error:
                pass
        pending.pool.putconn(conn)


async def _finish_async(pending: Pending, worker_id: UUID, row: OutcomeRow) -> Applied:
    conn = pending.conn
    try:
        async with conn.cursor() as cur:
            await cur.execute(QUERIES["job_finish_many"], finish_params(worker_id, [row]))
            applied = Applied.of(await cur.fetchall())
            if applied.get(row.id) == "succeeded" and row.followups:
                await AsyncJobStore._drive_on(plans.job_insert_many(list(row.followups)), cur)
        if applied.get(row.id) == "succeeded":
            await conn.commit()
        else:
            await conn.rollback()
        return applied
    finally:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            try:
                await conn.rollback()
            except psycopg.Error:
                pass
        await pending.pool.putconn(conn)


async def commit_with_outcome(ctx: Any, worker_id: UUID, row: OutcomeRow) -> Applied:
    """Write a success on the attempt's own transaction and commit both. Raises what the
    database raised if that failed (the caller records the attempt as failed)."""
    pending, ctx._tx = ctx._tx, None
    assert pending is not None
    if pending.is_async:
        return await _finish_async(pending, worker_id, row)
    return await asyncio.to_thread(_finish_sync, pending, worker_id, row)
