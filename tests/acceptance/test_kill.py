"""SIGKILL a worker mid-job: another worker re-runs the job after the lease, once."""

from __future__ import annotations

import signal
import time

from tests import jobs

FAST_LEASE = ("--lease", "2", "--heartbeat-interval", "0.5")


def test_sigkill_mid_job_is_rescued_and_succeeds_once(app, db, spawn_worker):
    doomed = spawn_worker("--concurrency", "2", *FAST_LEASE)
    doomed.wait_started()
    job_id = jobs.sleep.enqueue(1.0)
    deadline = time.monotonic() + 15
    while not db.execute("SELECT 1 FROM public.effects WHERE job_id = %s", (job_id,)).fetchone():
        assert time.monotonic() < deadline, doomed.output()
        time.sleep(0.02)
    doomed.signal(signal.SIGKILL)
    doomed.wait(10)
    assert app.get_job(job_id).state == "running"
    rescuer = spawn_worker("--concurrency", "2", *FAST_LEASE)
    rescuer.wait_started()
    assert app.wait(job_id, timeout=30) == "slept"
    job = app.get_job(job_id)
    assert job.state == "succeeded" and job.attempts == 2
    assert job.errors[0]["error"].startswith("WorkerLost")
    effects = db.execute(
        "SELECT attempt, note FROM public.effects WHERE job_id = %s ORDER BY at", (job_id,)
    ).fetchall()
    assert effects == [(1, "start"), (2, "start"), (2, "end")]
    rescuer.signal(signal.SIGTERM)
    assert rescuer.wait(20) == 0
    assert db.execute("SELECT count(*) FROM pgqueue.workers").fetchone()[0] == 0, (
        "the dead worker's row is pruned"
    )
