"""The `pgqueue` command: a thin typer layer over the library."""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from pgqueue.app import App, resolve_dsn
from pgqueue.durations import parse_duration
from pgqueue.errors import ConfigurationError, PgQueueError, UnknownTask
from pgqueue.web.guard import MAX_BODY

F = TypeVar("F", bound=Callable[..., Any])

cli = typer.Typer(
    name="pgqueue",
    help="A durable job queue on PostgreSQL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
migrate_cli = typer.Typer(
    help="Apply pgqueue's schema migrations (alembic).", invoke_without_command=True
)
jobs_cli = typer.Typer(help="Inspect and act on jobs.", no_args_is_help=True)
queues_cli = typer.Typer(help="Pause and resume queues.", no_args_is_help=True)
cli.add_typer(migrate_cli, name="migrate")
cli.add_typer(jobs_cli, name="jobs")
cli.add_typer(queues_cli, name="queues")

Dsn = Annotated[
    str | None,
    typer.Option(
        "--dsn",
        envvar=["PGQUEUE_DSN", "DATABASE_URL"],
        show_envvar=True,
        help="PostgreSQL DSN or URL (else PGQUEUE_DSN, DATABASE_URL, libpq's PG*).",
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
STATES = ("queued", "running", "succeeded", "dead", "cancelled")


def fail(message: str, code: int = 1) -> NoReturn:
    """One clear line on stderr and a non-zero exit: never a traceback."""
    typer.echo(f"pgqueue: error: {message}", err=True)
    raise typer.Exit(code)


def load_app(path: str) -> App:
    """Import `module:attribute` (attribute defaults to `app`) and return the App there."""
    module_name, _, attr = path.partition(":")
    if not module_name:
        fail(f"invalid app path {path!r}: expected module:attribute")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        fail(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}")
    obj = getattr(module, attr or "app", None)
    if not isinstance(obj, App):
        fail(f"{path!r} is not a pgqueue.App (found {type(obj).__name__})")
    return obj


def _json_arg(text: str, what: str, kind: type) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"--{what} is not valid JSON: {exc}")
    if not isinstance(value, kind):
        fail(f"--{what} must be a JSON {'array' if kind is list else 'object'}")
    return value


def _app(dsn: str | None) -> App:
    return App(resolve_dsn(dsn))


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, default=str, indent=2))


def _table(rows: list[dict[str, Any]], columns: list[str], title: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, header_style="bold")
    for column in columns:
        numeric = bool(rows) and isinstance(rows[0].get(column), int | float)
        table.add_column(column, justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    Console(width=max(100, len(columns) * 14)).print(table)


# -- migrate --------------------------------------------------------------------------------


@migrate_cli.callback()
def migrate(
    ctx: typer.Context,
    dsn: Dsn = None,
    sql: Annotated[
        bool, typer.Option("--sql", help="Print the SQL instead of running it.")
    ] = False,
) -> None:
    """Migrate the pgqueue schema up to the latest version (or see `downgrade`)."""
    from pgqueue import migrate as migrations  # alembic is slow to import: only here

    ctx.obj = dsn
    if ctx.invoked_subcommand is not None:
        return
    if sql:
        typer.echo(migrations.upgrade_sql())
        return
    migrations.upgrade(_check_db(dsn))
    typer.echo(f"pgqueue schema at revision {migrations.head_revision()}")


@migrate_cli.command("downgrade")
def migrate_downgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision; `base` removes everything.")],
    dsn: Dsn = None,
) -> None:
    """Migrate the pgqueue schema down to REVISION."""
    from pgqueue import migrate as migrations

    migrations.downgrade(_check_db(dsn or ctx.obj), revision)
    typer.echo(f"pgqueue schema downgraded to {revision}")


def _check_db(dsn: str | None) -> str:
    from pgqueue.app import probe

    resolved = resolve_dsn(dsn)
    probe(resolved)
    return resolved


# -- work -----------------------------------------------------------------------------------


def _setup_logging(level: str, fmt: str) -> None:
    from pgqueue.logs import configure

    configure(level, fmt)


@cli.command()
def work(
    app_path: Annotated[str, typer.Argument(metavar="MODULE:APP", help="Where your App is.")],
    dsn: Dsn = None,
    queues: Annotated[
        str | None, typer.Option(help="Comma-separated queues (default: all).")
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Jobs run at once per process.")] = 10,
    processes: Annotated[int, typer.Option(help="Worker processes to run.")] = 1,
    shutdown_grace: Annotated[
        float, typer.Option(help="Seconds to finish jobs on SIGTERM.")
    ] = 30.0,
    heartbeat_interval: Annotated[float, typer.Option(help="Seconds between heartbeats.")] = 5.0,
    lease: Annotated[float, typer.Option(help="Seconds of silence before rescue.")] = 30.0,
    poll_interval: Annotated[float, typer.Option(help="Safety poll, in seconds.")] = 5.0,
    log_level: Annotated[str, typer.Option(help="DEBUG logs every job outcome.")] = "INFO",
    log_format: Annotated[str, typer.Option(help="text or json.")] = "text",
    scheduler: Annotated[
        bool, typer.Option(help="Enqueue the app's periodic jobs (safe on every node).")
    ] = True,
    retain_succeeded: Annotated[
        str, typer.Option(help="Keep succeeded jobs this long (0: delete at completion).")
    ] = "1d",
    retain_cancelled: Annotated[str, typer.Option(help="Keep cancelled jobs this long.")] = "1d",
    retain_dead: Annotated[str, typer.Option(help="Keep dead jobs this long.")] = "14d",
) -> None:
    """Run a worker daemon until SIGTERM/SIGINT."""
    from pgqueue.settings import WorkerSettings
    from pgqueue.worker import run_worker

    _setup_logging(log_level, log_format)
    app = load_app(app_path)
    queue_list = tuple(q.strip() for q in queues.split(",") if q.strip()) if queues else None
    settings = WorkerSettings(
        queues=queue_list,
        concurrency=concurrency,
        shutdown_grace=shutdown_grace,
        heartbeat_interval=heartbeat_interval,
        lease=lease,
        poll_interval=poll_interval,
        scheduler=scheduler,
        retain_succeeded=parse_duration(retain_succeeded),
        retain_cancelled=parse_duration(retain_cancelled),
        retain_dead=parse_duration(retain_dead),
    )
    resolved = resolve_dsn(dsn) if dsn is not None else app.dsn
    if processes < 1:
        fail("--processes must be at least 1")
    if processes > 1:
        from pgqueue.supervisor import supervise

        raise typer.Exit(supervise(processes))
    worker = run_worker(app, settings, resolved)
    if worker.stuck_threads or any(
        t.name.startswith("pgqueue-job") and t.is_alive() for t in threading.enumerate()
    ):
        # Threads of sync handlers that ignored the shutdown cannot be joined: leave now.
        logging.shutdown()
        os._exit(0)


# -- enqueue and inspect --------------------------------------------------------------------


@cli.command()
def enqueue(
    task: Annotated[str, typer.Argument(help="Task name.")],
    dsn: Dsn = None,
    args: Annotated[str, typer.Option(help="Positional arguments, a JSON array.")] = "[]",
    kwargs: Annotated[str, typer.Option(help="Keyword arguments, a JSON object.")] = "{}",
    queue: Annotated[str | None, typer.Option(help="Queue (default: the task's).")] = None,
    priority: Annotated[int | None, typer.Option(help="Higher runs first.")] = None,
    delay: Annotated[float | None, typer.Option(help="Seconds from now.")] = None,
    unique_key: Annotated[str | None, typer.Option(help="At most one live job per key.")] = None,
    max_attempts: Annotated[int | None, typer.Option(help="Attempts before dead.")] = None,
    app_path: Annotated[
        str | None, typer.Option("--app", help="MODULE:APP to check the task name against.")
    ] = None,
    as_json: Json = False,
) -> None:
    """Insert a job; prints its id."""
    args_value = _json_arg(args, "args", list)
    kwargs_value = _json_arg(kwargs, "kwargs", dict)
    if app_path:
        app = load_app(app_path)
        if dsn is not None:
            app.dsn = resolve_dsn(dsn)
        if task not in app.tasks:
            raise UnknownTask(
                f"unknown task {task!r}; known: {', '.join(sorted(app.tasks)) or 'none'}"
            )
    else:
        app = _app(dsn)
    with app:
        job_id = app.enqueue(
            task,
            args_value,
            kwargs_value,
            queue=queue,
            priority=priority,
            delay=delay,
            unique_key=unique_key,
            max_attempts=max_attempts,
        )
    if as_json:
        _print_json({"id": job_id})
    else:
        typer.echo(job_id)


STATS_COLUMNS = [
    "queue",
    "queued",
    "scheduled",
    "running",
    "succeeded",
    "dead",
    "cancelled",
    "succeeded_5m",
    "jobs_per_s",
    "oldest_queued_age",
    "latency_p50",
    "latency_p95",
]


@cli.command()
def stats(dsn: Dsn = None, as_json: Json = False) -> None:
    """Per queue: queued, scheduled, running, dead, cancelled, succeeded in the last 5 min,
    jobs/s, oldest waiting job's age and p50/p95 enqueue-to-start latency (seconds)."""
    with _app(dsn) as app:
        rows = app.store.queue_stats()
    for row in rows:
        row["jobs_per_s"] = round(row["succeeded_5m"] / 300, 2)
        for key in ("oldest_queued_age", "latency_p50", "latency_p95"):
            if row[key] is not None:
                row[key] = round(float(row[key]), 3)
        # The names DESIGN.md's table uses, for scripts written from it.
        row["throughput"] = row["jobs_per_s"]
        row["oldest_waiting_age"] = row["oldest_queued_age"]
    if as_json:
        _print_json(rows)
    elif not rows:
        typer.echo("no jobs")
    else:
        _table(rows, STATS_COLUMNS, title="queues")


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
def queues_pause(name: str, dsn: Dsn = None) -> None:
    """Stop claiming from a queue on every node; running jobs finish."""
    with _app(dsn) as app:
        app.pause_queue(name)
    typer.echo(f"queue {name} paused")


@queues_cli.command("resume")
def queues_resume(name: str, dsn: Dsn = None) -> None:
    """Start claiming from a queue again."""
    with _app(dsn) as app:
        app.resume_queue(name)
    typer.echo(f"queue {name} resumed")


@queues_cli.command("limit")
def queues_limit(
    name: str,
    dsn: Dsn = None,
    concurrency: Annotated[
        int | None, typer.Option(help="Most jobs running at once, cluster-wide.")
    ] = None,
    rate: Annotated[int | None, typer.Option(help="Most starts per --per seconds.")] = None,
    per: Annotated[float | None, typer.Option(help="Rate window in seconds (1).")] = None,
    clear: Annotated[bool, typer.Option(help="Remove both limits.")] = False,
) -> None:
    """Set cluster-wide limits on a queue."""
    kwargs: dict[str, Any] = {}
    if clear:
        kwargs = {"concurrency": None, "rate": None}
    if concurrency is not None:
        kwargs["concurrency"] = concurrency
    if rate is not None:
        kwargs["rate"] = rate
    if not kwargs and per is None:
        fail("give --concurrency, --rate (with --per) or --clear")
    with _app(dsn) as app:
        app.set_queue_limits(name, per=per, **kwargs)
    typer.echo(f"queue {name} limits set")


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
                "retain_succeeded",
                "retain_dead",
                "retain_cancelled",
            ],
        )


@jobs_cli.command("show")
def jobs_show(job_id: int, dsn: Dsn = None, as_json: Json = False) -> None:
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
        if key != "errors":
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
    queue: Annotated[str | None, typer.Option(help="Only this queue.")] = None,
    state: Annotated[
        str | None, typer.Option(help="queued, running, succeeded, dead or cancelled.")
    ] = None,
    task: Annotated[str | None, typer.Option(help="Only this task.")] = None,
    since: Annotated[str | None, typer.Option(help="Created within this long, e.g. 1h.")] = None,
    limit: Annotated[int, typer.Option(help="Jobs per page.")] = 50,
    before_id: Annotated[int | None, typer.Option(help="Next page: the last id shown.")] = None,
    as_json: Json = False,
) -> None:
    """Jobs, newest first, with filters and paging."""
    from datetime import UTC, datetime, timedelta

    if state is not None and state not in STATES:
        fail(f"unknown state {state!r}: one of {', '.join(STATES)}")
    if limit < 1:
        fail("--limit must be at least 1")
    since_at = (
        None if since is None else datetime.now(UTC) - timedelta(seconds=parse_duration(since))
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
def jobs_cancel(job_id: int, dsn: Dsn = None) -> None:
    """Cancel a queued or running job."""
    with _app(dsn) as app:
        if not app.cancel(job_id):
            fail(f"job {job_id} is not queued or running")
    typer.echo(f"job {job_id} cancelled")


@jobs_cli.command("retry")
def jobs_retry(
    job_id: Annotated[int | None, typer.Argument(help="The job to retry.")] = None,
    dsn: Dsn = None,
    all_dead: Annotated[bool, typer.Option("--all-dead", help="Every dead job.")] = False,
    queue: Annotated[str | None, typer.Option(help="With --all-dead: only this queue.")] = None,
    as_json: Json = False,
) -> None:
    """Queue a dead or cancelled job again, or every dead job (in batches)."""
    if (job_id is None) == (not all_dead):
        fail("give a job id or --all-dead")
    with _app(dsn) as app:
        if job_id is not None:
            if not app.retry(job_id):
                fail(f"job {job_id} is not dead or cancelled")
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
    queue: Annotated[str | None, typer.Option(help="Only this queue.")] = None,
    as_json: Json = False,
) -> None:
    """Delete finished jobs, in batches that never block workers."""
    from datetime import UTC, datetime, timedelta

    if state not in ("succeeded", "dead", "cancelled"):
        fail("--state must be succeeded, dead or cancelled")
    before = datetime.now(UTC) - timedelta(seconds=parse_duration(older_than))
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
    name: str,
    dsn: Dsn = None,
    succeeded: Annotated[str | None, typer.Option(help="Keep succeeded jobs this long.")] = None,
    dead: Annotated[str | None, typer.Option(help="Keep dead jobs this long.")] = None,
    cancelled: Annotated[str | None, typer.Option(help="Keep cancelled jobs this long.")] = None,
    default: Annotated[bool, typer.Option(help="Back to the workers' defaults.")] = False,
) -> None:
    """How long a queue's finished jobs are kept (0: deleted at completion)."""
    kwargs: dict[str, Any] = {}
    if default:
        kwargs = {"succeeded": None, "dead": None, "cancelled": None}
    for key, value in (("succeeded", succeeded), ("dead", dead), ("cancelled", cancelled)):
        if value is not None:
            kwargs[key] = parse_duration(value)
    if not kwargs:
        fail("give --succeeded, --dead, --cancelled or --default")
    with _app(dsn) as app:
        app.set_queue_retention(name, **kwargs)
    typer.echo(f"queue {name} retention set")


@cli.command()
def serve(
    dsn: Dsn = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on (localhost only by default).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.", min=0, max=65535)] = 8000,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="PGQUEUE_API_TOKEN",
            help="Bearer token: needed for every request; "
            "without it the dashboard and API are read-only.",
        ),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            help="A Host name clients use, besides localhost (repeat it; `*.example.com` "
            "for a domain, `*` for any). Guards against DNS rebinding.",
        ),
    ] = None,
    max_body_size: Annotated[
        int, typer.Option(help="Largest request body, in bytes.", min=1, max=2**31 - 1)
    ] = MAX_BODY,
    insecure_no_token: Annotated[
        bool,
        typer.Option(
            "--insecure-no-token",
            help="Serve without a token on a non-loopback address: anyone who reaches it "
            "reads every job's arguments, results and errors.",
        ),
    ] = False,
) -> None:
    """Web dashboard at /, REST API under /api (OpenAPI at /openapi.json), /metrics."""
    from pgqueue.web.guard import WILDCARD_ADDRESSES, is_loopback

    if token is not None and not token.strip():
        fail("--token is empty: give a real token, or leave it out for a read-only dashboard")
    if token is None and not is_loopback(host) and not insecure_no_token:
        fail(
            f"refusing to serve job data without a token on {host}: give --token "
            "(or PGQUEUE_API_TOKEN), or --insecure-no-token if that is really meant"
        )
    hosts = tuple(allowed_host or ())
    if host not in WILDCARD_ADDRESSES:
        hosts = (*hosts, host)
    import uvicorn

    from pgqueue.web import create_app

    app = _app(dsn)
    app.store.schema_version()  # a clear error now rather than on the first request
    web = create_app(app, token=token, allowed_hosts=hosts, max_body=max_body_size)
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"pgqueue dashboard on http://{shown}:{port}/" + ("" if token else " (read-only)"))
    if host in WILDCARD_ADDRESSES and not allowed_host:
        typer.echo(
            "note: only requests to a loopback name are answered; "
            "add the names clients use with --allowed-host",
            err=True,
        )
    uvicorn.run(
        web,
        host=host,
        port=port,
        log_level="warning",
        server_header=False,
        # A reverse proxy's X-Forwarded-* is trusted from loopback only (uvicorn's default).
        h11_max_incomplete_event_size=64 * 1024,
    )


def main() -> None:
    """Entry point: run the CLI, turning pgqueue's errors into one line on stderr."""
    try:
        cli()
    except PgQueueError as exc:
        typer.echo(f"pgqueue: error: {exc}", err=True)
        sys.exit(1)
    except ConfigurationError as exc:  # pragma: no cover - ConfigurationError is a PgQueueError
        typer.echo(f"pgqueue: error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
