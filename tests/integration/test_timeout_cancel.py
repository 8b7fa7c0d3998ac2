"""Timeouts of async and sync handlers; cancellation of queued and running jobs."""

from __future__ import annotations

import time

import pytest

import pgqueue
from tests import jobs


def test_async_handler_over_its_timeout_is_cancelled(app, worker):
    job_id = jobs.async_forever.enqueue()
    t0 = time.monotonic()
    with worker(), pytest.raises(pgqueue.JobFailed, match=r"ran over its 0\.3s timeout"):
        app.wait(job_id, timeout=10)
    assert time.monotonic() - t0 < 5


def test_sync_handler_over_its_timeout_fails_the_attempt(app, worker):
    job_id = jobs.sync_slow.enqueue(0.8)
    with worker(concurrency=2), pytest.raises(pgqueue.JobFailed):
        app.wait(job_id, timeout=15)
    job = app.get_job(job_id)
    assert job.attempts == 2
    assert all("ran over its 0.3s timeout" in e["error"] for e in job.errors)


def test_per_job_timeout_overrides_the_task(app, worker):
    job_id = jobs.sync_slow.options(timeout=5).enqueue(0.5)
    with worker():
        assert app.wait(job_id, timeout=15) == "done"


def wait_started(db, job_id, timeout=10):
    deadline = time.monotonic() + timeout
    while not db.execute("SELECT 1 FROM public.effects WHERE job_id = %s", (job_id,)).fetchone():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_cancel_running_async_job(app, worker, db):
    job_id = jobs.async_sleep.enqueue(30)
    with worker():
        deadline = time.monotonic() + 10
        while app.get_job(job_id).state != "running":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert app.cancel(job_id, reason="customer closed the account")
        with pytest.raises(pgqueue.JobCancelled, match="customer closed the account") as e:
            app.wait(job_id, timeout=5)
        assert e.value.reason == "Cancelled: customer closed the account"
    job = app.get_job(job_id)
    assert job.state == "cancelled" and job.finished_at is not None
    # The reason was kept for a queued job only.
    assert job.last_error == "Cancelled: customer closed the account"


def test_cancel_running_sync_job_sets_the_flag(app, worker, db):
    job_id = jobs.cooperative.enqueue(30)
    with worker():
        wait_started(db, job_id)
        assert app.cancel(job_id)
        with pytest.raises(pgqueue.JobCancelled):
            app.wait(job_id, timeout=5)
    assert app.get_job(job_id).state == "cancelled"


def test_cancel_of_finished_job_is_refused(app, worker):
    job_id = jobs.add.enqueue(1, 1)
    with worker():
        app.wait(job_id, timeout=10)
    assert not app.cancel(job_id)
    assert app.get_job(job_id).state == "succeeded"
