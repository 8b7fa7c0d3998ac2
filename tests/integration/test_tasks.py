"""Tasks are known to the database: workers declare what they serve, jobs enqueued by name
get their task's defaults, and a worker never takes a job whose task it does not have."""

from __future__ import annotations

import asyncio
import threading
import time

import pgqueue
from pgqueue.cli import cli
from pgqueue.settings import WorkerSettings
from pgqueue.worker import Worker
from tests import jobs
from tests.waiting import wait_for


def test_jobs_enqueued_by_name_get_the_declared_defaults(app, worker, db, dsn):
    with worker():  # declares tests.jobs' tasks: "nap" is on queue "limited", "discard" 5 tries
        pass
    with pgqueue.App(dsn) as elsewhere:  # a process that does not import the tasks
        by_name = elsewhere.enqueue("nap", args=[0])
        explicit = elsewhere.enqueue("nap", args=[0], queue="urgent", max_attempts=9)
        five = elsewhere.enqueue("discard")
        unknown = elsewhere.enqueue("nobody_declared_this")
    (by_sql,) = db.execute(
        "INSERT INTO pgqueue.jobs (task, args) VALUES ('nap', '[0]') RETURNING id"
    ).fetchone()
    got = {
        job_id: (job.queue, job.max_attempts, job.priority)
        for job_id in (by_name, explicit, five, unknown, by_sql)
        if (job := app.get_job(job_id)) is not None
    }
    assert got == {
        by_name: ("limited", 3, 0),
        explicit: ("urgent", 9, 0),
        five: ("default", 5, 0),
        unknown: ("default", 3, 0),
        by_sql: ("limited", 3, 0),
    }


def test_jobs_enqueued_by_name_get_the_declared_timeout(app, worker, db, dsn):
    with worker():  # declares tests.jobs' tasks: "sync_slow" has a 0.3 s timeout
        pass
    with pgqueue.App(dsn) as elsewhere:
        by_name = elsewhere.enqueue("sync_slow")
        given = elsewhere.enqueue("sync_slow", timeout=7)
        none_declared = elsewhere.enqueue("nap", args=[0])
    (by_sql,) = db.execute(
        "INSERT INTO pgqueue.jobs (task) VALUES ('sync_slow') RETURNING id"
    ).fetchone()
    got = {
        job_id: job.timeout
        for job_id in (by_name, given, none_declared, by_sql)
        if (job := app.get_job(job_id)) is not None
    }
    assert got == {by_name: 0.3, given: 7.0, none_declared: None, by_sql: 0.3}


def test_a_worker_never_takes_a_job_whose_task_it_lacks(app, dsn, db):
    """Two versions of a worker in a rolling deploy: the one that lacks a task another
    declared leaves its jobs to the other (a task nobody declared ends dead instead, as a
    poison job, see test_worker.py)."""
    from tests.conftest import running_worker

    with running_worker(dsn):
        pass  # the full version has run once: its tasks are declared
    partial = pgqueue.App(dsn)

    @partial.task(name="echo")
    async def echo(value: object) -> object:
        return value

    add_id = jobs.add.enqueue(1, 2)
    echo_id = jobs.echo.enqueue("hi")
    worker = Worker(partial, WorkerSettings(poll_interval=0.2, shutdown_grace=5), dsn)
    thread = threading.Thread(target=lambda: asyncio.run(worker.run()), daemon=True)
    thread.start()
    try:
        assert worker.wait_started(20)
        assert app.wait(echo_id, timeout=10) == "hi"
        time.sleep(0.5)  # a few polls: "add" is not this worker's
        job = app.get_job(add_id)
        assert job.state == "queued" and job.attempts == 0 and job.errors == []
        waiting = "no worker serves task add: 1 job(s) wait for one"
        assert waiting in _cli("tasks").output
        assert waiting in _cli("stats").output
        assert 'pgqueue_jobs_without_worker{task="add"} 1' in _metrics(app)
    finally:
        worker.stop()
        thread.join(30)
        partial.close()
    # A worker that has the task runs it.
    with running_worker(dsn):
        assert app.wait(add_id, timeout=10) == 3
    assert app.get_job(add_id).attempts == 1


def _metrics(app: pgqueue.App) -> str:
    from fastapi.testclient import TestClient

    from pgqueue.web import create_app

    web = TestClient(create_app(app, token=None, allowed_hosts=["testserver"]))
    return web.get("/metrics").text


def _cli(*args: str):
    from typer.testing import CliRunner

    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_tasks_lists_declared_tasks_and_their_workers(app, worker, dsn):
    with worker():
        wait_for(lambda: "add" in _cli("tasks", "--dsn", dsn).output)
        result = _cli("tasks", "--dsn", dsn, "--json")
    import json

    rows = {row["name"]: row for row in json.loads(result.output)}
    assert rows["nap"]["queue"] == "limited" and rows["nap"]["workers"] == 1
    assert rows["discard"]["max_attempts"] == 5
