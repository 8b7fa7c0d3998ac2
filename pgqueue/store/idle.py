"""Seeing, without a round trip, that the server closed an idle connection (it restarted,
failed over, or the backend was terminated).

A pooled connection that sat idle through such an event fails the next statement given to
it, although the database is back: a producer's call, a claim. Before each use its socket
is read, without waiting: what the server said last (a FATAL message, which libpq hands to
notice handlers when no statement runs) or the end of the stream means it is gone. Costs a
non-blocking read or two; a round trip (psycopg_pool's own check) would cost a millisecond.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

_CLOSING = "_pgqueue_closing"  # set on a connection whose server said it is closing it


def watch(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
    """Note, on `conn`, a FATAL message from its server (call once, when it is made)."""
    ref = weakref.ref(conn)

    def note(diag: Any) -> None:
        target = ref()
        if target is not None and diag.severity_nonlocalized in ("FATAL", "PANIC"):
            setattr(target, _CLOSING, True)

    conn.add_notice_handler(note)


def closed_by_server(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """Whether the server closed this idle connection (see the module's docstring)."""
    if conn.closed or conn.broken:
        return True
    try:
        conn.pgconn.consume_input()
        conn.pgconn.is_busy()  # parses what came: a FATAL message goes to `watch`'s handler
        if getattr(conn, _CLOSING, False):
            return True
        conn.pgconn.consume_input()  # the end of the stream, if it came after the message
    except psycopg.OperationalError:
        return True
    return conn.closed


def live(
    pool: ConnectionPool, timeout: float | None = None
) -> AbstractContextManager[psycopg.Connection[Any]]:
    """`pool.connection()`, never one the server closed while it sat in the pool: such a
    one is closed (the pool replaces it) and the next is taken. (psycopg_pool's own `check`
    sleeps a second, then two, ... between connections that fail it.) `timeout`: how long
    to wait for a connection (None: the pool's own)."""
    return _live(pool, timeout)


@contextmanager
def _live(pool: ConnectionPool, timeout: float | None) -> Iterator[psycopg.Connection[Any]]:
    for _ in range(_tries(pool)):
        with pool.connection(timeout) as conn:
            if not closed_by_server(conn):
                yield conn
                return
            conn.close()
    with pool.connection(timeout) as conn:
        yield conn


@asynccontextmanager
async def live_async(
    pool: AsyncConnectionPool, timeout: float | None = None
) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """`live` for an asyncio pool."""
    for _ in range(_tries(pool)):
        async with pool.connection(timeout) as conn:
            if not closed_by_server(conn):
                yield conn
                return
            await conn.close()
    async with pool.connection(timeout) as conn:
        yield conn


def getconn(pool: ConnectionPool) -> psycopg.Connection[Any]:
    """`pool.getconn()`, as `live` chooses (give it back with `pool.putconn`)."""
    for _ in range(_tries(pool)):
        conn = pool.getconn()
        if not closed_by_server(conn):
            return conn
        conn.close()
        pool.putconn(conn)
    return pool.getconn()


async def getconn_async(pool: AsyncConnectionPool) -> psycopg.AsyncConnection[Any]:
    """`getconn` for an asyncio pool."""
    for _ in range(_tries(pool)):
        conn = await pool.getconn()
        if not closed_by_server(conn):
            return conn
        await conn.close()
        await pool.putconn(conn)
    return await pool.getconn()


def _tries(pool: ConnectionPool | AsyncConnectionPool) -> int:
    return pool.max_size + 1  # every pooled connection may have gone with the server


async def watch_async(conn: psycopg.AsyncConnection[Any]) -> None:
    """`watch` as an asyncio pool's `configure`."""
    watch(conn)
