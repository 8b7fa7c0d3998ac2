"""The job lifecycle under the faults that used to break it: lost notifications, open producer
transactions, outcomes the database refuses, rescues of cancelled jobs, big integers, and
errors that are not outages."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import psycopg
import pytest

from pgqueue.errors import ConfigurationError, DatabaseUnavailable
from pgqueue.maintenance import DependencySweeper, Rescuer
from pgqueue.store import AsyncJobStore, OutcomeRow, is_unavailable, wrap_error
from pgqueue.worker.completer import BATCH_BYTES, Completer
from tests import jobs
from tests.stores import with_store
from tests.waiting import wait_for


def listener_pids(db) -> list[int]:
    rows = db.execute(
        "SELECT pid FROM pg_stat_activity "
        "WHERE datname = current_database() AND query LIKE 'LISTEN pgqueue_jobs%%'"
    ).fetchall()
    return [r[0] for r in rows]


def test_cancel_sent_while_the_listener_is_down_is_honoured(app, worker, db):
    job_id = jobs.cooperative.enqueue(30)
    with worker(heartbeat_interval=0.3, lease=3.0):
        wait_for(lambda: app.get_job(job_id).state == "running")
        pids = wait_for(lambda: listener_pids(db))
        db.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (pids,))
        assert app.cancel(job_id)  # its notification finds nobody listening
        wait_for(lambda: app.get_job(job_id).state == "cancelled", timeout=10)
    job = app.get_job(job_id)
    assert job.attempts == 1
    assert db.execute("SELECT cancel_requested_at IS NOT NULL FROM pgqueue.jobs").fetchone()[0]


def test_a_rescued_job_keeps_its_cancel(dsn, app, db):
    job_id = jobs.add.enqueue(1, 2)
    lost = uuid.uuid4()

    async def scenario(store: AsyncJobStore) -> None:
        await store.worker_register(lost, "host", 1, None, 1, 2.0)
        await store.job_claim(lost, None, 10)
        assert app.cancel(job_id)  # asked while it runs on a worker that is about to die
        db.execute("DELETE FROM pgqueue.workers WHERE id = %s", (lost,))
        assert await Rescuer(store).run_once() == 1

    asyncio.run(with_store(dsn, scenario))
    job = app.get_job(job_id)
    assert job.state == "cancelled" and job.attempts == 1


def test_a_retried_job_is_not_cancelled_by_an_old_request(dsn, app, worker, db):
    job_id = jobs.cooperative.enqueue(30)
    with worker(heartbeat_interval=0.3, lease=3.0):
        wait_for(lambda: app.get_job(job_id).state == "running")
        app.cancel(job_id)
        wait_for(lambda: app.get_job(job_id).state == "cancelled")
        db.execute("UPDATE pgqueue.jobs SET args = '[0.2]' WHERE id = %s", (job_id,))
        assert app.retry(job_id)
        assert app.wait(job_id, timeout=10) == "ran to the end"


def test_open_producer_transactions_do_not_hold_worker_slots(app, worker, dsn, db):
    """Eight producers insert a job each and keep their transactions open while the worker
    is idle: the worker still runs a backlog at its full concurrency."""
    producers = [psycopg.connect(dsn) for _ in range(8)]
    try:
        with worker(concurrency=10):
            time.sleep(0.3)  # idle, listening
            for conn in producers:  # each inserts a job and keeps its transaction open
                jobs.add.options(conn=conn).enqueue(0, 0)
            ids = [jobs.async_sleep.enqueue(2.0) for _ in range(10)]
            running = "SELECT count(*) FROM pgqueue.jobs WHERE state = 'running'"
            wait_for(lambda: db.execute(running).fetchone()[0] == 10, timeout=5)
            assert [app.wait(i, timeout=20) for i in ids] == ["slept"] * 10
    finally:
        for conn in producers:
            conn.rollback()
            conn.close()


def test_outcomes_too_big_for_one_batch_are_written_in_several(dsn, app, db):
    """90 results of 3 MB each would be one 270 MB document, over jsonb's limit: the
    completer caps a batch in bytes and every outcome lands."""
    size = 3 * 2**20
    ids = app.enqueue_many([{"task": "big_result", "args": [size]} for _ in range(90)])
    worker_id = uuid.uuid4()

    async def scenario(store: AsyncJobStore) -> None:
        await store.worker_register(worker_id, "host", 1, None, 100, 30.0)
        claimed = await store.job_claim(worker_id, None, 100)
        assert len(claimed) == 90
        completer = Completer(store, worker_id, batch=500)
        for job in claimed:
            completer.put(OutcomeRow(job.id, job.attempts, "succeeded", f'"{"x" * size}"'))
        runner = asyncio.create_task(completer.run())
        try:
            assert await completer.flush(timeout=120)
        finally:
            runner.cancel()
        assert completer.written == 90

    asyncio.run(with_store(dsn, scenario))
    states = db.execute(
        "SELECT state, count(*), min(octet_length(result::text)) FROM pgqueue.jobs GROUP BY 1"
    ).fetchall()
    assert states == [("succeeded", 90, size + 2)]
    assert BATCH_BYTES < 255 * 2**20
    assert len(ids) == 90


def test_an_outcome_the_database_refuses_ends_dead_and_the_rest_land(app, worker, db):
    # A rule of the database's own (a constraint added by the application) refuses one
    # result; pgqueue refuses what jsonb cannot hold before it is sent (a NUL character).
    db.execute(
        "ALTER TABLE pgqueue.jobs ADD CONSTRAINT test_refused"
        " CHECK (result IS DISTINCT FROM '\"refused\"'::jsonb) NOT VALID"
    )
    try:
        bad = jobs.echo.enqueue("refused")
        good = [jobs.add.enqueue(i, i) for i in range(20)]
        with worker(concurrency=10):
            assert [app.wait(i, timeout=10) for i in good] == [2 * i for i in range(20)]
            wait_for(lambda: app.get_job(bad).state == "dead")
    finally:
        db.execute("ALTER TABLE pgqueue.jobs DROP CONSTRAINT test_refused")
    error = app.get_job(bad).last_error
    assert error.startswith("StorageError: the outcome could not be stored"), error


def test_integers_beyond_64_bits_reach_the_handler_as_integers(app, worker):
    with worker():
        job_id = jobs.echo.enqueue([2**70, -(2**65), 12345678901234567890])
        assert app.wait(job_id, timeout=10) == [2**70, -(2**65), 12345678901234567890]


def test_sweep_pages_past_the_first_five_thousand_waiting_jobs(dsn, app, db):
    waiting_on = jobs.add.options(delay=3600).enqueue(0, 0)  # never finishes here
    done = jobs.add.enqueue(0, 0)
    db.execute("UPDATE pgqueue.jobs SET state = 'succeeded', finished_at = now() WHERE id = %s",
               (done,))  # fmt: skip

    def waiting(n: int) -> None:
        db.execute(
            "INSERT INTO pgqueue.jobs (task, args, run_at, depends_on) "
            "SELECT 'add', '[1, 1]', '9999-12-31 00:00:00+00', ARRAY[%s::bigint] "
            "FROM generate_series(1, %s)",
            (waiting_on, n),
        )

    # Past the first page, and older than the newest waiting jobs each round also reads.
    waiting(5001)
    (freed,) = db.execute(
        "INSERT INTO pgqueue.jobs (task, args, run_at, depends_on) "
        "VALUES ('add', '[2, 2]', '9999-12-31 00:00:00+00', ARRAY[%s::bigint]) RETURNING id",
        (done,),
    ).fetchone()
    waiting(2000)

    async def scenario(store: AsyncJobStore) -> list[tuple[int, int]]:
        sweeper = DependencySweeper(store)
        return [await sweeper.run_once() for _ in range(2)]

    assert asyncio.run(with_store(dsn, scenario)) == [(0, 0), (1, 0)]
    job = app.get_job(freed)
    assert job.state == "queued" and job.run_at.year < 9999


def test_the_sweep_frees_a_new_child_at_once_however_many_jobs_wait(dsn, app, db):
    waiting_on = jobs.add.options(delay=3600).enqueue(0, 0)
    done = jobs.add.enqueue(0, 0)
    db.execute(
        "INSERT INTO pgqueue.jobs (task, args, run_at, depends_on) "
        "SELECT 'add', '[1, 1]', '9999-12-31 00:00:00+00', ARRAY[%s::bigint] "
        "FROM generate_series(1, 20000)",
        (waiting_on,),
    )
    # Its parent finishes without seeing it (as while the child's enqueue was uncommitted).
    (freed,) = db.execute(
        "INSERT INTO pgqueue.jobs (task, args, run_at, depends_on) "
        "VALUES ('add', '[2, 2]', '9999-12-31 00:00:00+00', ARRAY[%s::bigint]) RETURNING id",
        (done,),
    ).fetchone()
    db.execute("UPDATE pgqueue.jobs SET state = 'succeeded', finished_at = now() WHERE id = %s",
               (done,))  # fmt: skip

    async def scenario(store: AsyncJobStore) -> tuple[int, int]:
        return await DependencySweeper(store).run_once()

    assert asyncio.run(with_store(dsn, scenario)) == (1, 0)
    assert app.get_job(freed).run_at.year < 9999


def test_a_deleted_parent_does_not_count_as_succeeded(dsn, app, db):
    parent = jobs.add.enqueue(0, 0)
    child = jobs.step.options(depends_on=[parent]).enqueue("child")
    db.execute("DELETE FROM pgqueue.jobs WHERE id = %s", (parent,))  # purged by hand

    async def scenario(store: AsyncJobStore) -> tuple[int, int]:
        return await DependencySweeper(store).run_once()

    assert asyncio.run(with_store(dsn, scenario)) == (0, 1)
    assert app.get_job(child).state == "cancelled"


def test_a_finished_parent_is_kept_while_a_child_waits_on_it(dsn, app, db):
    parent = app.enqueue("always_fails", max_attempts=1)
    jobs.step.options(depends_on=[parent]).enqueue("child")
    db.execute("UPDATE pgqueue.jobs SET state = 'dead', finished_at = now() WHERE id = %s",
               (parent,))  # fmt: skip

    async def scenario(store: AsyncJobStore) -> None:
        await store.job_delete_finished([parent])
        retention = {"succeeded": 0.0, "dead": 0.0, "cancelled": 0.0}
        assert await store.job_prune(retention, "dead", 0, 100) == 0

    asyncio.run(with_store(dsn, scenario))
    assert app.get_job(parent) is not None


def test_purge_by_hand_keeps_what_retention_keeps(app, db):
    # `pgqueue jobs purge` deleted a finished parent a child still waited on (the child
    # then ended cancelled, which nobody asked for) and a job within its unique_for.
    parent, other = jobs.add.enqueue(0, 0), jobs.add.enqueue(1, 1)
    child = jobs.step.options(depends_on=[parent, other]).enqueue("child")
    held = jobs.add.options(unique_key="once", unique_for=3600).enqueue(2, 2)
    db.execute(
        "UPDATE pgqueue.jobs SET state = 'succeeded', finished_at = now() - interval '1 day', "
        "unique_until = CASE WHEN unique_key IS NOT NULL THEN now() + interval '1 hour' END "
        "WHERE id = ANY(%s)",
        ([parent, held],),
    )
    assert app.store.job_purge("succeeded", datetime.now(UTC)) == 0
    assert app.get_job(parent) is not None and app.get_job(held) is not None
    assert app.enqueue("add", args=[2, 2], unique_key="once") == held
    assert app.get_job(child).state == "queued"


def test_only_connection_errors_count_as_the_database_being_away(dsn, db):
    # A lock timeout is a real error, reported as itself.
    with psycopg.connect(dsn) as holder, psycopg.connect(dsn) as waiter:
        holder.execute("LOCK TABLE pgqueue.queues IN ACCESS EXCLUSIVE MODE")
        waiter.execute("SET lock_timeout = '50ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable) as caught:
            waiter.execute("SELECT * FROM pgqueue.queues")
        assert not is_unavailable(caught.value)
        assert wrap_error(caught.value) is None
    # A server that is not there is.
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect("postgresql://127.0.0.1:1/x", connect_timeout=2)
    assert is_unavailable(refused.value)
    assert isinstance(wrap_error(refused.value), DatabaseUnavailable)
    # A database that does not exist will not appear by waiting.
    with pytest.raises(psycopg.OperationalError) as missing:
        psycopg.connect(psycopg.conninfo.make_conninfo(dsn, dbname="no_such_db_pgqueue"))
    assert not is_unavailable(missing.value)
    assert isinstance(wrap_error(missing.value), ConfigurationError)
    # A connection cut by the server is.
    with psycopg.connect(dsn, autocommit=True) as victim:
        pid = victim.info.backend_pid
        db.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(psycopg.OperationalError) as cut:
            victim.execute("SELECT 1")
        assert is_unavailable(cut.value)


def test_claims_commit_durably(dsn, app, db):
    """A claim waits for its commit to reach the disk, as the server is set: one that
    skipped it was lost in a server crash while the worker that got it ran the job, and the
    same attempt then ran again elsewhere beside it (plain claims and limited ones alike)."""
    from pgqueue.sql import QUERIES

    app.set_queue_limits("limited", concurrency=5)
    jobs.add.enqueue(1, 1)
    jobs.add.options(queue="limited").enqueue(1, 1)
    worker_id = uuid.uuid4()
    db.execute(
        "INSERT INTO pgqueue.workers (id, host, pid, queues, concurrency, lease, started_at,"
        " heartbeat_at) VALUES (%s, 'host', 1, ARRAY['*'], 10, 30, now(), now())",
        (worker_id,),
    )
    params = {"worker_id": worker_id, "limit": 10, "now": None, "tasks": None}
    claims = (
        ("job_claim", {**params, "queues": None}),
        ("claim_limited", {**params, "queues": ["limited"], "keys": 10, "keyless_scan": 100}),
    )
    with psycopg.connect(dsn) as conn:
        for name, values in claims:
            with conn.transaction():
                taken = conn.execute(QUERIES[name], values).fetchall()
                setting = conn.execute("SHOW synchronous_commit").fetchone()
            assert len(taken) == 1, name
            assert setting == ("on",), name
