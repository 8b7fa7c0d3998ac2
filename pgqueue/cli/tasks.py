"""`pgqueue tasks`: the tasks workers serve, their declared defaults, and which wait."""

from __future__ import annotations

import typer

from pgqueue.cli.base import Dsn, Json, _app, _print_json, _table, cli

TASK_COLUMNS = ["name", "queue", "priority", "max_attempts", "timeout", "workers", "due", "running"]


@cli.command()
def tasks(dsn: Dsn = None, as_json: Json = False) -> None:
    """Tasks declared by workers (their defaults) or waiting in the queue, the live workers
    that serve each, and their due and running jobs. Due jobs of a task no live worker
    serves wait for one that has it."""
    with _app(dsn) as app:
        rows = app.store.task_list()
    if as_json:
        _print_json(rows)
        return
    if not rows:
        typer.echo("no tasks")
        return
    _table(rows, TASK_COLUMNS)
    for row in rows:
        if row["due"] and not row["workers"]:
            typer.echo(f"no worker serves task {row['name']}: {row['due']} job(s) wait for one")
