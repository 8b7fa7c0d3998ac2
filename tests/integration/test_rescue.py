"""Rescue of jobs held by lost workers, and guarded outcomes: a late worker never overwrites."""

from __future__ import annotations

import asyncio
import uuid

from psycopg_pool import AsyncConnectionPool

from pgqueue.maintenance import Rescuer
from pgqueue.store import AsyncJobStore, OutcomeRow
from tests import jobs


async def with_store(dsn, body):
    pool = AsyncConnectionPool(dsn, min_size=1, max_size=2, open=False, kwargs={"autocommit": True})
    await pool.open()
    try:
        return await body(AsyncJobStore(pool))
    finally:
        await pool.close()


def test_stale_worker_outcome_does_not_override_rescue(dsn, app, db):
    job_id = jobs.add.enqueue(1, 2)
    worker_a, worker_b = uuid.uuid4(), uuid.uuid4()

    async def scenario(store: AsyncJobStore) -> None:
        await store.worker_register(worker_a, "host", 1, None, 1, 2.0)
        await store.worker_register(worker_b, "host", 2, None, 1, 2.0)
        (claimed,) = await store.job_claim(worker_a, None, 10)
        assert claimed.id == job_id
        # Worker A goes silent past its lease.
        db.execute(
            "UPDATE pgqueue.workers SET heartbeat_at = now() - interval '1 hour' WHERE id = %s",
            (worker_a,),
        )
        assert await Rescuer(store).run_once() == 1
        assert await Rescuer(store).run_once() == 0, "rescued once"
        assert app.get_job(job_id).state == "queued"
        late = OutcomeRow(job_id, 1, "succeeded", result_json="3")
        assert await store.job_finish_many(worker_a, [late]) == {}
        job = app.get_job(job_id)
        assert job.state == "queued" and job.attempts == 1
        assert job.last_error.startswith("WorkerLost")
        # Worker B takes attempt 2; A's outcome for attempt 1 still cannot land.
        db.execute("UPDATE pgqueue.jobs SET run_at = now() WHERE id = %s", (job_id,))
        (again,) = await store.job_claim(worker_b, None, 10)
        assert again.attempts == 2
        assert await store.job_finish_many(worker_a, [late]) == {}
        done = OutcomeRow(job_id, 2, "succeeded", result_json="3")
        assert await store.job_finish_many(worker_b, [done]) == {job_id: "succeeded"}
        assert await store.job_finish_many(worker_b, [done]) == {}, "succeeded at most once"

    asyncio.run(with_store(dsn, scenario))
    job = app.get_job(job_id)
    assert job.state == "succeeded" and job.result == 3 and job.attempts == 2


def test_rescue_of_last_attempt_is_dead(dsn, app, db):
    job_id = jobs.add.options(max_attempts=1).enqueue(1, 2)
    lost = uuid.uuid4()

    async def scenario(store: AsyncJobStore) -> None:
        await store.worker_register(lost, "host", 1, None, 1, 2.0)
        await store.job_claim(lost, None, 10)
        db.execute("DELETE FROM pgqueue.workers WHERE id = %s", (lost,))  # its row is gone
        assert await Rescuer(store).run_once() == 1

    asyncio.run(with_store(dsn, scenario))
    job = app.get_job(job_id)
    assert job.state == "dead" and job.finished_at is not None
    assert job.errors[-1]["error"].startswith("WorkerLost")


def test_live_worker_jobs_are_not_rescued(dsn, app):
    job_id = jobs.add.enqueue(1, 2)
    alive = uuid.uuid4()

    async def scenario(store: AsyncJobStore) -> None:
        await store.worker_register(alive, "host", 1, None, 1, 30.0)
        await store.job_claim(alive, None, 10)
        assert await Rescuer(store).run_once() == 0

    asyncio.run(with_store(dsn, scenario))
    assert app.get_job(job_id).state == "running"


def test_jobs_claimed_ahead_are_charged_only_when_they_start(dsn, app, db):
    """A worker killed while jobs it claimed ahead wait for a slot: they were never started,
    so they go back without an attempt counted, even with max_attempts=1."""
    ids = [jobs.add.options(max_attempts=1).enqueue(i, 1) for i in range(3)]
    lost = uuid.uuid4()

    async def scenario(store: AsyncJobStore) -> None:
        await store.worker_register(lost, "host", 1, None, 1, 2.0)
        claimed = await store.job_claim(lost, None, 10, start=1)
        assert [(j.id, j.attempts, j.started_at is None) for j in claimed] == [
            (ids[0], 1, False),
            (ids[1], 1, True),
            (ids[2], 1, True),
        ]
        # The second one started: its start is recorded (attempt counted now).
        second = claimed[1]
        assert await store.job_finish_many(
            lost, [OutcomeRow(second.id, second.attempts, "started", charge=1)]
        ) == {second.id: "running"}
        db.execute("DELETE FROM pgqueue.workers WHERE id = %s", (lost,))
        assert await Rescuer(store).run_once() == 3

    asyncio.run(with_store(dsn, scenario))
    started, also_started, never_started = (app.get_job(i) for i in ids)
    assert started.state == "dead" and started.attempts == 1
    assert also_started.state == "dead" and also_started.attempts == 1
    assert never_started.state == "queued" and never_started.attempts == 0
    assert never_started.errors == [] and never_started.last_error is None


def test_an_old_attempts_outcome_cannot_land_on_a_job_claimed_ahead_again(dsn, app, db):
    """Attempt 1 is rescued from a paused worker, which then claims the job ahead again
    (attempt 2, not yet charged): attempt 1's late outcome must not land on it."""
    job_id = jobs.add.enqueue(1, 2)
    w = uuid.uuid4()

    async def scenario(store: AsyncJobStore) -> None:
        await store.worker_register(w, "host", 1, None, 1, 2.0)
        (first,) = await store.job_claim(w, None, 10)
        db.execute("UPDATE pgqueue.workers SET heartbeat_at = now() - interval '1 hour'")
        assert await Rescuer(store).run_once() == 1
        db.execute("UPDATE pgqueue.jobs SET run_at = now()")
        await store.worker_register(w, "host", 1, None, 1, 2.0)
        (again,) = await store.job_claim(w, None, 10, start=0)
        assert (first.attempts, again.attempts) == (1, 2)
        late = OutcomeRow(job_id, 1, "succeeded", result_json="3")
        assert await store.job_finish_many(w, [late]) == {}
        # Attempt 2's outcome, with its start in the same row, lands.
        done = OutcomeRow(job_id, 2, "succeeded", result_json="3", charge=1, ran=0.01)
        assert await store.job_finish_many(w, [done]) == {job_id: "succeeded"}

    asyncio.run(with_store(dsn, scenario))
    job = app.get_job(job_id)
    assert job.state == "succeeded" and job.attempts == 2 and job.started_at is not None
