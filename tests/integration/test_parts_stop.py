"""A stopping worker ends all of its parts, even one whose cancellation was lost.

The cause of a worker that hung after SIGTERM (its maintenance part "cancelling" yet asleep):
on Python 3.11 `asyncio.wait_for` returns the result instead of raising when its inner wait
ends in the same loop turn as the cancel, and psycopg_pool waits for a free connection that
way. A part cancelled just as the pool handed it a connection ran on to its next sleep, and
the worker's single cancel plus `gather` waited for it for ever.
"""

from __future__ import annotations

import asyncio

import psycopg_pool
import pytest

from pgqueue.maintenance import every
from pgqueue.worker.events import cancel_and_wait

Pool = psycopg_pool.AsyncConnectionPool


async def _a_part_handed_a_connection_as_it_is_cancelled(
    dsn: str,
) -> tuple[asyncio.Task[None], Pool]:
    pool = psycopg_pool.AsyncConnectionPool(dsn, min_size=1, max_size=1, open=False)
    await pool.open(wait=True)
    held = await pool.getconn()

    async def once() -> None:
        async with pool.connection() as conn:
            await conn.execute("SELECT 1")

    part = asyncio.create_task(every(0.01, "maintenance", once))
    await asyncio.sleep(0.2)  # the part now waits for the pool's only connection
    await pool.putconn(held)  # handed over to the part ...
    return part, pool  # ... and cancelled by the caller in the same loop turn


def test_a_single_cancel_can_be_lost_while_a_part_waits_for_a_connection(dsn: str) -> None:
    # The premise, so that the test below keeps testing something on newer Pythons/pools.
    async def main() -> bool:
        part, pool = await _a_part_handed_a_connection_as_it_is_cancelled(dsn)
        part.cancel()
        done, _ = await asyncio.wait([part], timeout=1.0)
        part.cancel()
        await asyncio.wait([part], timeout=1.0)
        await pool.close()
        return not done

    if not asyncio.run(main()):
        pytest.skip("this Python and psycopg_pool no longer lose the cancellation")


def test_stopping_ends_a_part_whose_cancellation_was_lost(dsn: str) -> None:
    async def main() -> tuple[list[asyncio.Task[object]], bool]:
        part, pool = await _a_part_handed_a_connection_as_it_is_cancelled(dsn)
        left = await cancel_and_wait([part])
        await pool.close()
        return left, part.cancelled()

    left, cancelled = asyncio.run(main())
    assert left == [] and cancelled
