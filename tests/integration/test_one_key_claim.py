"""A claim of a queue with a per-key limit whose walk finds one key with due jobs takes that
key's jobs as a plain claim takes its queue's (migration 0024): in order from the key's
first job, stepping over jobs locked by someone else, within the per-key cap, the rate
limit and the worker's task set. The floors are held fresh here so that every claim after
the first takes that path, however slow the machine."""

from __future__ import annotations

import uuid

import psycopg

from tests import jobs
from tests.per_key_claims import QUEUE, claim, hold_floors, per_key, register


def started(db: psycopg.Connection, worker: uuid.UUID) -> list[int]:
    rows = db.execute(
        "SELECT id FROM pgqueue.jobs WHERE worker_id = %s AND state = 'running' ORDER BY id",
        (worker,),
    ).fetchall()
    return [r[0] for r in rows]


def test_a_job_locked_elsewhere_is_stepped_over_not_left_out_of_the_count(app, db, dsn):
    app.set_queue_limits(QUEUE, per_key=100)
    a = per_key("a", 10)["a"]
    worker = register(db)
    assert claim(db, worker, 2) == a[:2]
    hold_floors(db)
    with psycopg.connect(dsn) as other:
        # Someone else holds the key's next job (an operator's UPDATE, a cancel in flight).
        other.execute("SELECT 1 FROM pgqueue.jobs WHERE id = %s FOR UPDATE", (a[2],))
        assert claim(db, worker, 3) == a[3:6]
    assert claim(db, worker, 3) == [a[2], *a[6:8]]


def test_the_per_key_cap_counts_the_running_jobs_of_the_key(app, db):
    app.set_queue_limits(QUEUE, per_key=5)
    a = per_key("a", 10)["a"]
    worker = register(db)
    assert claim(db, worker, 3) == a[:3]
    hold_floors(db)
    assert claim(db, worker, 10) == a[3:5]
    assert claim(db, worker, 10) == []
    db.execute("UPDATE pgqueue.jobs SET state = 'succeeded' WHERE id = ANY(%s)", (a[:2],))
    assert claim(db, worker, 10) == a[5:7]
    assert started(db, worker) == a[2:7]


def test_the_rate_limit_holds_and_its_starts_are_recorded(app, db):
    app.set_queue_limits(QUEUE, per_key=100, rate=4, per=3600)
    a = per_key("a", 10)["a"]
    worker = register(db)
    assert claim(db, worker, 3) == a[:3]
    hold_floors(db)
    assert claim(db, worker, 3) == a[3:4]
    assert claim(db, worker, 3) == []
    (recorded,) = db.execute(
        "SELECT sum(n)::int FROM pgqueue.queue_starts WHERE queue = %s", (QUEUE,)
    ).fetchone()
    assert recorded == 4


def test_only_due_jobs_of_tasks_the_worker_has_are_taken(app, db):
    app.set_queue_limits(QUEUE, per_key=100)
    a = per_key("a", 2)["a"]
    later = jobs.app.enqueue("echo", [0], queue=QUEUE, concurrency_key="a", delay=3600)
    other = jobs.app.enqueue("add", [1, 2], queue=QUEUE, concurrency_key="a")
    # A task some worker has (a task no worker has is taken by any, to end `dead`).
    db.execute(
        "INSERT INTO pgqueue.tasks (name, queue, priority, max_attempts) "
        "VALUES ('add', 'default', 0, 3) ON CONFLICT DO NOTHING"
    )
    worker = register(db)
    assert claim(db, worker, 1) == a[:1]
    hold_floors(db)
    rows = db.execute(
        "SELECT id FROM pgqueue.claim_limited(%s, %s, 10, %s)", (worker, [QUEUE], ["echo"])
    ).fetchall()
    assert sorted(r[0] for r in rows) == a[1:]
    assert app.get_job(later).state == "queued" and app.get_job(other).state == "queued"


def test_the_cursor_moves_to_the_key_and_the_next_key_is_served_next(app, db):
    app.set_queue_limits(QUEUE, per_key=100)
    ids = per_key("ab", 4)
    worker = register(db)
    assert claim(db, worker, 2) == [ids["a"][0], ids["b"][0]]
    db.execute(
        "UPDATE pgqueue.jobs SET state = 'succeeded' WHERE id = ANY(%s)", (ids["b"],)
    )  # "b" has nothing left: "a" alone has jobs
    hold_floors(db)
    assert claim(db, worker, 2) == ids["a"][1:3]
    (cursor,) = db.execute(
        "SELECT key_cursor FROM pgqueue.queues WHERE name = %s", (QUEUE,)
    ).fetchone()
    assert cursor == "a"
