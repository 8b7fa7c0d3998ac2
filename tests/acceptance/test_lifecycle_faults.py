"""Real worker processes and real signals against the lifecycle's promises: attempts count
when work starts, a paused worker never runs two attempts of a job at once, and nothing ends
`cancelled` unless someone asked."""

from __future__ import annotations

import signal
import time

import psycopg
import pytest

from tests import jobs
from tests.waiting import wait_for

FAST = ("--heartbeat-interval", "0.3", "--lease", "2")


def effects(db) -> list[tuple[int, int, int, str]]:
    return db.execute(
        "SELECT job_id, attempt, pid, note FROM public.effects ORDER BY at"
    ).fetchall()


def overlapping_attempts_in_one_process(db) -> list[tuple[int, int]]:
    """(job, pid) pairs where two attempts of the job ran at once in the same process."""
    rows = db.execute(
        """
        WITH spans AS (
            SELECT job_id, attempt, pid,
                   min(at) FILTER (WHERE note = 'start') AS started,
                   coalesce(max(at) FILTER (WHERE note = 'end'), 'infinity') AS ended
            FROM public.effects GROUP BY job_id, attempt, pid
        )
        SELECT DISTINCT a.job_id, a.pid FROM spans AS a JOIN spans AS b
          ON a.job_id = b.job_id AND a.pid = b.pid AND a.attempt < b.attempt
         AND b.started < a.ended
        """
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_a_job_committed_after_its_idle_worker_left_keeps_its_attempt(
    app, db, dsn, spawn_worker, how
):
    """A producer's transaction commits after the only (idle) worker stopped or died: the
    job's one attempt is still there for the next worker."""
    first = spawn_worker(*FAST)
    first.wait_started()
    with psycopg.connect(dsn) as producer:
        job_id = jobs.add.options(conn=producer, max_attempts=1).enqueue(20, 22)
        time.sleep(0.3)
        first.signal(how)
        first.wait(30)
        producer.commit()
    job = app.get_job(job_id)
    assert job.state == "queued" and job.attempts == 0
    second = spawn_worker(*FAST)
    second.wait_started()
    assert app.wait(job_id, timeout=20) == 42
    job = app.get_job(job_id)
    assert job.attempts == 1 and job.errors == []


def test_a_worker_paused_past_its_lease_finishes_its_job_once(app, db, spawn_worker):
    """SIGSTOP longer than the lease, nobody else around: on SIGCONT the attempt goes on and
    finishes; the worker does not rescue its own job and run it again beside itself."""
    worker = spawn_worker("--concurrency", "2", *FAST)
    worker.wait_started()
    job_id = jobs.sleep.enqueue(2.0)
    wait_for(lambda: any(e[3] == "start" for e in effects(db)), timeout=10)
    worker.signal(signal.SIGSTOP)
    time.sleep(4.0)  # twice the lease
    worker.signal(signal.SIGCONT)
    assert app.wait(job_id, timeout=20) == "slept"
    job = app.get_job(job_id)
    assert job.attempts == 1 and job.errors == [], worker.output()
    assert [e[1] for e in effects(db)] == [1, 1]


def test_a_paused_worker_whose_jobs_were_rescued_gives_them_up(app, db, spawn_worker):
    """Worker A is SIGSTOPped past its lease while running jobs; B rescues and runs them.
    When A resumes it learns it was declared lost and abandons its copies: every job
    succeeds once, none is cancelled, and no process runs two attempts of a job at once."""
    a = spawn_worker("--concurrency", "4", *FAST)
    a.wait_started()
    ids = [jobs.sleep.enqueue(3.0) for _ in range(4)]
    wait_for(lambda: len(effects(db)) >= 4, timeout=10)
    a.signal(signal.SIGSTOP)
    b = spawn_worker("--concurrency", "4", *FAST)
    b.wait_started()
    # B waits for a lease of its own health, then rescues A's jobs and runs attempt 2.
    wait_for(lambda: all(app.get_job(i).attempts == 2 for i in ids), timeout=20)
    a.signal(signal.SIGCONT)
    for job_id in ids:
        assert app.wait(job_id, timeout=30) == "slept"
    states = db.execute("SELECT state, count(*) FROM pgqueue.jobs GROUP BY 1").fetchall()
    assert states == [("succeeded", 4)], a.output()
    assert overlapping_attempts_in_one_process(db) == []
    # Rejected outcomes of abandoned copies never overwrite the rescued jobs.
    assert all(app.get_job(i).attempts == 2 for i in ids)
    a.signal(signal.SIGTERM)
    assert a.wait(30) == 0
    assert "declared lost" in a.output()


def test_a_paused_worker_that_claims_its_rescued_jobs_again_runs_them_to_success(
    app, db, spawn_worker
):
    """Worker A is SIGSTOPped past its lease; B (serving another queue) rescues A's jobs but
    does not take them. A wakes, learns it was declared lost, and claims the same jobs
    again: attempt 2 of each runs after its abandoned attempt 1 has ended, never beside it,
    and nothing ends cancelled."""
    a = spawn_worker("--concurrency", "4", *FAST)
    a.wait_started()
    ids = [jobs.sleep.enqueue(3.0) for _ in range(3)]
    wait_for(lambda: len(effects(db)) >= 3, timeout=10)
    a.signal(signal.SIGSTOP)
    b = spawn_worker("--queues", "elsewhere", *FAST)
    b.wait_started()
    wait_for(
        lambda: all(app.get_job(i).errors for i in ids), timeout=20
    )  # rescued: WorkerLost in their history
    a.signal(signal.SIGCONT)
    for job_id in ids:
        assert app.wait(job_id, timeout=30) == "slept"
    states = db.execute("SELECT state, attempts, count(*) FROM pgqueue.jobs GROUP BY 1, 2")
    assert states.fetchall() == [("succeeded", 2, 3)], a.output()
    assert overlapping_attempts_in_one_process(db) == []
    pids = {row[2] for row in effects(db)}
    assert len(pids) == 1, "A ran both attempts"
