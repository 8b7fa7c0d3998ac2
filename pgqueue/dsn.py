"""Where the database is: the DSN a user means, and a quick check that it answers."""

from __future__ import annotations

import os

import psycopg

from pgqueue.errors import DatabaseUnavailable
from pgqueue.store import wrap_error


def resolve_dsn(dsn: str | None) -> str:
    """The DSN given, else PGQUEUE_DSN, else DATABASE_URL, else "" (libpq's PG* variables)."""
    if dsn is not None:
        return dsn
    return os.environ.get("PGQUEUE_DSN") or os.environ.get("DATABASE_URL") or ""


def probe(dsn: str, timeout: int = 10) -> None:
    """Fail fast, with libpq's reason, when the database cannot be reached at all."""
    try:
        psycopg.connect(dsn, connect_timeout=timeout, autocommit=True).close()
    except psycopg.Error as exc:
        wrapped = wrap_error(exc)
        raise (wrapped or DatabaseUnavailable(f"database unavailable: {exc}")) from None
