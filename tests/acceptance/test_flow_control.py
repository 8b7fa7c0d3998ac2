"""Pause/resume and cluster-wide limits, across several real worker processes."""

from __future__ import annotations

import signal
import time

from tests import jobs


def count(db, sql: str, *params) -> int:
    return db.execute(sql, params).fetchone()[0]


def stop_all(workers) -> None:
    for w in workers:
        w.signal(signal.SIGTERM)
    for w in workers:
        assert w.wait(30) == 0, w.output()


def test_pause_stops_claiming_within_a_second_and_resume_restarts(app, db, spawn_worker):
    workers = [spawn_worker("--concurrency", "4", "--poll-interval", "30") for _ in range(2)]
    for w in workers:
        w.wait_started()
    app.pause_queue("default")
    time.sleep(0.3)
    ids = app.enqueue_many([{"task": "add", "args": [i, 1]} for i in range(20)])
    time.sleep(1.5)
    assert count(db, "SELECT count(*) FROM pgqueue.jobs WHERE state <> 'queued'") == 0
    t0 = time.monotonic()
    app.resume_queue("default")
    assert app.wait(ids[-1], timeout=10) == 20
    assert time.monotonic() - t0 < 5, "resume wakes the workers (NOTIFY), not the 30 s poll"
    # Pausing while jobs run: running ones finish, nothing new starts within about a second.
    slow = app.enqueue_many([{"task": "sleep", "args": [0.5]} for _ in range(40)])
    time.sleep(0.3)
    app.pause_queue("default")
    time.sleep(1.0)
    started = count(
        db, "SELECT count(*) FROM pgqueue.jobs WHERE id = ANY(%s) AND state <> 'queued'", slow
    )
    time.sleep(1.5)
    assert (
        count(
            db, "SELECT count(*) FROM pgqueue.jobs WHERE id = ANY(%s) AND state <> 'queued'", slow
        )
        == started
    )
    assert count(db, "SELECT count(*) FROM pgqueue.jobs WHERE state = 'running'") == 0
    stop_all(workers)


def test_concurrency_limit_holds_across_three_workers(app, db, spawn_worker):
    app.set_queue_limits("limited", concurrency=2)
    workers = [spawn_worker("--concurrency", "10") for _ in range(3)]
    # All three compete for the jobs (and handle the SIGTERM at the end: a worker still
    # starting up when the jobs were done was killed by it, in a loaded CI run).
    for w in workers:
        w.wait_started()
    ids = app.enqueue_many([{"task": "nap", "args": [0.1]} for _ in range(40)])
    peak, samples = 0, 0
    deadline = time.monotonic() + 60
    while count(db, "SELECT count(*) FROM pgqueue.jobs WHERE state = 'succeeded'") < len(ids):
        assert time.monotonic() < deadline
        running = count(db, "SELECT count(*) FROM pgqueue.jobs WHERE state = 'running'")
        peak, samples = max(peak, running), samples + 1
        time.sleep(0.005)
    stop_all(workers)
    assert samples > 50
    assert peak == 2, f"peak running {peak}"


def test_rate_limit_holds_within_ten_percent(app, db, spawn_worker):
    app.set_queue_limits("rated", rate=20, per=1.0)
    app.enqueue_many([{"task": "tick", "args": [i]} for i in range(400)])
    workers = [spawn_worker("--concurrency", "10") for _ in range(3)]
    for w in workers:
        w.wait_started()
    time.sleep(6.5)
    stop_all(workers)
    first = db.execute("SELECT min(started_at) FROM pgqueue.jobs").fetchone()[0]
    in_five = count(
        db,
        "SELECT count(*) FROM pgqueue.jobs WHERE started_at >= %s "
        "AND started_at < %s + interval '5 seconds'",
        first,
        first,
    )
    assert 90 <= in_five <= 110, in_five
    # No one-second window holds more than 20 starts.
    worst = count(
        db,
        "SELECT max(n) FROM (SELECT (SELECT count(*) FROM pgqueue.jobs b "
        "WHERE b.started_at >= a.started_at AND b.started_at < a.started_at + interval '1 s') AS n "
        "FROM pgqueue.jobs a WHERE a.started_at IS NOT NULL) AS w",
    )
    assert worst <= 20, worst
    assert jobs.app.queues()[0]["rate_limit"] == 20
