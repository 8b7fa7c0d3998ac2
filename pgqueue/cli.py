"""The `pgqueue` command: a thin typer layer over the library.

Whatever the input, a failure is one line on stderr (`pgqueue: error: ...`) and a non-zero
exit: 2 for a usage error, 1 for the rest. Values are checked here before the database sees
them (numbers within PostgreSQL's integer types, finite durations, text PostgreSQL can store),
so the database's own errors are left for what only it can know.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal, NoReturn, TypeVar

import typer
from typer._click import exceptions as click  # typer vendors click since 0.28
from typer.core import TyperGroup

from pgqueue.app import App, resolve_dsn
from pgqueue.durations import parse_duration
from pgqueue.errors import ConfigurationError, PgQueueError, UnknownTask

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

INT4 = 2**31 - 1
INT8 = 2**63 - 1
MAX_BODY = 1024 * 1024  # pgqueue.web.guard.MAX_BODY, without importing the web stack
MAX_DURATION = 100 * 365 * 86400.0  # seconds: durations beyond a century are typos
MAX_DELAY = 10 * 365 * 86400.0  # as the REST API
MAX_NAME = 200  # queue names; the insert trigger sends them in a NOTIFY (8,000 bytes at most)
MAX_TEXT = 500  # task names, unique keys
MAX_JSON_DEPTH = 100


class OneLineErrors(TyperGroup):
    """The root command: turns every failure into one line on stderr, a traceback into
    nothing (`PGQUEUE_TRACEBACK=1` shows it, for a bug report)."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        try:
            _check_argv(argv)
            code = super().main(argv, prog_name, complete_var, False, windows_expand_args, **extra)
        except click.NoArgsIsHelpError as exc:
            exc.show()
            code = exc.exit_code
        except click.UsageError as exc:
            hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
            code = _one_line(exc.format_message() + hint, exc.exit_code)
        except click.ClickException as exc:
            code = _one_line(exc.format_message(), exc.exit_code)
        except typer.Abort:
            code = _one_line("aborted", 1)
        except PgQueueError as exc:
            code = _one_line(str(exc), 1)
        except KeyboardInterrupt:
            code = 130
        except Exception as exc:
            if os.environ.get("PGQUEUE_TRACEBACK"):
                raise
            code = _one_line(_describe(exc), 1)
        if not standalone_mode:
            return code
        sys.exit(code or 0)


def _one_line(message: str, code: int) -> int:
    text = " ".join(message.split()) or "failed"
    typer.echo(f"pgqueue: error: {text}", err=True)
    return code


def _describe(exc: BaseException) -> str:
    """One line for an error nobody planned for: its kind and the first line of its text."""
    import psycopg

    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, psycopg.Error):
        state = f" [{exc.sqlstate}]" if getattr(exc, "sqlstate", None) else ""
        return f"the database refused it{state}: {first or type(exc).__name__}"
    if isinstance(exc, MemoryError):
        return "out of memory"
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _check_argv(argv: list[str]) -> None:
    """Every argument must be text PostgreSQL can store: UTF-8 (a shell passes any bytes,
    which Python keeps as surrogates) and no NUL character."""
    for i, arg in enumerate(argv, 1):
        if "\x00" in arg:
            raise click.UsageError(f"argument {i} holds a NUL character")
        try:
            arg.encode()
        except UnicodeEncodeError:
            raise click.UsageError(f"argument {i} is not valid UTF-8 text") from None


def _text(what: str, limit: int) -> Callable[[str | None], str | None]:
    """A typer callback refusing empty or over-long text."""

    def check(value: str | None) -> str | None:
        if value is None:
            return None
        if not value:
            raise typer.BadParameter(f"{what} must not be empty")
        if len(value.encode()) > limit:
            raise typer.BadParameter(f"{what} is longer than {limit} bytes")
        return value

    return check


def _number(
    low: float, high: float, *, open_low: bool = False
) -> Callable[[float | None], float | None]:
    """A typer callback for a float option: finite (no nan, no inf) and within bounds."""

    def check(value: float | None) -> float | None:
        if value is None:
            return None
        if not math.isfinite(value):
            raise typer.BadParameter(f"{value} is not a finite number")
        if value < low or (open_low and value == low) or value > high:
            bound = f"> {low:g}" if open_low else f">= {low:g}"
            raise typer.BadParameter(f"{value:g} is out of range: {bound} and <= {high:g}")
        return value

    return check


def _dsn(value: str | None) -> str | None:
    """Refuse a DSN that libpq cannot parse, before anything tries to connect with it."""
    if value is None:
        return None
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    if "\x00" in value:
        raise typer.BadParameter("holds a NUL character")
    try:
        value.encode()
        conninfo_to_dict(value)
    except UnicodeEncodeError:
        raise typer.BadParameter("is not valid UTF-8 text") from None
    except ProgrammingError as exc:
        raise typer.BadParameter(" ".join(str(exc).split())) from None
    return value


def duration(text: str, what: str, limit: float = MAX_DURATION) -> float:
    """Seconds in a duration like `7d`, refused when it is no real length of time."""
    seconds = parse_duration(text)
    if not math.isfinite(seconds) or seconds > limit:
        raise ConfigurationError(f"{what} {text!r} is too long: at most {limit / 86400:g} days")
    return seconds


cli = typer.Typer(
    name="pgqueue",
    cls=OneLineErrors,
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
        callback=_dsn,
        help="PostgreSQL DSN or URL (else PGQUEUE_DSN, DATABASE_URL, libpq's PG*).",
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
JobId = Annotated[int, typer.Argument(min=1, max=INT8, metavar="JOB_ID", help="The job's id.")]
QueueName = Annotated[str, typer.Argument(callback=_text("queue name", MAX_NAME))]
QueueOption = Annotated[
    str | None, typer.Option(help="Only this queue.", callback=_text("--queue", MAX_NAME))
]
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
    def no_constant(name: str) -> Any:
        fail(f"--{what} holds {name}: JSON has no such number")

    try:
        value = json.loads(text, parse_constant=no_constant)
    except json.JSONDecodeError as exc:
        fail(f"--{what} is not valid JSON: {exc}")
    except RecursionError:
        fail(f"--{what} cannot be read: nested more than {MAX_JSON_DEPTH} levels deep")
    except ValueError as exc:  # a number of more than 4,300 digits
        fail(f"--{what} cannot be read: {' '.join(str(exc).split())}")
    if not isinstance(value, kind):
        fail(f"--{what} must be a JSON {'array' if kind is list else 'object'}")
    _check_json(value, what)
    return value


def _check_json(value: Any, what: str) -> None:
    """Refuse what PostgreSQL's jsonb cannot hold: NUL characters (`\\u0000`), lone
    surrogates (`\\ud800`), numbers that do not fit in 64 bits or a double, deep nesting."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            fail(f"--{what} is nested more than {MAX_JSON_DEPTH} levels deep")
        if isinstance(item, str):
            _check_json_text(item, what)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not -(2**63) <= item <= INT8:
                fail(f"--{what} holds an integer that does not fit in 64 bits")
        elif isinstance(item, float):
            if not math.isfinite(item):
                fail(f"--{what} holds a number too large for a double")
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, dict):
            for key, v in item.items():
                _check_json_text(key, what)
                stack.append((v, depth + 1))


def _check_json_text(text: str, what: str) -> None:
    if "\x00" in text:
        fail(f"--{what} holds a NUL character (\\u0000), which PostgreSQL cannot store")
    try:
        text.encode()
    except UnicodeEncodeError:
        fail(f"--{what} holds a lone surrogate (like \\ud800): not valid Unicode text")


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
    resolved = _check_db(dsn)
    _alembic(lambda: migrations.upgrade(resolved))
    typer.echo(f"pgqueue schema at revision {migrations.head_revision()}")


@migrate_cli.command("downgrade")
def migrate_downgrade(
    ctx: typer.Context,
    revision: Annotated[
        str,
        typer.Argument(
            help="Target revision; `base` removes everything.", callback=_text("REVISION", 100)
        ),
    ],
    dsn: Dsn = None,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes", help="Drop the jobs table even if it holds jobs, under live workers."
        ),
    ] = False,
) -> None:
    """Migrate the pgqueue schema down to REVISION."""
    from pgqueue import migrate as migrations

    resolved = _check_db(dsn or ctx.obj)
    plan = _alembic(lambda: migrations.downgrade_plan(resolved, revision))
    risks = []
    if plan.jobs:
        risks.append(f"deletes the {plan.jobs} job(s) in pgqueue.jobs")
    if plan.live_workers:
        risks.append(f"{plan.live_workers} worker(s) are running on this schema")
    if risks and not yes:
        message = f"downgrade to {revision} " + " and ".join(risks)
        if sys.stdin.isatty() and typer.confirm(f"{message}. Go on?", err=True):
            pass
        else:
            fail(f"{message}: run it again with --yes to go ahead")
    _alembic(lambda: migrations.downgrade(resolved, revision))
    typer.echo(f"pgqueue schema downgraded to {revision}")


@migrate_cli.command("roles")
def migrate_roles(
    ctx: typer.Context,
    dsn: Dsn = None,
    sql: Annotated[
        bool, typer.Option("--sql", help="Print the SQL instead of running it.")
    ] = False,
) -> None:
    """Create the group roles pgqueue_producer, pgqueue_worker and pgqueue_observer (if
    missing) and grant each what it needs; needs CREATEROLE. Run it again after a migration."""
    from pgqueue import migrate as migrations

    if sql:
        typer.echo(migrations.ROLES_SQL.strip())
        return
    migrations.create_roles(_check_db(dsn or ctx.obj))
    typer.echo("roles pgqueue_producer, pgqueue_worker and pgqueue_observer granted")


def _alembic(step: Callable[[], T]) -> T:
    """Run an alembic step, its own errors (an unknown revision...) as one line."""
    from alembic.script.revision import RevisionError
    from alembic.util import CommandError

    try:
        return step()
    except (CommandError, RevisionError) as exc:
        fail(" ".join(str(exc).split()))


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
        str | None,
        typer.Option(
            help="Comma-separated queues (default: all).",
            callback=_text("--queues", 100 * MAX_NAME),
        ),
    ] = None,
    concurrency: Annotated[
        int, typer.Option(help="Jobs run at once per process.", min=1, max=10_000)
    ] = 10,
    processes: Annotated[int, typer.Option(help="Worker processes to run.", min=1, max=1024)] = 1,
    shutdown_grace: Annotated[
        float,
        typer.Option(help="Seconds to finish jobs on SIGTERM.", callback=_number(0, 7 * 86400)),
    ] = 30.0,
    heartbeat_interval: Annotated[
        float,
        typer.Option(help="Seconds between heartbeats.", callback=_number(0, 3600, open_low=True)),
    ] = 5.0,
    lease: Annotated[
        float,
        typer.Option(
            help="Seconds of silence before rescue.", callback=_number(0, 86400, open_low=True)
        ),
    ] = 30.0,
    poll_interval: Annotated[
        float,
        typer.Option(help="Safety poll, in seconds.", callback=_number(0, 3600, open_low=True)),
    ] = 5.0,
    log_level: Annotated[
        Literal["DEBUG", "INFO", "WARNING", "ERROR"],
        typer.Option(help="DEBUG logs every job outcome.", case_sensitive=False),
    ] = "INFO",
    log_format: Annotated[Literal["text", "json"], typer.Option(help="text or json.")] = "text",
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

    _setup_logging(log_level.upper(), log_format)
    app = load_app(app_path)
    queue_list = tuple(q.strip() for q in queues.split(",") if q.strip()) if queues else None
    for name in queue_list or ():
        _text("a queue in --queues", MAX_NAME)(name)
    settings = WorkerSettings(
        queues=queue_list,
        concurrency=concurrency,
        shutdown_grace=shutdown_grace,
        heartbeat_interval=heartbeat_interval,
        lease=lease,
        poll_interval=poll_interval,
        scheduler=scheduler,
        retain_succeeded=duration(retain_succeeded, "--retain-succeeded"),
        retain_cancelled=duration(retain_cancelled, "--retain-cancelled"),
        retain_dead=duration(retain_dead, "--retain-dead"),
    )
    resolved = resolve_dsn(dsn) if dsn is not None else app.dsn
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
    task: Annotated[str, typer.Argument(help="Task name.", callback=_text("task", MAX_TEXT))],
    dsn: Dsn = None,
    args: Annotated[str, typer.Option(help="Positional arguments, a JSON array.")] = "[]",
    kwargs: Annotated[str, typer.Option(help="Keyword arguments, a JSON object.")] = "{}",
    queue: Annotated[
        str | None,
        typer.Option(help="Queue (default: the task's).", callback=_text("--queue", MAX_NAME)),
    ] = None,
    priority: Annotated[
        int | None, typer.Option(help="Higher runs first.", min=-INT4 - 1, max=INT4)
    ] = None,
    delay: Annotated[
        float | None, typer.Option(help="Seconds from now.", callback=_number(0, MAX_DELAY))
    ] = None,
    unique_key: Annotated[
        str | None,
        typer.Option(
            help="At most one live job per key.", callback=_text("--unique-key", MAX_TEXT)
        ),
    ] = None,
    max_attempts: Annotated[
        int | None, typer.Option(help="Attempts before dead.", min=1, max=INT4)
    ] = None,
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
def jobs_cancel(job_id: JobId, dsn: Dsn = None) -> None:
    """Cancel a queued or running job."""
    with _app(dsn) as app:
        if not app.cancel(job_id):
            fail(f"job {job_id} is not queued or running")
    typer.echo(f"job {job_id} cancelled")


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
    """How long a queue's finished jobs are kept (0: deleted at completion)."""
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

    listening = _listen(host, port)
    try:
        app = _app(dsn)
        app.store.schema_version()  # a clear error now rather than on the first request
    except BaseException:
        listening.close()
        raise
    web = create_app(app, token=token, allowed_hosts=hosts, max_body=max_body_size)
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"pgqueue dashboard on http://{shown}:{port}/" + ("" if token else " (read-only)"))
    if host in WILDCARD_ADDRESSES and not allowed_host:
        typer.echo(
            "note: only requests to a loopback name are answered; "
            "add the names clients use with --allowed-host",
            err=True,
        )
    config = uvicorn.Config(
        web,
        log_level="warning",
        server_header=False,
        # Reverse proxies' X-Forwarded-* are trusted from loopback only (uvicorn's default).
        h11_max_incomplete_event_size=64 * 1024,
    )
    uvicorn.Server(config).run(sockets=[listening])


def _listen(host: str, port: int) -> Any:
    """A listening socket on host:port, or one clear line when that cannot be."""
    import socket

    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, _, _, _, address = infos[0]
        return socket.create_server(address, family=family, backlog=2048)
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        fail(f"cannot listen on {host}:{port}: {reason}")


def main() -> None:
    """Entry point (`pgqueue`): errors come out as one line, see OneLineErrors."""
    cli()


if __name__ == "__main__":
    main()
