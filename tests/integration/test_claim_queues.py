"""Where a worker of every queue looks: the queues it heard of, and every queue once a second,
after a sleep no notification cut short, and after its notifications were lost. A job in a
queue the worker never heard of is never left behind."""

from __future__ import annotations

import psycopg

from tests.waiting import wait_for


def insert_unannounced(dsn: str, queue: str, priority: int = 0) -> int:
    """A job inserted with its wake-up notification lost (triggers off for this session)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        row = conn.execute(
            "INSERT INTO pgqueue.jobs (task, args, queue, priority, max_attempts) "
            "VALUES ('echo', '[\"unannounced\"]', %s, %s, 3) RETURNING id",
            (queue, priority),
        ).fetchone()
        assert row is not None
        return int(row[0])


def test_a_job_whose_notification_was_lost_is_found_while_the_worker_is_busy(app, worker, dsn, db):
    app.enqueue_many([{"task": "quick", "args": [i], "queue": "bulk"} for i in range(20_000)])
    with worker(concurrency=5, poll_interval=60.0):
        wait_for(lambda: app.get_job(1).state == "succeeded", timeout=30)
        # Urgent, in a queue this worker has not heard of, and nobody told it.
        job_id = insert_unannounced(dsn, "elsewhere", priority=10)
        wait_for(lambda: app.get_job(job_id).state == "succeeded", timeout=30)
        left = db.execute(
            "SELECT count(*) FROM pgqueue.jobs WHERE queue = 'bulk' AND state = 'queued'"
        ).fetchone()[0]
    assert left > 0, "the urgent job waited for the whole backlog of another queue"


def test_a_job_whose_notification_was_lost_is_found_by_an_idle_worker(app, worker, dsn):
    with worker(poll_interval=1.0):
        first = app.enqueue("echo", ["heard"], queue="known")
        wait_for(lambda: app.get_job(first).state == "succeeded")
        job_id = insert_unannounced(dsn, "unheard-of")
        wait_for(lambda: app.get_job(job_id).state == "succeeded", timeout=15)


def test_notifications_naming_many_queues_cost_nothing_but_a_look(app, worker, db):
    with worker(poll_interval=60.0):
        # Anyone may NOTIFY: names of queues with no jobs must not stop real work.
        for i in range(300):
            db.execute("SELECT pg_notify('pgqueue_jobs', %s)", (f"forged-{i}",))
        ids = [app.enqueue("echo", [i], queue=f"real-{i % 3}") for i in range(30)]
        wait_for(lambda: all(app.get_job(i).state == "succeeded" for i in ids), timeout=30)
