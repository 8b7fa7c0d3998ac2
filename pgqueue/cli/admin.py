"""`pgqueue migrate`: apply, review, downgrade the schema; create the database roles."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated

import typer

from pgqueue.cli.base import (
    Dsn,
    T,
    _text,
    command_line_dsn,
    fail,
    migrate_cli,
    require_dsn,
)


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

    # The subcommands take --dsn and --sql here too (`pgqueue migrate --sql downgrade REV`).
    ctx.obj = {"dsn": dsn, "sql": sql}
    if ctx.invoked_subcommand is not None:
        return
    if sql:
        # From the database's revision when one is named (its version table is already
        # there: the SQL from an empty database would fail on it), else from nothing.
        current = _current_revision(dsn)
        typer.echo(_alembic(lambda: migrations.upgrade_sql(current=current)))
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
    sql: Annotated[
        bool,
        typer.Option(
            "--sql",
            help="Print the SQL instead of running it: from the database's revision when a "
            "DSN is given (--dsn, PGQUEUE_DSN, DATABASE_URL), else from the latest.",
        ),
    ] = False,
) -> None:
    """Migrate the pgqueue schema down to REVISION."""
    from pgqueue import migrate as migrations

    dsn = _subcommand_dsn(ctx, dsn)
    if sql or ctx.obj["sql"]:
        typer.echo(_alembic(lambda: migrations.downgrade_sql(revision, _revision_of(dsn))))
        return
    resolved = _check_db(dsn)
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

    if sql or ctx.obj["sql"]:
        typer.echo(migrations.ROLES_SQL.strip())
        return
    migrations.create_roles(_check_db(_subcommand_dsn(ctx, dsn)))
    typer.echo("roles pgqueue_producer, pgqueue_worker and pgqueue_observer granted")


def _subcommand_dsn(ctx: typer.Context, dsn: str | None) -> str | None:
    """The subcommand's own --dsn, else the one given to `pgqueue migrate` (which falls back
    to the environment): `PGQUEUE_DSN=a pgqueue migrate --dsn b downgrade` acts on b."""
    return command_line_dsn(dsn) or ctx.obj["dsn"]


def _current_revision(dsn: str | None) -> str | None:
    """The revision of the database `dsn` names (or the environment's); None when no
    database is named or it is not migrated."""
    from pgqueue import migrate as migrations
    from pgqueue.app import probe
    from pgqueue.dsn import no_target, resolve_dsn
    from pgqueue.errors import DatabaseUnavailable

    resolved = resolve_dsn(dsn)
    if no_target(resolved):
        return None
    try:
        probe(resolved)
    except DatabaseUnavailable as exc:
        # Printing SQL needs no database: say whose revision it starts from.
        typer.echo(f"pgqueue: {exc}: the SQL from an empty database follows", err=True)
        return None
    return _alembic(lambda: migrations.downgrade_plan(resolved, "base")).current


def _revision_of(dsn: str | None) -> str:
    """The revision of the database `dsn` names (or the environment's), else the latest."""
    from pgqueue import migrate as migrations
    from pgqueue.dsn import resolve_dsn

    resolved = resolve_dsn(dsn)
    if not resolved:
        return migrations.head_revision()
    current = _alembic(lambda: migrations.downgrade_plan(_check_db(resolved), "base")).current
    if current is None:
        fail("the pgqueue schema is not migrated: there is nothing to downgrade")
    return current


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

    resolved = require_dsn(dsn)
    probe(resolved)
    return resolved


# -- work -----------------------------------------------------------------------------------
