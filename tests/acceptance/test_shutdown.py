"""SIGTERM and SIGINT to a real `pgqueue work` process with jobs in flight."""

from __future__ import annotations

import signal
import time
from datetime import timedelta

import pytest

from pgqueue.worker.daemon import SAME_STOP
from tests import jobs
from tests.waiting import wait_for


def wait_running(db, count: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = db.execute("SELECT count(*) FROM public.effects WHERE note = 'start'").fetchone()[0]
        if n >= count:
            return
        time.sleep(0.02)
    raise AssertionError("jobs did not start")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_lets_in_flight_job_finish_and_exits_zero(app, db, spawn_worker, signum):
    worker = spawn_worker("--concurrency", "2", "--shutdown-grace", "10")
    worker.wait_started()
    job_id = jobs.sleep.enqueue(1.0)
    wait_running(db, 1)
    worker.signal(signum)
    # "After the signal" is after the worker handled it: a busy machine may run the worker
    # only once the next job's notification is there too.
    worker.wait_output("shutting down gracefully")
    queued_later = jobs.add.enqueue(1, 2)
    assert worker.wait(20) == 0, worker.output()
    assert app.get_job(job_id).state == "succeeded"
    later = app.get_job(queued_later)
    assert later.state == "queued" and later.attempts == 0, "no claim after the signal"
    workers = db.execute("SELECT count(*) FROM pgqueue.workers").fetchone()[0]
    assert workers == 0, "a clean exit removes the worker's row"


def test_grace_over_releases_unfinished_jobs_without_counting_an_attempt(app, db, spawn_worker):
    worker = spawn_worker("--concurrency", "3", "--shutdown-grace", "0.5")
    worker.wait_started()
    ids = [jobs.sleep.enqueue(30) for _ in range(3)]
    wait_running(db, 3)
    t0 = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.wait(20) == 0, worker.output()
    assert time.monotonic() - t0 < 10, "sync threads stuck in sleep must not hold the exit"
    for job_id in ids:
        job = app.get_job(job_id)
        assert job.state == "queued" and job.attempts == 0, job
    assert "releasing 3 job(s)" in worker.output()


@pytest.mark.parametrize("lease", ["20", "2"])
def test_a_job_whose_thread_outlives_the_grace_is_claimable_only_once_the_process_left(
    app, db, spawn_worker, lease
):
    # Released at once, the job was claimed by another worker while this one's thread
    # still ran it (until the process left): the same attempt twice at the same time. The
    # hold was capped at the lease, so with a short lease it ended before the process did.
    args = ("--concurrency", "2", "--shutdown-grace", "0.5", "--lease", lease)
    args += ("--heartbeat-interval", "0.5")
    worker = spawn_worker(*args)
    worker.wait_started()
    stuck = jobs.sleep.enqueue(30)  # sync: its thread cannot be stopped
    polite = jobs.async_sleep.enqueue(30)  # async: cancelled, and gone at once
    wait_running(db, 1)
    wait_for(lambda: app.get_job(polite).state == "running", timeout=10)
    worker.signal(signal.SIGTERM)
    assert worker.wait(20) == 0, worker.output()
    (now,) = db.execute("SELECT now()").fetchone()
    held, free = app.get_job(stuck), app.get_job(polite)
    assert held.state == free.state == "queued" and held.attempts == free.attempts == 0
    assert held.run_at > now + timedelta(seconds=5), "not due while the process may run it"
    assert free.run_at <= now
    assert "due again in 10s: its thread still runs here" in worker.output()


def test_a_handler_that_swallows_its_cancellation_does_not_hold_the_exit(app, db, spawn_worker):
    worker = spawn_worker("--concurrency", "2", "--shutdown-grace", "0.5")
    worker.wait_started()
    job_id = jobs.stubborn.enqueue()
    wait_running(db, 1)
    t0 = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.output()
    assert time.monotonic() - t0 < 20
    job = app.get_job(job_id)
    assert job.state == "queued" and job.attempts == 0, job
    assert "ignored their cancellation" in worker.output()


def test_second_signal_exits_at_once(app, db, spawn_worker):
    worker = spawn_worker("--concurrency", "1", "--shutdown-grace", "60")
    worker.wait_started()
    job_id = jobs.sleep.enqueue(30)
    wait_running(db, 1)
    worker.signal(signal.SIGTERM)
    # Two signals sent before the process runs again arrive as one: wait for the first.
    worker.wait_output("shutting down gracefully")
    # And a second one within SAME_STOP of the first is the same request (a terminal and
    # a supervisor both passing on one Ctrl-C): a person's second Ctrl-C comes later.
    time.sleep(SAME_STOP + 0.2)
    t0 = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.wait(10) != 0
    assert time.monotonic() - t0 < 5
    # Left running: the rescue of a lost worker takes it from here.
    assert app.get_job(job_id).state == "running"


def test_json_logs_have_one_line_per_outcome(app, db, spawn_worker):
    import json

    worker = spawn_worker("--concurrency", "2", "--log-format", "json")
    worker.wait_started()
    ok = jobs.add.enqueue(1, 2)
    bad = app.enqueue("always_fails", max_attempts=1)
    app.wait(ok, timeout=10)
    with pytest.raises(Exception):  # noqa: B017 - JobFailed
        app.wait(bad, timeout=10)
    worker.signal(signal.SIGTERM)
    assert worker.wait(20) == 0
    lines = [json.loads(line) for line in worker.output().splitlines() if line.strip()]
    outcomes = {rec["job_id"]: rec for rec in lines if "job_id" in rec}
    assert outcomes[ok]["outcome"] == "succeeded" and outcomes[ok]["task"] == "add"
    assert outcomes[ok]["queue"] == "default" and outcomes[ok]["attempt"] == 1
    assert outcomes[ok]["duration_ms"] >= 0 and outcomes[ok]["level"] == "info"
    assert outcomes[bad]["outcome"] == "dead" and outcomes[bad]["level"] == "error"


def test_sigusr1_writes_where_every_task_and_thread_is(app, db, spawn_worker):
    worker = spawn_worker("--concurrency", "1")
    worker.wait_started()
    worker.signal(signal.SIGUSR1)
    worker.wait_output("--- thread MainThread")
    assert "--- task pgqueue-heartbeat" in worker.output()
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.output()


def test_a_clean_stop_runs_exit_handlers(app, db, spawn_worker, tmp_path, monkeypatch):
    """An OpenTelemetry exporter flushes its last spans at exit: a clean stop must not
    leave by os._exit because the handlers' idle threads had not ended yet."""
    marker = tmp_path / "atexit"
    monkeypatch.setenv("PGQUEUE_TEST_ATEXIT", str(marker))
    worker = spawn_worker("--concurrency", "4")
    worker.wait_started()
    ids = [jobs.add.enqueue(i, i) for i in range(8)]  # sync handlers: threads
    assert [app.wait(i, timeout=10) for i in ids] == [2 * i for i in range(8)]
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.output()
    assert marker.read_text() == "ran"
