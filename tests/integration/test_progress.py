"""ctx.progress: stored on the running job's row, throttled, guarded, validated."""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
import time

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import pgqueue
from pgqueue.cli import cli
from tests import jobs
from tests.waiting import wait_for

go = threading.Event()  # released by the test: the handlers below wait on it
seen_errors: list[str] = []


@pytest.fixture(autouse=True)
def _reset():
    go.clear()
    seen_errors.clear()
    yield
    go.set()  # never leave a handler waiting


@jobs.app.task(name="progress.steps")
def steps() -> str:
    ctx = pgqueue.context()
    ctx.progress(0.25, "step 1")
    go.wait(30)
    ctx.progress(0.75, "almost")  # within a second of the first: the write before the outcome
    return "done"


@jobs.app.task(name="progress.chatty")
def chatty(seconds: float) -> float:
    """Reports every few milliseconds for `seconds`; returns how long it reported."""
    ctx = pgqueue.context()
    started = time.monotonic()
    i = 0
    while time.monotonic() - started < seconds:
        ctx.progress(min(i / 1000, 0.99), f"item {i}")
        i += 1
        time.sleep(0.005)
    ctx.progress(1.0, "all done")
    return time.monotonic() - started


@jobs.app.task(name="progress.late")
def late() -> None:
    ctx = pgqueue.context()
    ctx.progress(0.1, "mine")
    go.wait(30)
    ctx.progress(0.5, "late")  # throttled: pending when the writer next runs
    time.sleep(1.3)
    ctx.progress(0.9, "later")  # written (refused) just before the outcome


@jobs.app.task(name="progress.bad")
def bad() -> None:
    ctx = pgqueue.context()
    ctx.progress(0.3, "ok")
    cases = [
        (1.5, None),
        (-0.1, None),
        (math.nan, None),
        (math.inf, None),
        ("half", None),
        (True, None),
        (None, None),
        (0.5, 42),
        (0.5, "x" * 1001),
        (0.5, "a\x00b"),
        (0.5, "\ud800"),
    ]
    for fraction, message in cases:
        try:
            ctx.progress(fraction, message)
        except pgqueue.ConfigurationError as exc:
            seen_errors.append(str(exc))


@jobs.app.task(name="progress.async")
async def async_steps(n: int) -> int:
    ctx = pgqueue.context()
    for i in range(n):
        ctx.progress(i / n, f"{i}/{n}")
        await asyncio.sleep(0)
    ctx.progress(0.5, "halfway")
    while not go.is_set():
        await asyncio.sleep(0.01)
    ctx.progress(1.0)
    return n


@jobs.app.task(name="progress.phases")
def phases() -> str:
    ctx = pgqueue.context()
    for fraction, message in ((0.2, "a"), (0.6, "b"), (1.0, "c")):
        ctx.progress(fraction, message)
        time.sleep(1.1)
    return "ok"


def _stored(db, job_id):
    return db.execute(
        "SELECT progress, progress_message FROM pgqueue.jobs WHERE id = %s", (job_id,)
    ).fetchone()


def test_progress_is_visible_while_the_job_runs_and_the_last_value_is_kept(app, worker, db, dsn):
    with worker(concurrency=2):
        job_id = steps.enqueue()
        wait_for(lambda: _stored(db, job_id) == (0.25, "step 1"))
        job = app.get_job(job_id)
        assert job.state == "running"
        assert (job.progress, job.progress_message) == (0.25, "step 1")
        shown = CliRunner().invoke(cli, ["jobs", "show", str(job_id), "--dsn", dsn])
        assert "progress: 25% step 1" in shown.output
        from pgqueue.web import create_app

        web = TestClient(create_app(app, token=None, allowed_hosts=["testserver"]))
        body = web.get(f"/api/jobs/{job_id}").json()
        assert (body["progress"], body["progress_message"]) == (0.25, "step 1")
        go.set()
        assert app.wait(job_id, timeout=10) == "done"
    job = app.get_job(job_id)
    assert job.state == "succeeded"
    assert (job.progress, job.progress_message) == (0.75, "almost")


@pytest.fixture
def write_log(db):
    """Every write of a job's progress, recorded by a trigger."""
    db.execute("CREATE TABLE public.progress_writes (job_id bigint, progress float8)")
    db.execute(
        "CREATE FUNCTION public.log_progress() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN INSERT INTO public.progress_writes VALUES (NEW.id, NEW.progress); "
        "RETURN NULL; END $$"
    )
    db.execute(
        "CREATE TRIGGER log_progress AFTER UPDATE OF progress ON pgqueue.jobs "
        "FOR EACH ROW EXECUTE FUNCTION public.log_progress()"
    )
    try:
        yield lambda job_id: [
            r[0]
            for r in db.execute(
                "SELECT progress FROM public.progress_writes WHERE job_id = %s", (job_id,)
            )
        ]
    finally:
        db.execute("DROP TRIGGER log_progress ON pgqueue.jobs")
        db.execute("DROP FUNCTION public.log_progress()")
        db.execute("DROP TABLE public.progress_writes")


def test_hundreds_of_reports_cost_about_one_write_a_second(app, worker, write_log):
    with worker(concurrency=2):
        job_id = chatty.enqueue(2.5)
        reporting = app.wait(job_id, timeout=30)
    writes = write_log(job_id)
    # The first report at once, then at most one a second, then the last before the outcome.
    assert 2 <= len(writes) <= math.floor(reporting) + 2, writes
    assert writes[-1] == 1.0
    assert writes == sorted(writes)  # never an older value over a newer one
    job = app.get_job(job_id)
    assert (job.progress, job.progress_message) == (1.0, "all done")


def test_a_rescued_job_keeps_its_row_whatever_the_old_attempt_reports(app, worker, db):
    with worker(concurrency=2) as w:
        job_id = late.enqueue()
        wait_for(lambda: _stored(db, job_id) == (0.1, "mine"))
        # What a rescue does: the job is taken from this worker (and kept from any other).
        db.execute(
            "UPDATE pgqueue.jobs SET state = 'queued', worker_id = NULL, "
            "run_at = now() + interval '1 hour' WHERE id = %s",
            (job_id,),
        )
        go.set()
        wait_for(lambda: w.runner.completer.rejected >= 1, timeout=15)
    assert _stored(db, job_id) == (0.1, "mine")
    assert app.get_job(job_id).state == "queued"


def test_bad_progress_is_refused_clearly_and_loses_nothing(app, worker):
    with worker():
        job_id = bad.enqueue()
        assert app.wait(job_id, timeout=10) is None
    assert len(seen_errors) == 11
    assert all(e.startswith("progress") for e in seen_errors), seen_errors
    assert "from 0 to 1, got 1.5" in seen_errors[0]
    assert "not str" in seen_errors[4] and "not bool" in seen_errors[5]
    assert "at most 1000 characters" in seen_errors[8]
    assert "NUL" in seen_errors[9] and "surrogate" in seen_errors[10]
    job = app.get_job(job_id)
    assert (job.state, job.progress, job.progress_message) == ("succeeded", 0.3, "ok")


def test_async_handlers_report_without_blocking_the_loop(app, worker, db):
    with worker(concurrency=4):
        job_id = async_steps.enqueue(500)
        wait_for(lambda: _stored(db, job_id) == (0.5, "halfway"))
        # The loop is free: another async job runs to completion meanwhile.
        assert app.wait(jobs.echo.enqueue("hi"), timeout=10) == "hi"
        go.set()
        assert app.wait(job_id, timeout=10) == 500
    assert _stored(db, job_id) == (1.0, None)


def test_wait_calls_back_on_progress(app, worker):
    seen: list[tuple[float, str | None]] = []
    with worker():
        job_id = phases.enqueue()
        assert app.wait(job_id, timeout=20, on_progress=lambda f, m: seen.append((f, m))) == "ok"
    assert seen and seen[-1] == (1.0, "c")
    assert all(a != b for a, b in itertools.pairwise(seen))  # changes only
    assert seen == sorted(seen)


def test_wait_async_takes_a_coroutine_callback(app, worker):
    seen: list[tuple[float, str | None]] = []

    async def record(fraction: float, message: str | None) -> None:
        seen.append((fraction, message))

    async def main() -> str:
        try:
            return await app.wait_async(job_id, timeout=20, on_progress=record)
        finally:
            await app.aclose()

    with worker():
        job_id = phases.enqueue()
        assert asyncio.run(main()) == "ok"
    assert seen and seen[-1] == (1.0, "c")


def test_a_failed_progress_write_is_logged_and_the_job_still_succeeds(app, worker, db, caplog):
    db.execute(
        "CREATE FUNCTION public.refuse_progress() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN RAISE EXCEPTION 'progress refused by test'; END $$"
    )
    db.execute(
        "CREATE TRIGGER refuse_progress BEFORE UPDATE OF progress ON pgqueue.jobs "
        "FOR EACH ROW EXECUTE FUNCTION public.refuse_progress()"
    )
    try:
        with caplog.at_level("WARNING", logger="pgqueue.worker"), worker():
            job_id = steps.enqueue()
            go.set()
            assert app.wait(job_id, timeout=10) == "done"
    finally:
        db.execute("DROP TRIGGER refuse_progress ON pgqueue.jobs")
        db.execute("DROP FUNCTION public.refuse_progress()")
    assert app.get_job(job_id).progress is None
    assert any(
        "not written" in r.getMessage() and "progress refused by test" in r.getMessage()
        for r in caplog.records
    ), [r.getMessage() for r in caplog.records]
