"""The `pgqueue` command: a thin typer layer over the library.

Whatever the input, a failure is one line on stderr (`pgqueue: error: ...`) and a non-zero
exit: 2 for a usage error, 1 for the rest. Values are checked here before the database sees
them (numbers within PostgreSQL's integer types, finite durations, text PostgreSQL can store),
so the database's own errors are left for what only it can know.

This module: the typer apps, option types and the checks every command shares.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from typer._click import exceptions as click  # typer vendors click since 0.28
from typer.core import TyperGroup

from pgqueue.app import App, resolve_dsn
from pgqueue.dsn import no_target
from pgqueue.durations import parse_duration
from pgqueue.errors import ConfigurationError, PgQueueError

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
        sqlstate = getattr(exc, "sqlstate", None)
        state = f" [{sqlstate}]" if sqlstate else ""
        said = f"the database refused it{state}: {first or type(exc).__name__}"
        if sqlstate in ("42P05", "26000") and "_pg3_" in first:  # sessions that change
            said += " (behind a transaction pooler such as pgbouncer? give --pooler, and "
            said += "--listen-dsn with a direct DSN for wake-ups)"
        return said
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


def _delay(high: float) -> Callable[[str | None], float | None]:
    """A typer callback for a delay: seconds (`90`, `1.5`) or a duration (`10m`, `2h`, `7d`),
    as --since and --older-than take them, up to `high` seconds."""

    def check(value: str | None) -> float | None:
        if value is None:
            return None
        try:
            return duration(value, "delay", high)
        except ConfigurationError as exc:
            raise typer.BadParameter(str(exc)) from None

    return check


def _dsn(value: str | None) -> str | None:
    """Refuse a DSN that libpq cannot parse, before anything tries to connect with it."""
    if value is None:
        return None
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    from pgqueue.dsn import resolve_dsn

    if "\x00" in value:
        raise typer.BadParameter("holds a NUL character")
    value = resolve_dsn(value)  # a SQLAlchemy URL without its driver, as the App reads it
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


# Plain help, not Rich's boxes: a box cut to 80 columns (or a pipe's default width) ended
# option names with an ellipsis (`--heartbeat-inter…`), and Rich's help alone took 0.1 s to
# import.
PLAIN: Any = None
cli = typer.Typer(
    name="pgqueue",
    rich_markup_mode=PLAIN,
    cls=OneLineErrors,
    help="A durable job queue on PostgreSQL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
migrate_cli = typer.Typer(
    rich_markup_mode=PLAIN,
    help="Apply pgqueue's schema migrations (alembic).",
    invoke_without_command=True,
)
jobs_cli = typer.Typer(
    rich_markup_mode=PLAIN, help="Inspect and act on jobs.", no_args_is_help=True
)
queues_cli = typer.Typer(
    rich_markup_mode=PLAIN,
    help="Queue settings, on every node: pause and resume, concurrency and rate limits, "
    "how long finished jobs are kept.",
    no_args_is_help=True,
)
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


def command_line_dsn(dsn: str | None) -> str | None:
    """`dsn` if it was given as --dsn on this command's line, None if it came from the
    environment: an App's own DSN, or the `--dsn` of `pgqueue migrate` before a subcommand,
    must beat PGQUEUE_DSN and DATABASE_URL, not lose to them."""
    from typer._click.core import ParameterSource
    from typer._click.globals import get_current_context

    ctx = get_current_context(silent=True)
    if ctx is None or ctx.get_parameter_source("dsn") is ParameterSource.COMMANDLINE:
        return dsn
    return None


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
    """Import `module:attribute` and return the App there; given only `module`, the one App
    the module holds (none, or several, is an error naming what was found)."""
    module_name, colon, attr = path.partition(":")
    if not module_name or (colon and not attr):
        fail(f"invalid app path {path!r}: expected module:attribute")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        fail(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}")
    if not attr:
        found = sorted(n for n, v in vars(module).items() if isinstance(v, App))
        if len(found) != 1:
            what = f"{len(found)} pgqueue.Apps ({', '.join(found)})" if found else "no pgqueue.App"
            fail(f"module {module_name!r} holds {what}: name one as {module_name}:ATTRIBUTE")
        attr = found[0]
    obj = getattr(module, attr, None)
    if not isinstance(obj, App):
        fail(f"{path!r} is not a pgqueue.App (found {type(obj).__name__})")
    return obj


def require_dsn(dsn: str | None) -> str:
    """The DSN to use: --dsn, PGQUEUE_DSN, DATABASE_URL, else libpq's PG* variables. With none
    of them set, one line saying where it looked: libpq's own defaults (a local socket, a
    database named after the OS user) are rarely the database meant."""
    resolved = resolve_dsn(dsn)
    if no_target(resolved):
        fail(
            "no database given: --dsn, PGQUEUE_DSN and DATABASE_URL are unset, and so are "
            "libpq's PGHOST, PGDATABASE and PGSERVICE"
        )
    return resolved


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
    return App(require_dsn(dsn))


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, default=_json_value, indent=2))


def _json_value(value: Any) -> Any:
    """Timestamps as the REST API writes them (ISO 8601, `T`, `Z` for UTC), so that a script
    reads `--json` and `/api` output with the same parser; anything else as its text."""
    if isinstance(value, datetime):
        text = (value.astimezone(UTC) if value.tzinfo else value).isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    return str(value)


def _widest(texts: list[str]) -> int:
    return max(len(line) for text in texts for line in text.splitlines() or [""])


def _table(rows: list[dict[str, Any]], columns: list[str], title: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, header_style="bold")
    for column in columns:
        numeric = bool(rows) and isinstance(rows[0].get(column), int | float)
        table.add_column(column, justify="right" if numeric else "left")
    cells = [["" if row.get(c) is None else str(row.get(c)) for c in columns] for row in rows]
    for line in cells:
        table.add_row(*line)
    # Wide enough for every cell: piped to grep or a file, a value cut short ("reports.he…")
    # is a value lost. A terminal narrower than that folds long cells instead.
    needed = 4 + sum(3 + _widest([c, *(line[i] for line in cells)]) for i, c in enumerate(columns))
    width = needed if not sys.stdout.isatty() else None
    Console(width=width).print(table)


# -- migrate --------------------------------------------------------------------------------
