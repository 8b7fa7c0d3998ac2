"""`pgqueue work` and `pgqueue enqueue`."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Annotated, Literal

import typer

from pgqueue.cli.base import (
    INT4,
    MAX_DELAY,
    MAX_NAME,
    MAX_TEXT,
    Dsn,
    Json,
    _app,
    _delay,
    _json_arg,
    _number,
    _print_json,
    _text,
    cli,
    command_line_dsn,
    duration,
    load_app,
    require_dsn,
)
from pgqueue.errors import UnknownTask


@cli.command()
def work(
    app_path: Annotated[
        str,
        typer.Argument(
            metavar="MODULE[:APP]", help="Where your App is (just MODULE: the App it holds)."
        ),
    ],
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
        typer.Option(
            help="INFO: a line per job outcome (succeeded, snoozed, cancelled), failures at "
            "WARNING; WARNING: failures and trouble only; DEBUG: more detail.",
            case_sensitive=False,
        ),
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
    pooler: Annotated[
        bool,
        typer.Option(
            envvar="PGQUEUE_POOLER",
            show_envvar=True,
            help="The DSN is a pooler in transaction mode (pgbouncer): no prepared statements "
            "or session state; LISTEN over --listen-dsn, else poll.",
        ),
    ] = False,
    listen_dsn: Annotated[
        str | None,
        typer.Option(
            envvar="PGQUEUE_LISTEN_DSN",
            show_envvar=True,
            help="Where to LISTEN when the DSN is a pooler: PostgreSQL directly, or a "
            "session-mode pool (implies --pooler).",
        ),
    ] = None,
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
        pooler=pooler,
        listen_dsn=listen_dsn or None,
    )
    if settings.pooled:
        app.pooler = True  # the app's own connections too (a handler's enqueues)
    # --dsn, else the App's own (given in code, or read from the environment when it was
    # made): the handlers' enqueues go to the database the worker serves.
    resolved = app.dsn = require_dsn(command_line_dsn(dsn) or app.dsn or dsn)
    if processes > 1:
        from pgqueue.supervisor import supervise

        raise typer.Exit(supervise(processes))
    worker = run_worker(app, settings, resolved)
    # The handlers' idle threads end a moment after their pool's shutdown: wait for them
    # (briefly), so that a clean stop runs the process's exit handlers (an OpenTelemetry
    # exporter's last batch of spans, say) rather than leaving by os._exit.
    deadline = time.monotonic() + 2.0
    for thread in threading.enumerate():
        if thread.name.startswith("pgqueue-job"):
            thread.join(max(0.0, deadline - time.monotonic()))
    if (
        worker.stuck_threads
        or worker.abandoned_tasks
        or any(t.name.startswith("pgqueue-job") and t.is_alive() for t in threading.enumerate())
    ):
        # Threads of sync handlers that ignored the shutdown cannot be joined, nor tasks that
        # swallowed their cancellation: leave now.
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
        str | None,
        typer.Option(
            help="From now: seconds, or 90s, 10m, 2h, 7d.",
            metavar="<duration>",
            callback=_delay(MAX_DELAY),
        ),
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
        app.dsn = require_dsn(command_line_dsn(dsn) or app.dsn or dsn)
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
            delay=None if delay is None else float(delay),  # seconds, from _delay
            unique_key=unique_key,
            max_attempts=max_attempts,
        )
    if as_json:
        _print_json({"id": job_id})
    else:
        typer.echo(job_id)


def _setup_logging(level: str, fmt: str) -> None:
    from pgqueue.logs import configure

    configure(level, fmt)
