"""The worker on a real database: order, delays, retries, Retry/Discard, poison jobs."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

import pgqueue
from tests import jobs
from tests.waiting import wait_for


def test_runs_sync_and_async_handlers_and_stores_results(app, worker):
    with worker(concurrency=4):
        sync_id = jobs.add.enqueue(2, 3)
        async_id = jobs.echo.enqueue({"nested": [1, "two"]})
        assert app.wait(sync_id, timeout=10) == 5
        assert app.wait(async_id, timeout=10) == {"nested": [1, "two"]}
    job = app.get_job(sync_id)
    assert job.state == "succeeded" and job.attempts == 1 and job.result == 5
    assert job.started_at is not None and job.finished_at >= job.started_at


def test_priority_order_with_concurrency_one(app, worker):
    app.enqueue_many(
        [
            {"task": "note", "args": [f"p{p}-{i}"], "priority": p}
            for i in range(3)
            for p in (0, 5, -2, 10)
        ]
    )
    last = app.enqueue("note", args=["last"], priority=-100)
    with worker(concurrency=1):
        app.wait(last, timeout=20)
    labels = [value for _, value in jobs.calls]
    expected = [f"p{p}-{i}" for p in (10, 5, 0, -2) for i in range(3)] + ["last"]
    assert labels == expected


def test_delayed_job_waits_for_run_at_then_runs_promptly(app, worker, db):
    with worker(concurrency=2, poll_interval=30):
        enqueued = time.time()
        job_id = jobs.stamp.options(delay=1.0).enqueue("late")
        run_at = app.get_job(job_id).run_at
        app.wait(job_id, timeout=10)
    ((_, (_label, started)),) = jobs.calls
    assert started >= run_at.timestamp() - 0.01
    assert started - enqueued >= 0.99
    # The worker sleeps until run_at (not until the 30 s poll): it starts soon after.
    assert started - run_at.timestamp() < 1.0


def test_run_at_and_timedelta_delay(app, worker):
    at = datetime.now(UTC) + timedelta(seconds=0.3)
    a = jobs.stamp.options(run_at=at).enqueue("a")
    b = jobs.stamp.options(delay=timedelta(milliseconds=300)).enqueue("b")
    with worker():
        app.wait(a, timeout=10)
        app.wait(b, timeout=10)
    assert app.get_job(a).started_at >= at


def test_retries_with_backoff_then_success(app, worker):
    job_id = jobs.flaky.enqueue(2)
    with worker():
        assert app.wait(job_id, timeout=10) == "ok after 3"
    job = app.get_job(job_id)
    assert job.attempts == 3 and job.state == "succeeded"
    assert [e["attempt"] for e in job.errors] == [1, 2]
    assert job.errors[0]["error"] == "RuntimeError: failure 1"
    assert "Traceback" in job.errors[0]["traceback"]
    at = [datetime.fromisoformat(e["at"]) for e in job.errors]
    # Backoff grows: 0.05 s then 0.1 s (no jitter in this task's policy).
    assert job.started_at - at[1] >= timedelta(seconds=0.09)


def test_exhausted_attempts_end_dead_with_history(app, worker):
    job_id = jobs.always_fails.enqueue()
    with worker(), pytest.raises(pgqueue.JobFailed, match="it never works"):
        app.wait(job_id, timeout=10)
    job = app.get_job(job_id)
    assert job.state == "dead" and job.attempts == 3 == job.max_attempts
    assert job.last_error == "ValueError: it never works"
    assert [e["attempt"] for e in job.errors] == [1, 2, 3]
    assert job.finished_at is not None


def test_retry_exception_reschedules_without_using_an_attempt(app, worker):
    job_id = jobs.snooze.options(max_attempts=1).enqueue(3)
    with worker():
        assert app.wait(job_id, timeout=10) == 4
    job = app.get_job(job_id)
    assert job.attempts == 1 and job.errors == []


def test_discard_goes_straight_to_dead(app, worker):
    job_id = jobs.discard.enqueue()
    with worker(), pytest.raises(pgqueue.JobFailed):
        app.wait(job_id, timeout=10)
    job = app.get_job(job_id)
    assert job.state == "dead" and job.attempts == 1 and job.max_attempts == 5
    assert job.last_error == "Discarded: not worth it"


@pytest.mark.parametrize(
    ("task", "args", "error"),
    [
        ("no.such.task", [], "UnknownTask: no task named 'no.such.task'"),
        ("add", [1], "BadArguments: add(a, b) cannot take them"),
        ("add", [1, 2, 3], "BadArguments"),
        ("base_exception", [], "Exploding: kaboom"),
        ("system_exit", [], "SystemExit: 3"),
        ("keyboard_interrupt", [], "KeyboardInterrupt"),
        # asyncio cannot put a StopIteration into a future: the slot stayed taken for good;
        # a GeneratorExit left its job running.
        ("sync_raises", ["StopIteration"], "StopIteration: from a handler"),
        ("sync_raises", ["GeneratorExit"], "GeneratorExit: from a handler"),
        ("bad_result", [], "SerializationError: result of bad_result is not JSON-serialisable"),
        ("deep_result", [], "SerializationError: result of deep_result is not JSON-serial"),
        # CancelledError raised by the handler itself (nobody cancelled the attempt) was
        # taken for the worker's own cancel: released without an attempt, again and again.
        ("own_cancelled", [], "CancelledError"),
        ("cancelled_future", [], "CancelledError"),
        # An exception whose __str__ raises left the job running for good.
        ("unprintable", [], "Unprintable: <its message could not be made: AttributeError"),
        # A NUL or a lone surrogate in the message: the outcome was refused by jsonb, and
        # the job ended dead on its first attempt with only "StorageError".
        ("nul_error", ["at NUL and SURROGATE"], "ValueError: at \\x00 and \\ud800"),
        ("nul_result", [], "SerializationError: the strings of the result of nul_result"),
        # A snooze for NaN, Infinity or a negative time ran the job again at once, for ever;
        # one past the table's dates ended it dead with a StorageError.
        ("bad_snooze", ["nan"], "ConfigurationError: Retry delay must be >= 0 (and finite)"),
        ("bad_snooze", ["-5"], "ConfigurationError: Retry delay must be >= 0 (and finite)"),
        ("bad_snooze", ["1e12"], "ConfigurationError: Retry delay must be at most"),
        # An async handler that caught its timeout's cancellation ended succeeded.
        ("late_async", [], "TimeoutError: the attempt ran over its 0.2s timeout"),
        # A retry policy that raises: no outcome was decided, the job stayed running.
        ("broken_retry", [], "OutcomeError: RuntimeError: broken policy"),
    ],
)
def test_poison_jobs_end_dead_and_the_worker_keeps_going(app, worker, task, args, error):
    poison = app.enqueue(task, args=args, max_attempts=3)
    with worker(concurrency=2):
        with pytest.raises(pgqueue.JobFailed):
            app.wait(poison, timeout=10)
        healthy = jobs.add.enqueue(1, 1)
        assert app.wait(healthy, timeout=10) == 2
    job = app.get_job(poison)
    assert job.state == "dead"
    assert job.last_error.startswith(error)
    if task in ("no.such.task", "add", "bad_result", "deep_result", "nul_result"):
        assert job.attempts == 1, "a job that can never work is not retried"
    if task in ("own_cancelled", "cancelled_future", "unprintable", "nul_error", "sync_raises"):
        assert job.attempts == 3 and len(job.errors) == 3, "failures like any other"


def test_plain_sql_job_is_picked_up_within_milliseconds(app, worker, db):
    with worker(poll_interval=30):
        time.sleep(0.2)  # idle
        t0 = time.time()
        db.execute("INSERT INTO pgqueue.jobs (task, args) VALUES ('stamp', '[\"sql\"]')")
        wait_for(lambda: jobs.calls, timeout=10, interval=0.001)
    started = jobs.calls[0][1][1]
    # Only the notification can wake it before the 30 s poll; how much sooner depends on how
    # busy the machine is, which is no business of this test.
    assert started - t0 < 10.0, "woken by NOTIFY, not by the 30 s poll"


def test_cancel_queued_job_never_runs_and_retry_requeues(app, worker):
    job_id = jobs.note.options(delay=0.5).enqueue("cancelled")
    assert app.cancel(job_id)
    assert app.get_job(job_id).state == "cancelled"
    with pytest.raises(pgqueue.JobCancelled):
        app.wait(job_id, timeout=1)
    with worker():
        time.sleep(1.0)
        assert jobs.calls == []
        assert app.retry(job_id)
        app.wait(job_id, timeout=10)
    assert jobs.calls == [("note", "cancelled")]


def test_wait_times_out_and_unknown_job(app):
    job_id = jobs.add.options(delay=60).enqueue(1, 2)
    with pytest.raises(TimeoutError):
        app.wait(job_id, timeout=0.2)
    with pytest.raises(pgqueue.JobNotFound):
        app.wait(10**12, timeout=0.2)
    assert app.get_job(10**12) is None


def test_wait_and_job_ids_refuse_what_cannot_be(app):
    job_id = jobs.add.options(delay=60).enqueue(1, 2)
    for timeout in (float("nan"), -1.0):
        with pytest.raises(pgqueue.ConfigurationError, match="timeout"):
            app.wait(job_id, timeout=timeout)
    with pytest.raises(pgqueue.ConfigurationError, match="poll"):
        app.wait(job_id, timeout=1, poll=0)
    # Beyond a bigint: no such job, not a driver error.
    assert app.get_job(2**70) is None
    assert app.cancel(2**70) is False
    assert app.retry(2**70) is False
    with pytest.raises(pgqueue.JobNotFound):
        app.wait(2**70, timeout=1)
    with pytest.raises(pgqueue.ConfigurationError, match="integer"):
        app.cancel("1")  # type: ignore[arg-type]
    assert app.get_job(job_id).state == "queued"


def test_context_gives_job_and_attempt(app, worker):
    @app.task(name="ctx_probe")
    def ctx_probe() -> dict:
        ctx = pgqueue.context()
        return {"id": ctx.job.id, "attempt": ctx.attempt, "cancelled": ctx.cancelled}

    job_id = ctx_probe.enqueue()
    with worker():
        assert app.wait(job_id, timeout=10) == {"id": job_id, "attempt": 1, "cancelled": False}


def test_declared_ctx_parameter_in_any_place(app, worker):
    # `ctx` first is the convention of other Python queues; it must not take the place of
    # the job's first argument.
    @app.task(name="ctx_first")
    def ctx_first(ctx: pgqueue.JobContext, x: int, y: int = 0) -> list:
        return [ctx.job.id, x, y]

    @app.task(name="ctx_first_async")
    async def ctx_first_async(ctx: pgqueue.JobContext, x: int) -> list:
        return [ctx.job.id, x]

    @app.task(name="ctx_middle")
    def ctx_middle(x: int, ctx: pgqueue.JobContext, y: int) -> list:
        return [ctx.job.id, x, y]

    @app.task(name="ctx_keyword_only")
    def ctx_keyword_only(x: int, *, ctx: pgqueue.JobContext) -> list:
        return [ctx.job.id, x]

    first = ctx_first.enqueue(5)
    first_kw = ctx_first.enqueue(x=6, y=1)
    first_async = ctx_first_async.enqueue(7)
    middle = ctx_middle.enqueue(8, 9)
    middle_kw = ctx_middle.enqueue(1, y=2)
    keyword_only = ctx_keyword_only.enqueue(3)
    with worker():
        assert app.wait(first, timeout=10) == [first, 5, 0]
        assert app.wait(first_kw, timeout=10) == [first_kw, 6, 1]
        assert app.wait(first_async, timeout=10) == [first_async, 7]
        assert app.wait(middle, timeout=10) == [middle, 8, 9]
        assert app.wait(middle_kw, timeout=10) == [middle_kw, 1, 2]
        assert app.wait(keyword_only, timeout=10) == [keyword_only, 3]


def test_cancel_and_retry_have_asyncio_twins(app):
    job_id = jobs.add.options(delay=60).enqueue(1, 2)

    async def main() -> tuple[bool, bool, bool, bool]:
        cancelled = await app.cancel_async(job_id)
        again = await app.cancel_async(job_id)  # finished: refused
        retried = await app.retry_async(job_id)
        retried_twice = await app.retry_async(job_id)  # queued now: refused
        return cancelled, again, retried, retried_twice

    assert asyncio.run(main()) == (True, False, True, False)
    job = app.get_job(job_id)
    assert job is not None and job.state == "queued"


def test_a_failure_after_a_thousand_attempts_is_retried_with_the_longest_delay(app, worker, db):
    # factor ** attempts overflowed a float past attempt 1024: the outcome was never
    # decided, and the job stayed running for as long as its worker lived, with no log line.
    job_id = app.enqueue("always_fails", max_attempts=5000)
    db.execute("UPDATE pgqueue.jobs SET attempts = 1100 WHERE id = %s", (job_id,))
    with worker():
        wait_for(lambda: app.get_job(job_id).attempts == 1101, timeout=10)
        wait_for(lambda: app.get_job(job_id).state == "queued", timeout=10)
    job = app.get_job(job_id)
    assert job.last_error.startswith("ValueError")
    assert job.run_at > datetime.now(UTC) + timedelta(minutes=59), job.run_at


def test_retry_delays_stay_finite_at_any_attempt():
    assert pgqueue.RetryPolicy().delay(5000) <= 3600 * 1.1
    assert pgqueue.RetryPolicy(jitter=0).delay(10**9) == 3600
    assert pgqueue.RetryPolicy(base=0, jitter=0).delay(5000) == 0
    assert pgqueue.RetryPolicy(factor=1, jitter=0).delay(5000) == 1
