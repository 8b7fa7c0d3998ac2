"""Administrative SQL: fresh databases per system, and counters polled during runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from benchlib.dsn import with_dbname


def recreate_database(server_dsn: str, name: str) -> str:
    """Drop and create database `name`; return a DSN pointing at it."""
    drop_database(server_dsn, name)
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_dbname(server_dsn, name)


def drop_database(server_dsn: str, name: str) -> None:
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def server_version(server_dsn: str) -> str:
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "unknown"


# Server settings that change what a drain costs, recorded with every backlog run.
SETTINGS = (
    "autovacuum",
    "shared_buffers",
    "max_wal_size",
    "checkpoint_timeout",
    "synchronous_commit",
    "fsync",
)


def server_settings(server_dsn: str) -> dict[str, str]:
    """The SETTINGS as the server reports them (`SHOW`), e.g. {"autovacuum": "on"}."""
    found: dict[str, str] = {}
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        for name in SETTINGS:
            row = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()
            found[name] = str(row[0]) if row else "unknown"
    return found


def count(dsn: str, query: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return _count(conn, query)


def _count(conn: psycopg.Connection[Any], query: str) -> int:
    row = conn.execute(query).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


@dataclass
class Progress:
    """What a poll loop saw: when the first job and the last one finished, peak in flight."""

    done: int = 0
    peak_in_flight: int = 0
    first_done_at: float | None = None
    finished_at: float | None = None


@dataclass(frozen=True)
class Probe:
    """The counters polled while a worker runs, each a `SELECT count(*)` on the system's tables."""

    done_sql: str
    in_flight_sql: str
    failed_sql: str


class ScenarioError(RuntimeError):
    """A scenario could not complete (timeout, failed jobs, dead worker)."""


def wait_for_count(
    dsn: str,
    probe: Probe,
    target: int,
    timeout: float,
    alive: Callable[[], bool],
    interval: float = 0.05,
) -> Progress:
    """Poll every `interval` seconds until `probe.done_sql` reaches `target`.

    Failures and the worker's liveness are checked about once a second.
    """
    deadline = time.monotonic() + timeout
    progress = Progress()
    with psycopg.connect(dsn, autocommit=True) as conn:
        tick = 0
        while True:
            progress.done = _count(conn, probe.done_sql)
            now = time.monotonic()
            if progress.done > 0 and progress.first_done_at is None:
                progress.first_done_at = now
            if progress.done >= target:
                progress.finished_at = now
                return progress
            in_flight = _count(conn, probe.in_flight_sql)
            progress.peak_in_flight = max(progress.peak_in_flight, in_flight)
            if tick % 20 == 0 or now > deadline:
                _check_health(conn, probe.failed_sql, alive, progress, now > deadline, timeout)
            tick += 1
            time.sleep(interval)


def _check_health(
    conn: psycopg.Connection[Any],
    failed_sql: str,
    alive: Callable[[], bool],
    progress: Progress,
    expired: bool,
    timeout: float,
) -> None:
    failed = _count(conn, failed_sql)
    if failed:
        raise ScenarioError(f"{failed} jobs failed ({progress.done} succeeded)")
    if not alive():
        raise ScenarioError(f"worker exited early ({progress.done} jobs done)")
    if expired:
        raise ScenarioError(f"timed out after {timeout:.0f}s ({progress.done} jobs done)")
