"""`pgqueue stats/schedules/workers` and `pgqueue jobs ...`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated

import typer

from pgqueue.cli.base import (
    INT8,
    MAX_TEXT,
    STATES,
    Dsn,
    JobId,
    Json,
    QueueOption,
    _app,
    _print_json,
    _table,
    _text,
    cli,
    duration,
    fail,
    jobs_cli,
)

STATS_COLUMNS = [
    "queue",
    "queued",
    "scheduled",
    "running",
    "succeeded",
    "dead",
    "cancelled",
    "succeeded_5m",
    "throughput",
    "oldest_waiting_age",
    "latency_p50",
    "latency_p95",
]


@cli.command()
def stats(dsn: Dsn = None, as_json: Json = False) -> None:
    """Per queue: queued (due), scheduled (later run_at), running, succeeded, dead, cancelled,
    succeeded in the last 5 min, throughput (jobs/s over 5 min), oldest waiting job's age and
    p50/p95 enqueue-to-start latency (seconds, estimated from histogram buckets)."""
    with _app(dsn) as app:
        rows = app.store.queue_stats()
        # Declared tasks with due jobs and no live worker that serves them.
        orphans = app.store.task_unserved()
    for row in rows:
        for key in ("oldest_waiting_age", "latency_p50", "latency_p95"):
            if row[key] is not None:
                row[key] = round(float(row[key]), 3)
    if as_json:
        _print_json(rows)
        return
    if not rows:
        typer.echo("no jobs")
    else:
        _table(rows, STATS_COLUMNS, title="queues")
    for task in orphans:
        typer.echo(f"no worker serves task {task['name']}: {task['due']} job(s) wait for one")


@cli.command()
def schedules(dsn: Dsn = None, as_json: Json = False) -> None:
    """Periodic schedules: cron, last and next fire time, last job."""
    with _app(dsn) as app:
        rows = app.store.schedule_list()
    if as_json:
        _print_json(rows)
    elif not rows:
        typer.echo("no schedules (they appear when a worker with periodic tasks starts)")
    else:
        _table(
            rows,
            ["name", "task", "cron", "timezone", "last_fire_at", "next_fire_at", "last_job_id"],
        )


WORKER_COLUMNS = [
    "id",
    "host",
    "pid",
    "queues",
    "concurrency",
    "running",
    "heartbeat_age",
    "alive",
    "started_at",
]


@cli.command()
def workers(dsn: Dsn = None, as_json: Json = False) -> None:
    """Registered worker processes and their heartbeats."""
    with _app(dsn) as app:
        rows = app.store.worker_list()
    for row in rows:
        row["id"] = str(row["id"])
        row["heartbeat_age"] = round(row["heartbeat_age"], 1)
        row["queues"] = ",".join(row["queues"])
    if as_json:
        _print_json(rows)
    elif not rows:
        typer.echo("no workers")
    else:
        _table(rows, WORKER_COLUMNS)


@jobs_cli.command("show")
def jobs_show(job_id: JobId, dsn: Dsn = None, as_json: Json = False) -> None:
    """Everything about one job, with its error history."""
    from dataclasses import asdict

    with _app(dsn) as app:
        job = app.get_job(job_id)
    if job is None:
        fail(f"no job with id {job_id}")
    data = asdict(job)
    data["state"] = str(job.state)
    if as_json:
        _print_json(data)
        return
    width = max(map(len, data))
    for key, value in data.items():
        if key in ("errors", "progress_message"):
            continue
        if key == "progress" and value is not None:
            # One line: "40% resizing images".
            value = f"{value:.0%} {job.progress_message or ''}".rstrip()
        typer.echo(f"{key:>{width}}: {value}")
    for err in job.errors:
        typer.echo(f"  attempt {err.get('attempt')} at {err.get('at')}: {err.get('error')}")


LIST_COLUMNS = [
    "id",
    "queue",
    "task",
    "state",
    "attempts",
    "priority",
    "created_at",
    "finished_at",
    "last_error",
]


@jobs_cli.command("list")
def jobs_list(
    dsn: Dsn = None,
    queue: QueueOption = None,
    state: Annotated[
        str | None, typer.Option(help="queued, running, succeeded, dead or cancelled.")
    ] = None,
    task: Annotated[
        str | None, typer.Option(help="Only this task.", callback=_text("--task", MAX_TEXT))
    ] = None,
    since: Annotated[str | None, typer.Option(help="Created within this long, e.g. 1h.")] = None,
    limit: Annotated[int, typer.Option(help="Jobs per page.", min=1, max=100_000)] = 50,
    before_id: Annotated[
        int | None, typer.Option(help="Next page: the last id shown.", min=1, max=INT8)
    ] = None,
    as_json: Json = False,
) -> None:
    """Jobs, newest first, with filters and paging."""
    from datetime import UTC, datetime, timedelta

    if state is not None and state not in STATES:
        fail(f"unknown state {state!r}: one of {', '.join(STATES)}")
    since_at = (
        None if since is None else datetime.now(UTC) - timedelta(seconds=duration(since, "--since"))
    )
    with _app(dsn) as app:
        rows = app.store.job_list(
            queue=queue, state=state, task=task, since=since_at, before_id=before_id, limit=limit
        )
    if as_json:
        _print_json(rows)
        return
    if not rows:
        typer.echo("no jobs")
        return
    for row in rows:
        if row["last_error"]:
            row["last_error"] = row["last_error"][:60]
    _table(rows, LIST_COLUMNS)
    if len(rows) == limit:
        typer.echo(f"next page: --before-id {rows[-1]['id']}")


@jobs_cli.command("cancel")
def jobs_cancel(job_id: JobId, dsn: Dsn = None, as_json: Json = False) -> None:
    """Cancel a queued or running job."""
    with _app(dsn) as app:
        state = app.store.job_cancel(job_id)
    if state not in ("queued", "running"):
        fail(
            f"no job {job_id}"
            if state is None
            else f"job {job_id} is not queued or running (it is {state})"
        )
    if as_json:  # a running job's cancel is stored on the row: its worker stops the attempt
        _print_json({"id": job_id, "cancelled": state == "queued", "requested": state == "running"})
    elif state == "queued":
        typer.echo(f"job {job_id} cancelled")
    else:
        typer.echo(f"job {job_id} is running: cancel requested, its worker stops it")


@jobs_cli.command("retry")
def jobs_retry(
    job_id: Annotated[
        int | None, typer.Argument(help="The job to retry.", min=1, max=INT8, metavar="JOB_ID")
    ] = None,
    dsn: Dsn = None,
    all_dead: Annotated[bool, typer.Option("--all-dead", help="Every dead job.")] = False,
    queue: QueueOption = None,
    as_json: Json = False,
) -> None:
    """Queue a dead or cancelled job again, or every dead job (in batches)."""
    if job_id is not None and all_dead:
        fail("give a job id or --all-dead, not both")
    if job_id is None and not all_dead:
        fail("give a job id or --all-dead")
    with _app(dsn) as app:
        if job_id is not None:
            if not app.retry(job_id):
                from pgqueue.operations import retry_refusal

                job = app.get_job(job_id)
                fail(f"no job {job_id}" if job is None else f"job {job_id} {retry_refusal(job)}")
            if as_json:
                _print_json({"retried": 1})
            else:
                typer.echo(f"job {job_id} queued again")
            return
        total = 0
        after: int | None = 0
        while after is not None:  # by id: a job that dies again meanwhile stays dead
            retried, after = app.store.job_retry_dead(queue=queue, after=after)
            total += retried
            if not as_json and sys.stderr.isatty():
                typer.echo(f"\rretried {total}...", err=True, nl=False)
        if not as_json and sys.stderr.isatty():
            typer.echo("", err=True)
    if as_json:
        _print_json({"retried": total})
    else:
        typer.echo(f"{total} dead job(s) queued again")


@jobs_cli.command("purge")
def jobs_purge(
    dsn: Dsn = None,
    state: Annotated[str, typer.Option(help="succeeded, dead or cancelled.")] = "succeeded",
    older_than: Annotated[str, typer.Option(help="Finished before this long ago, e.g. 7d.")] = "7d",
    queue: QueueOption = None,
    as_json: Json = False,
) -> None:
    """Delete finished jobs, in batches that never block workers."""
    from datetime import UTC, datetime, timedelta

    if state not in ("succeeded", "dead", "cancelled"):
        fail("--state must be succeeded, dead or cancelled")
    before = datetime.now(UTC) - timedelta(seconds=duration(older_than, "--older-than"))
    with _app(dsn) as app:
        total = _batches(lambda: app.store.job_purge(state, before, queue=queue), "purged", as_json)
    if as_json:
        _print_json({"purged": total})
    else:
        typer.echo(f"{total} {state} job(s) purged")


def _batches(step: Callable[[], int], verb: str, quiet: bool) -> int:
    """Run `step` (one short transaction) until it does nothing; progress on stderr."""
    total = 0
    while True:
        done = step()
        total += done
        if not quiet and sys.stderr.isatty():
            typer.echo(f"\r{verb} {total}...", err=True, nl=False)
        if done == 0:
            break
    if not quiet and sys.stderr.isatty():
        typer.echo("", err=True)
    return total
