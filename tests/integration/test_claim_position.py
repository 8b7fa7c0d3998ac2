"""A claim of one queue starts where the last one stopped (past the dead index entries of
the jobs claimed since the last vacuum). Better priorities are still found at once; a job
that lands behind the position (its transaction committed late, with an earlier run_at) is
found by the worker's next walk from the start, within a second or so."""

from __future__ import annotations

import asyncio
import time
import uuid

from pgqueue.store import AsyncJobStore
from pgqueue.store.aio import position
from tests import jobs
from tests.stores import with_store


def in_order(claimed: list) -> list[int]:
    """Ids in claim order (a claim returns its jobs in no particular order)."""
    return [j.id for j in sorted(claimed, key=position)]


def test_a_claim_from_a_position_takes_what_follows_and_better_priorities(dsn, app, db):
    ids = app.enqueue_many([{"task": "echo", "args": [i], "queue": "q"} for i in range(10)])
    worker = uuid.uuid4()

    async def scenario(store: AsyncJobStore) -> None:
        await store.worker_register(worker, "host", 1, None, 10, 30.0)
        first = await store.job_claim(worker, ["q"], 4)
        assert in_order(first) == ids[:4]
        after = max(position(j) for j in first)
        # A job committed late: its run_at (its transaction's start) is behind the position.
        (late,) = db.execute(
            "INSERT INTO pgqueue.jobs (task, args, queue, run_at) "
            "VALUES ('echo', '[99]', 'q', now() - interval '1 hour') RETURNING id"
        ).fetchone()
        second = await store.job_claim(worker, ["q"], 2, after=after)
        assert in_order(second) == ids[4:6]
        # A better priority is looked for from its start, whatever the position.
        urgent = app.enqueue("echo", [100], queue="q", priority=10)
        third = await store.job_claim(worker, ["q"], 1, after=max(position(j) for j in second))
        assert in_order(third) == [urgent]
        # From the start, the late job comes first (its run_at is the oldest).
        fourth = await store.job_claim(worker, ["q"], 2)
        assert in_order(fourth) == [late, ids[6]]

    asyncio.run(with_store(dsn, scenario))


def test_a_job_behind_the_position_waits_a_second_at_most(app, db, worker):
    # A backlog that takes the worker about ten seconds (one queue, named: every claim is a
    # claim of that queue from the position of the last one).
    app.enqueue_many([{"task": "async_sleep", "args": [0.01], "queue": "q"} for _ in range(2000)])
    with worker(concurrency=2, queues=("q",)):
        deadline = time.monotonic() + 30
        while (
            db.execute("SELECT count(*) FROM pgqueue.jobs WHERE state = 'succeeded'").fetchone()[0]
            < 100
        ):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        (late,) = db.execute(
            "INSERT INTO pgqueue.jobs (task, args, queue, run_at) "
            "VALUES ('echo', '[1]', 'q', now() - interval '1 hour') RETURNING id"
        ).fetchone()
        inserted = time.monotonic()
        while jobs.app.get_job(late).state != "succeeded":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        waited = time.monotonic() - inserted
        left = db.execute("SELECT count(*) FROM pgqueue.jobs WHERE state = 'queued'").fetchone()[0]
    assert left > 500, "the backlog ran out first: the test proves nothing"
    assert waited < 5, f"the job behind the claim position waited {waited:.1f}s"
