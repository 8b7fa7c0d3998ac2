"""How much a worker claims: only for free slots. Concurrency holds for running handlers, the
jobs held in the table stay bounded, and nothing is claimed ahead to wait (its attempt would
be charged before it started)."""

from __future__ import annotations

import threading
import time

from tests import jobs
from tests.conftest import running_worker


def test_quick_jobs_never_run_beyond_concurrency(app, worker, db):
    ids = app.enqueue_many([{"task": "quick", "args": [i]} for i in range(3000)])
    peak_running_rows = 0
    with worker(concurrency=5) as w:
        deadline = time.monotonic() + 60
        while w.processed < len(ids):  # counted in memory: the loop's only query samples
            n = db.execute("SELECT count(*) FROM pgqueue.jobs WHERE state = 'running'")
            peak_running_rows = max(peak_running_rows, n.fetchone()[0])
            assert time.monotonic() < deadline
            time.sleep(0.005)
    states = dict(db.execute("SELECT state, count(*) FROM pgqueue.jobs GROUP BY 1").fetchall())
    assert states == {"succeeded": 3000}
    assert jobs.running["peak"] <= 5, "more handlers ran at once than the concurrency"
    # In the table: the running jobs, and finished ones whose outcomes are being written or
    # gather behind that write: four times the concurrency at most (Claimer.free).
    assert peak_running_rows <= 20


def test_stopping_releases_claimed_jobs_that_did_not_start(app, dsn, db):
    app.enqueue_many([{"task": "quick", "args": [i]} for i in range(20_000)])
    with running_worker(dsn, concurrency=20) as w:
        # Stop it in mid-flow: once it has run some jobs (a fixed half second was not
        # always enough on a CI machine busy with a hundred other worker processes).
        deadline = time.monotonic() + 60
        while w.processed < 100:
            assert time.monotonic() < deadline, "the worker ran nothing"
            threading.Event().wait(0.01)
    states = dict(db.execute("SELECT state, count(*) FROM pgqueue.jobs GROUP BY 1").fetchall())
    assert "running" not in states, states
    assert states["succeeded"] == w.processed
    # Released jobs went back without an attempt counted.
    not_done = db.execute(
        "SELECT count(*) FROM pgqueue.jobs WHERE state = 'queued' AND attempts <> 0"
    ).fetchone()[0]
    assert not_done == 0


def test_no_job_is_claimed_ahead(app, worker, db):
    ids = app.enqueue_many([{"task": "quick", "args": [i]} for i in range(2000)])
    most_waiting = 0
    with worker(concurrency=4) as w:
        deadline = time.monotonic() + 60
        while w.processed < len(ids):  # no query in the loop: it samples the worker only
            most_waiting = max(most_waiting, w.attempts.waiting())
            assert time.monotonic() < deadline
            time.sleep(0.002)
    assert most_waiting == 0
    assert app.get_job(ids[-1]).state == "succeeded"
