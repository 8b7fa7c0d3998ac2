"""Jobs handed straight to an idle worker by the insert trigger (no claim round trip), and
what must hold around it: rollback, paused queues, big payloads, lost notifications, and a
worker that leaves while a producer is handing it a job."""

from __future__ import annotations

import threading
import time

import psycopg

from pgqueue.worker import PUSH_SLOTS
from tests import jobs
from tests.conftest import running_worker
from tests.waiting import wait_for


def offered(db, worker) -> int:
    sql = "SELECT count(*) FROM pgqueue.worker_slots WHERE worker_id = %s"
    return db.execute(sql, (worker.id,)).fetchone()[0]


def test_idle_worker_gets_a_plain_sql_job_in_the_producers_transaction(app, worker, db, dsn):
    with worker(concurrency=4) as w:
        wait_for(lambda: offered(db, w) == 4)
        with psycopg.connect(dsn) as producer:
            job_id = producer.execute(
                "INSERT INTO pgqueue.jobs (task, args) VALUES ('add', '[20, 22]') RETURNING id"
            ).fetchone()[0]
            # Handed over inside this transaction: already this worker's first attempt.
            state, attempts, worker_id = producer.execute(
                "SELECT state, attempts, worker_id FROM pgqueue.jobs WHERE id = %s", (job_id,)
            ).fetchone()
            assert (state, attempts, worker_id) == ("running", 1, w.id)
            assert db.execute("SELECT count(*) FROM pgqueue.jobs").fetchone()[0] == 0
        assert app.wait(job_id, timeout=10) == 42
        job = app.get_job(job_id)
        assert job.state == "succeeded" and job.attempts == 1
        # The slot it used is offered again once the worker is idle.
        wait_for(lambda: offered(db, w) == 4)


def test_rolled_back_insert_keeps_the_slot_and_runs_nothing(app, worker, db, dsn):
    with worker(concurrency=2) as w:
        wait_for(lambda: offered(db, w) == 2)
        with psycopg.connect(dsn) as producer:
            producer.execute("INSERT INTO pgqueue.jobs (task, args) VALUES ('note', '[\"x\"]')")
            producer.rollback()
        time.sleep(0.3)
        assert offered(db, w) == 2
        assert db.execute("SELECT count(*) FROM pgqueue.jobs").fetchone()[0] == 0
        assert jobs.calls == []
        # And the slots still work.
        job_id = jobs.note.enqueue("after")
        app.wait(job_id, timeout=10)
    assert [v for _, v in jobs.calls] == ["after"]


def test_offers_are_capped_and_a_burst_is_claimed_too(app, worker, db):
    with worker(concurrency=50) as w:
        wait_for(lambda: offered(db, w) == PUSH_SLOTS)
        ids = [jobs.add.enqueue(i, i) for i in range(40)]
        assert [app.wait(i, timeout=10) for i in ids] == [2 * i for i in range(40)]


def test_paused_queue_is_not_handed_over(app, worker, db):
    app.pause_queue("default")
    with worker(concurrency=2) as w:
        wait_for(lambda: offered(db, w) == 2)
        job_id = jobs.add.enqueue(1, 1)
        time.sleep(0.3)
        assert app.get_job(job_id).state == "queued"
        app.resume_queue("default")
        assert app.wait(job_id, timeout=10) == 2


def test_job_too_big_for_a_notification_is_read_from_the_table(app, worker, db):
    big = {"blob": "x" * 20_000}
    with worker(concurrency=2) as w:
        wait_for(lambda: offered(db, w) == 2)
        job_id = jobs.echo.enqueue(big)
        assert app.wait(job_id, timeout=10) == big
        assert app.get_job(job_id).attempts == 1


def test_job_pushed_while_the_listener_is_away_is_still_run(app, worker, db):
    with worker(concurrency=2, poll_interval=30) as w:
        wait_for(lambda: offered(db, w) == 2)
        # Drop the worker's LISTEN connection; a job handed over before it is back would
        # have its notification lost: the worker finds it in the table when it reconnects.
        db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE query LIKE 'LISTEN %%' AND pid <> pg_backend_pid()"
        )
        job_id = jobs.add.enqueue(2, 2)
        assert app.wait(job_id, timeout=10) == 4
        job = app.get_job(job_id)
        assert job.attempts == 1 and job.errors == []


def test_a_stopping_worker_waits_for_a_producer_holding_its_slot(app, db, dsn):
    producer = psycopg.connect(dsn)
    try:
        with running_worker(dsn, concurrency=1) as a:
            wait_for(lambda: offered(db, a) == 1)
            job_id = producer.execute(
                "INSERT INTO pgqueue.jobs (task, args) VALUES ('add', '[2, 3]') RETURNING id"
            ).fetchone()[0]
            # The producer commits while A stops: A takes the job back to the queue itself.
            threading.Timer(0.5, producer.commit).start()
        job = app.get_job(job_id)
        assert (job.state, job.attempts, job.errors) == ("queued", 0, [])
        with running_worker(dsn, concurrency=1):
            assert app.wait(job_id, timeout=10) == 5
        job = app.get_job(job_id)
        assert (job.state, job.attempts, job.errors) == ("succeeded", 1, [])
    finally:
        producer.close()


def test_repeatable_read_producer_is_not_handed_a_withdrawn_slot(app, db, dsn):
    """Under repeatable read a slot withdrawn after the snapshot would make the insert fail
    with a serialization error: such transactions hand nothing over."""
    lock_class = 1886548833
    holder = psycopg.connect(dsn, autocommit=True)  # plays a live worker's listening session
    try:
        holder.execute("SELECT pg_advisory_lock(%s, 42)", (lock_class,))
        db.execute(
            "INSERT INTO pgqueue.workers (id, host, pid, queues, concurrency, lease) "
            "VALUES ('00000000-0000-0000-0000-0000000000aa', 'h', 1, '{}', 1, 30)"
        )
        db.execute(
            "INSERT INTO pgqueue.worker_slots (worker_id, slot, lock_id) "
            "VALUES ('00000000-0000-0000-0000-0000000000aa', 1, 42)"
        )
        with psycopg.connect(dsn) as producer:
            producer.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            producer.execute("SELECT count(*) FROM pgqueue.worker_slots").fetchone()
            db.execute("DELETE FROM pgqueue.worker_slots")  # withdrawn after the snapshot
            jobs.add.options(conn=producer).enqueue(1, 1)
        assert db.execute("SELECT state FROM pgqueue.jobs").fetchone()[0] == "queued"
    finally:
        holder.close()


def test_worker_leaving_while_a_producer_hands_it_a_job_loses_nothing(app, db, dsn):
    producer = psycopg.connect(dsn)
    try:
        with running_worker(dsn, concurrency=1, lease=1.0, heartbeat_interval=0.2) as a:
            wait_for(lambda: offered(db, a) == 1)
            job_id = producer.execute(
                "INSERT INTO pgqueue.jobs (task, args) VALUES ('add', '[1, 2]') RETURNING id"
            ).fetchone()[0]
            # The producer holds worker A's slot; A stops now (withdrawing what it can).
        assert db.execute("SELECT count(*) FROM pgqueue.workers").fetchone()[0] == 0
        producer.commit()  # hands the job to a worker that is gone
        assert app.get_job(job_id).state == "running"
        with running_worker(dsn, concurrency=1, lease=1.0, heartbeat_interval=0.2):
            assert app.wait(job_id, timeout=15) == 3
        job = app.get_job(job_id)
        assert job.state == "succeeded"
        assert "WorkerLost" in (job.errors[0]["error"] if job.errors else "")
    finally:
        producer.close()
