"""A real PostgreSQL for tests: find a server, create a migrated database, empty it."""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import sql

from pgqueue.errors import ConfigurationError

SCHEMA = "pgqueue"
VERSION_TABLE = "alembic_version"  # alembic's, kept by `migrate`: never emptied


@contextlib.contextmanager
def postgres_server(dsn: str | None = None) -> Iterator[str]:
    """Yield the DSN of a server where tests may create databases.

    `dsn` if given, else `PGQUEUE_TEST_DSN`, else an embedded PostgreSQL from the `pgserver`
    package (pgqueue's `embedded` extra), started in a temporary directory and stopped
    afterwards.
    """
    dsn = dsn or os.environ.get("PGQUEUE_TEST_DSN")
    if dsn:
        yield dsn
        return
    try:
        import pgserver
    except ImportError:
        raise ConfigurationError(
            "no database for the tests: set PGQUEUE_TEST_DSN to a PostgreSQL server where "
            "databases may be created, or install pgserver (pgqueue's embedded extra) for an "
            "embedded PostgreSQL"
        ) from None
    with tempfile.TemporaryDirectory(prefix="pgqueue-test-") as tmp:
        server = pgserver.get_server(tmp, cleanup_mode="stop")  # type: ignore[attr-defined]
        try:
            yield str(server.get_uri())
        finally:
            server.cleanup()


def with_database(dsn: str, dbname: str) -> str:
    """The same server, another database."""
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    info["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items()})


@contextlib.contextmanager
def migrated_database(server_dsn: str, *, name: str | None = None) -> Iterator[str]:
    """Create a database on `server_dsn`, apply pgqueue's migrations, yield its DSN, and
    drop it afterwards (connections still open are closed by the drop)."""
    from pgqueue import migrate

    name = name or f"pgqueue_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    ident = sql.Identifier(name)
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))
    try:
        dsn = with_database(server_dsn, name)
        migrate.upgrade(dsn)
        yield dsn
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))


def reset_database(dsn: str) -> None:
    """Empty every pgqueue table (jobs, workers, queues, schedules...), keeping the schema."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = %s AND table_type = 'BASE TABLE' AND table_name <> %s "
                "ORDER BY table_name",
                (SCHEMA, VERSION_TABLE),
            )
        ]
        if tables:
            names = sql.SQL(", ").join(sql.Identifier(SCHEMA, t) for t in tables)
            conn.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(names))


@contextlib.contextmanager
def use_database(app: Any, dsn: str) -> Iterator[Any]:
    """Point `app` at `dsn` for the duration (closing its connections before and after)."""
    app.close()
    previous = app.dsn
    app.dsn = dsn
    try:
        yield app
    finally:
        app.close()
        app.dsn = previous
