"""Two `pgqueue work` processes share 2,000 jobs: each runs once, no attempt runs twice."""

from __future__ import annotations

import signal
import time

from tests import jobs


def test_two_processes_run_every_job_exactly_once(app, db, spawn_worker):
    workers = [spawn_worker("--concurrency", "8") for _ in range(2)]
    for w in workers:
        w.wait_started()
    ids = app.enqueue_many([{"task": "work_item", "args": [i]} for i in range(2000)])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = db.execute("SELECT count(*) FROM pgqueue.jobs WHERE state = 'succeeded'").fetchone()[
            0
        ]
        if done == len(ids):
            break
        time.sleep(0.2)
    for w in workers:
        w.signal(signal.SIGTERM)
    for w in workers:
        assert w.wait(30) == 0, w.output()
    states = dict(db.execute("SELECT state, count(*) FROM pgqueue.jobs GROUP BY state").fetchall())
    assert states == {"succeeded": 2000}
    attempts = db.execute("SELECT max(attempts), min(attempts) FROM pgqueue.jobs").fetchone()
    assert attempts == (1, 1)
    twice = db.execute(
        "SELECT job_id, attempt, count(*) FROM public.effects GROUP BY 1, 2 HAVING count(*) > 1"
    ).fetchall()
    assert twice == []
    assert db.execute("SELECT count(DISTINCT job_id) FROM public.effects").fetchone()[0] == 2000
    pids = db.execute("SELECT count(DISTINCT pid) FROM public.effects").fetchone()[0]
    assert pids == 2, "both processes took part"
    assert jobs.app.wait(ids[-1], timeout=1) == 1999
