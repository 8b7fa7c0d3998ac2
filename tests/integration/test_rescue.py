"""Rescue of jobs held by lost workers, and guarded outcomes: a late worker never overwrites."""

from __future__ import annotations

import asyncio
import uuid

from pgqueue.maintenance import Rescuer
from pgqueue.store import AsyncJobStore, OutcomeRow
from tests import jobs
from tests.stores import with_store
from tests.waiting import wait_for


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


def test_a_job_with_a_thousand_attempts_is_rescued_and_does_not_stop_the_rescue(dsn, app, db):
    # The backoff 2 ** (attempts - 1) overflowed float8 before it was capped: the whole
    # rescue statement failed, at every round of every worker, so no job was rescued.
    many = jobs.add.options(max_attempts=5000).enqueue(1, 2)
    plain = jobs.add.enqueue(3, 4)
    lost = uuid.uuid4()

    async def scenario(store: AsyncJobStore) -> None:
        await store.worker_register(lost, "host", 1, None, 2, 2.0)
        assert {j.id for j in await store.job_claim(lost, None, 10)} == {many, plain}
        db.execute("UPDATE pgqueue.jobs SET attempts = 1100 WHERE id = %s", (many,))
        db.execute("DELETE FROM pgqueue.workers WHERE id = %s", (lost,))
        assert await Rescuer(store).run_once() == 2

    asyncio.run(with_store(dsn, scenario))
    row = db.execute(
        "SELECT state, run_at - now() <= interval '1 hour' FROM pgqueue.jobs WHERE id = %s",
        (many,),
    ).fetchone()
    assert row == ("queued", True)
    assert app.get_job(plain).state == "queued"


def test_a_worker_declared_lost_keeps_the_jobs_the_table_still_gives_it(dsn, app, db, worker):
    # Its row was deleted (another node's prune, after a pause past the lease) while no
    # rescue took its jobs: the table still said they ran here. It gave them all up at its
    # next beat, so they stayed `running` for as long as it lived, and nothing rescued them.
    with worker(concurrency=4, heartbeat_interval=0.3, lease=3.0) as w:
        kept = jobs.async_sleep.enqueue(2.0)
        rescued = jobs.async_sleep.enqueue(2.0)
        wait_for(lambda: app.get_job(kept).state == app.get_job(rescued).state == "running")
        with db.transaction():
            db.execute("DELETE FROM pgqueue.workers WHERE id = %s", (w.id,))
            # As a rescue would have: back to the queue, attempt kept, later.
            db.execute(
                "UPDATE pgqueue.jobs SET state = 'queued', worker_id = NULL,"
                " run_at = now() + interval '1 hour' WHERE id = %s",
                (rescued,),
            )
        assert app.wait(kept, timeout=15) == "slept"
        registered = "SELECT count(*) FROM pgqueue.workers WHERE id = %s"
        wait_for(lambda: db.execute(registered, (w.id,)).fetchone() == (1,))
    job = app.get_job(rescued)
    assert job.state == "queued" and job.attempts == 1, "the rescued copy wrote nothing"


def test_an_outcome_sent_again_never_lands_on_a_later_claim_of_the_same_attempt(dsn, app, db):
    # A Retry (or a release) gives the attempt back, so the job's next claim has the same
    # attempt number, for the same worker. The completer sends a batch again when its answer
    # was lost: the first write had landed, and the second then wrote over the new claim (it
    # went back to the queue and another worker ran attempt 1 beside this one's).
    from pgqueue.job import Snoozed, Succeeded
    from pgqueue.worker.completer import outcome_row

    job_id = jobs.add.enqueue(1, 2)
    me = uuid.uuid4()

    async def scenario(store: AsyncJobStore) -> None:
        await store.worker_register(me, "host", 1, None, 1, 30.0)
        (first,) = await store.job_claim(me, None, 10)
        snoozed = outcome_row(first, Snoozed(0.0))
        assert await store.job_finish_many(me, [snoozed]) == {job_id: "queued"}
        (again,) = await store.job_claim(me, None, 10)
        assert (again.id, again.attempts) == (first.id, first.attempts) == (job_id, 1)
        assert await store.job_finish_many(me, [snoozed]) == {}, "the answer-lost resend"
        done = outcome_row(again, Succeeded("3"))
        assert await store.job_finish_many(me, [done]) == {job_id: "succeeded"}

    asyncio.run(with_store(dsn, scenario))
    assert app.get_job(job_id).state == "succeeded"
