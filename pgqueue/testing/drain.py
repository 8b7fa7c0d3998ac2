"""drain(app): run every due job in this process, with pgqueue's own worker, until none is
left; return the jobs it ran."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg.rows import dict_row

from pgqueue.job import Job

# Is there anything left for this drain to do? A job of its tasks that is due, one its worker
# is running (or has not recorded yet), or a child whose parents have all finished but that
# has not been released or cancelled yet: each leads to more work within moments.
_PENDING = """
SELECT EXISTS (SELECT 1 FROM pgqueue.jobs AS j
               WHERE j.state = 'running' AND j.worker_id = %(worker)s::uuid)
    OR EXISTS (SELECT 1 FROM pgqueue.jobs AS j
               WHERE j.state = 'queued' AND j.run_at <= now()
                 AND j.task = ANY(%(tasks)s::text[])
                 AND (%(queues)s::text[] IS NULL OR j.queue = ANY(%(queues)s::text[]))
                 AND NOT EXISTS (SELECT 1 FROM pgqueue.queues AS q
                                 WHERE q.name = j.queue AND q.paused))
    OR EXISTS (SELECT 1 FROM pgqueue.jobs AS c
               WHERE c.state = 'queued' AND c.depends_on IS NOT NULL
                 AND c.run_at = '9999-12-31 00:00:00+00'  -- waiting on parents
                 AND NOT EXISTS (SELECT 1 FROM pgqueue.jobs AS p
                                 WHERE p.id = ANY(c.depends_on)
                                   AND p.state IN ('queued', 'running')))
"""

# run_scheduled=True: jobs of these tasks scheduled for later (delayed, or waiting out a
# retry backoff) are made due now (jobs waiting on parents are left alone), and whether
# anything is left is asked in the same statement: asked apart, a retry recorded between
# the two was neither running nor due to the second, and the drain stopped short of it.
_ADVANCE_PENDING = (
    """
WITH advanced AS (
    UPDATE pgqueue.jobs SET run_at = now()
    WHERE state = 'queued' AND run_at > now() AND run_at <> '9999-12-31 00:00:00+00'
      AND task = ANY(%(tasks)s::text[])
      AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
    RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM advanced) OR ("""
    + _PENDING.strip().removeprefix("SELECT ")
    + ")"
)

_RAN = "SELECT * FROM pgqueue.jobs WHERE worker_id = %(worker)s::uuid ORDER BY started_at, id"


def drain(
    app: Any,
    *,
    queues: Iterable[str] | None = None,
    run_scheduled: bool = False,
    concurrency: int = 1,
    timeout: float = 30.0,
) -> list[Job]:
    """Run the due jobs of `app`'s tasks in this process until none is left; return them.

    A real pgqueue worker does the work, on the app's database, exactly as `pgqueue work`
    would: retries, `Retry`, `Discard`, timeouts, follow-up jobs and dependencies behave as in
    production. Jobs that become due while it runs (jobs enqueued by handlers, children
    released by their parents) are run too. A failed job with attempts left is queued for
    later and not run again, unless `run_scheduled` is true: then delayed and backed-off
    jobs are made due at once, so a failing job runs until it is `dead`.

    With `concurrency=1` (the default) jobs run one at a time in claim order: within a
    queue, priority, then `run_at`, then id; across queues too when `queues` names them (a
    worker of every queue keeps to the queues where it last found jobs between its looks
    at all of them, so a better job in another queue may wait for that look). Returns the
    jobs the drain ran, as they are now, in the order they (last) started. Raises
    TimeoutError if jobs are still due after `timeout` seconds.
    """
    from pgqueue.settings import WorkerSettings
    from pgqueue.worker import Worker

    names = list(app.tasks)
    wanted = list(queues) if queues is not None else None
    settings = WorkerSettings(
        queues=tuple(wanted) if wanted else None,
        concurrency=concurrency,
        poll_interval=0.05,  # no waiting on notifications: the drain checks the table itself
        shutdown_grace=timeout,
        scheduler=False,  # a test fires periodic tasks itself, by enqueueing them
    )
    worker = Worker(app, settings, app.dsn)
    failures: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(worker.run())
        except BaseException as exc:  # re-raised in the caller's thread below
            failures.append(exc)

    thread = threading.Thread(target=run, name="pgqueue-drain", daemon=True)
    params = {"worker": str(worker.id), "tasks": names, "queues": wanted}
    deadline = time.monotonic() + timeout
    timed_out = False
    with psycopg.connect(app.dsn, autocommit=True) as conn:
        thread.start()
        try:
            worker.wait_started(timeout)
            while thread.is_alive():
                row = conn.execute(
                    _ADVANCE_PENDING if run_scheduled else _PENDING, params
                ).fetchone()
                if row is None or not row[0]:
                    break
                if time.monotonic() > deadline:
                    timed_out = True
                    break
                time.sleep(0.01)
        finally:
            worker.stop()
            thread.join(timeout + 30)
        if failures:
            raise failures[0]
        with conn.cursor(row_factory=dict_row) as cur:
            ran = [Job.from_row(r) for r in cur.execute(_RAN, params).fetchall()]
    if timed_out:
        raise TimeoutError(f"jobs were still due or running after {timeout}s of drain()")
    return ran


async def drain_async(
    app: Any,
    *,
    queues: Iterable[str] | None = None,
    run_scheduled: bool = False,
    concurrency: int = 1,
    timeout: float = 30.0,
) -> list[Job]:
    """`drain` for async tests: the worker runs in a thread, the caller's loop stays free."""
    return await asyncio.to_thread(
        drain,
        app,
        queues=queues,
        run_scheduled=run_scheduled,
        concurrency=concurrency,
        timeout=timeout,
    )
