"""`pgqueue queues ...`: pause, resume, limits and retention of a queue, on every node."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pgqueue.cli.base import (
    INT4,
    Dsn,
    Json,
    QueueName,
    _app,
    _number,
    _print_json,
    _table,
    duration,
    fail,
    queues_cli,
)


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
