"""A store on a small pool of its own, for tests that call the store's methods directly."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from psycopg_pool import AsyncConnectionPool

from pgqueue.store import AsyncJobStore

T = TypeVar("T")


async def with_store(dsn: str, body: Callable[[AsyncJobStore], Awaitable[T]]) -> T:
    """Run `body` with an AsyncJobStore on `dsn`, closing its pool afterwards."""
    pool = AsyncConnectionPool(dsn, min_size=1, max_size=2, open=False, kwargs={"autocommit": True})
    await pool.open()
    try:
        return await body(AsyncJobStore(pool))
    finally:
        await pool.close()
