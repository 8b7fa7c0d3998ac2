"""`pgqueue stats/schedules/workers`, `pgqueue jobs ...` and `pgqueue queues ...`."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from pgqueue.cli.base import (
    INT4,
    INT8,
    MAX_TEXT,
    STATES,
    Dsn,
    JobId,
    Json,
    QueueName,
    QueueOption,
    _app,
    _number,
    _print_json,
    _table,
    _text,
    cli,
    duration,
    fail,
    jobs_cli,
    queues_cli,
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


@queues_cli.command("pause")
def queues_pause(name: QueueName, dsn: Dsn = None) -> None:
    """Stop claiming from a queue on every node; running jobs finish."""
    with _app(dsn) as app:
        app.pause_queue(name)
    typer.echo(f"queue {name} paused")


@queues_cli.command("resume")
def queues_resume(name: QueueName, dsn: Dsn = None) -> None:
    """Start claiming from a queue again."""
    with _app(dsn) as app:
        app.resume_queue(name)
    typer.echo(f"queue {name} resumed")


@queues_cli.command("limit")
def queues_limit(
    name: QueueName,
    dsn: Dsn = None,
    concurrency: Annotated[
        int | None,
        typer.Option(help="Most jobs running at once, cluster-wide.", min=0, max=INT4),
    ] = None,
    rate: Annotated[
        int | None, typer.Option(help="Most starts per --per seconds.", min=0, max=INT4)
    ] = None,
    per: Annotated[
        float | None,
        typer.Option(help="Rate window in seconds (1).", callback=_number(0, 86400, open_low=True)),
    ] = None,
    per_key: Annotated[
        int | None,
        typer.Option(
            "--per-key",
            help="Most jobs running at once per concurrency_key, cluster-wide (keys take turns).",
            min=1,
            max=INT4,
        ),
    ] = None,
    clear: Annotated[bool, typer.Option(help="Remove every limit.")] = False,
) -> None:
    """Set or clear cluster-wide limits on a queue."""
    kwargs: dict[str, Any] = {}
    if clear:
        kwargs = {"concurrency": None, "rate": None, "per_key": None}
    if concurrency is not None:
        kwargs["concurrency"] = concurrency
    if rate is not None:
        kwargs["rate"] = rate
    if per_key is not None:
        kwargs["per_key"] = per_key
    if not kwargs and per is None:
        fail("give --concurrency, --rate (with --per), --per-key or --clear")
    with _app(dsn) as app:
        app.set_queue_limits(name, per=per, **kwargs)
    if clear and concurrency is None and rate is None and per_key is None:
        typer.echo(f"queue {name}: limits cleared")
    else:
        shown = [f"{k} {'none' if v is None else v}" for k, v in kwargs.items()]
        shown += [f"per {per:g}s"] if per is not None else []
        typer.echo(f"queue {name}: limits set ({', '.join(shown)})")


@queues_cli.command("list")
def queues_list(dsn: Dsn = None, as_json: Json = False) -> None:
    """Queues with settings: paused, concurrency and rate limits."""
    with _app(dsn) as app:
        rows = app.queues()
    if as_json:
        _print_json(rows)
    elif not rows:
        typer.echo("no queue settings")
    else:
        _table(
            rows,
            [
                "name",
                "paused",
                "concurrency_limit",
                "rate_limit",
                "rate_period",
                "per_key_limit",
                "retain_succeeded",
                "retain_dead",
                "retain_cancelled",
            ],
        )


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
    for key, value in data.items():
        if key in ("errors", "progress_message"):
            continue
        if key == "progress" and value is not None:
            # One line: "40% resizing images".
            value = f"{value:.0%} {job.progress_message or ''}".rstrip()
        typer.echo(f"{key:>13}: {value}")
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
    if (job_id is None) == (not all_dead):
        fail("give a job id or --all-dead")
    with _app(dsn) as app:
        if job_id is not None:
            if not app.retry(job_id):
                fail(
                    f"no job {job_id}"
                    if app.get_job(job_id) is None
                    else f"job {job_id} is not dead or cancelled"
                )
            typer.echo(json.dumps({"retried": 1}) if as_json else f"job {job_id} queued again")
            return
        total = _batches(lambda: app.store.job_retry_dead(queue=queue), "retried", as_json)
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


@queues_cli.command("retention")
def queues_retention(
    name: QueueName,
    dsn: Dsn = None,
    succeeded: Annotated[str | None, typer.Option(help="Keep succeeded jobs this long.")] = None,
    dead: Annotated[str | None, typer.Option(help="Keep dead jobs this long.")] = None,
    cancelled: Annotated[str | None, typer.Option(help="Keep cancelled jobs this long.")] = None,
    default: Annotated[bool, typer.Option(help="Back to the workers' defaults.")] = False,
) -> None:
    """How long a queue's finished jobs are kept (0: deleted at completion, so `app.wait`
    and `jobs show` no longer find them)."""
    kwargs: dict[str, Any] = {}
    if default:
        kwargs = {"succeeded": None, "dead": None, "cancelled": None}
    for key, value in (("succeeded", succeeded), ("dead", dead), ("cancelled", cancelled)):
        if value is not None:
            kwargs[key] = duration(value, f"--{key}")
    if not kwargs:
        fail("give --succeeded, --dead, --cancelled or --default")
    with _app(dsn) as app:
        app.set_queue_retention(name, **kwargs)
    given = {"succeeded": succeeded, "dead": dead, "cancelled": cancelled}
    said = []
    for state, seconds in kwargs.items():
        if seconds is None:
            said.append(f"{state} jobs kept as the workers' --retain-{state} says")
        elif seconds == 0:
            said.append(f"{state} jobs deleted at completion")
        else:
            said.append(f"{state} jobs kept {given[state]}")
    typer.echo(f"queue {name}: " + "; ".join(said))
