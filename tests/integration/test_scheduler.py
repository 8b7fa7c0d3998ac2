"""The scheduler service: one job per fire time, and fire times missed while every node was
down are caught up from the schedule's record, not skipped."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from psycopg_pool import AsyncConnectionPool

import pgqueue
from pgqueue.maintenance import Scheduler
from pgqueue.store import AsyncJobStore

app = pgqueue.App("postgresql://localhost/unused")


@app.periodic(cron="*/5 * * * *", name="every_five_minutes")
def every_five_minutes() -> None: ...


async def run_at(dsn: str, *moments: datetime) -> list[list[int]]:
    """A fresh scheduler (a worker starting) at each moment in turn."""
    pool = AsyncConnectionPool(dsn, min_size=1, max_size=2, open=False, kwargs={"autocommit": True})
    await pool.open()
    try:
        return [
            await Scheduler(AsyncJobStore(pool), app.schedule_specs()).run_once(moment)
            for moment in moments
        ]
    finally:
        await pool.close()


def test_a_fire_time_missed_during_an_outage_is_enqueued_once(dsn, db):
    start = datetime(2026, 3, 1, 12, 1, tzinfo=UTC)
    # Registered at 12:01; every node down from 12:02 to 12:23 (fires at 12:05 ... 12:20).
    fired = asyncio.run(
        run_at(dsn, start, start + timedelta(minutes=22), start + timedelta(minutes=23))
    )
    assert fired[0] == [], "a new schedule starts with its next fire time"
    assert len(fired[1]) == 1, "the latest missed fire time is enqueued"
    assert fired[2] == [], "and only once"
    key = db.execute("SELECT unique_key FROM pgqueue.jobs").fetchone()[0]
    assert key == "every_five_minutes@2026-03-01T12:20:00+00:00"


def test_many_nodes_enqueue_each_fire_time_once(dsn, db):
    start = datetime(2026, 3, 1, 12, 4, 59, tzinfo=UTC)
    later = start + timedelta(seconds=2)

    async def nodes() -> list[list[int]]:
        await run_at(dsn, start)
        return await asyncio.gather(*(run_at(dsn, later) for _ in range(4)))  # type: ignore[return-value]

    results = asyncio.run(nodes())
    assert sum(len(ids) for node in results for ids in node) == 1
    assert db.execute("SELECT count(*) FROM pgqueue.jobs").fetchone()[0] == 1
