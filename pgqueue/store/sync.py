"""JobStore: the synchronous store, for producers and admin commands. Internal API."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg import pq
from psycopg_pool import ConnectionPool

from pgqueue import stats
from pgqueue.job import Job
from pgqueue.sql import QUERIES
from pgqueue.store import idle, plans
from pgqueue.store.errors import producer_rights, translate_errors
from pgqueue.store.params import JobSpec

Row = dict[str, Any]


def as_dicts(description: Any, rows: Sequence[Sequence[Any]]) -> list[Row]:
    names = [col[0] for col in description] if description else []
    return [dict(zip(names, row, strict=True)) for row in rows]


def queue_set_params(name: str, settings: dict[str, Any]) -> dict[str, Any]:
    """queue_set changes only the settings given (a key present with None removes it)."""
    params = {
        "name": name,
        "paused": settings.get("paused"),
        "concurrency_limit": settings.get("concurrency_limit"),
        "set_concurrency": "concurrency_limit" in settings,
        "rate_limit": settings.get("rate_limit"),
        "set_rate": "rate_limit" in settings,
        "rate_period": settings.get("rate_period"),
        "per_key_limit": settings.get("per_key_limit"),
        "set_per_key": "per_key_limit" in settings,
    }
    for state in ("succeeded", "dead", "cancelled"):
        params[f"retain_{state}"] = settings.get(f"retain_{state}")
        params[f"set_retain_{state}"] = f"retain_{state}" in settings
    return params


def drive_on(plan: plans.Plan, cur: Any) -> Any:
    """Run a plan's statements on a (sync) cursor; the plan's result."""
    try:
        step = next(plan)
        while True:
            if isinstance(step, plans.Reported):
                notes: list[tuple[Any, Any]] = []
                keep = heard(notes)
                cur.connection.add_notice_handler(keep)
                try:
                    cur.execute(step.query, step.params)
                finally:
                    cur.connection.remove_notice_handler(keep)
                step = plan.send(notes)
                continue
            if isinstance(step, plans.CopyIn):
                with cur.copy(step.query) as copy:
                    for data in step.data:
                        copy.write(data)
                step = plan.send([])
                continue
            cur.execute(*step)
            step = plan.send(list(cur.fetchall()) if cur.description else [])
    except StopIteration as done:
        return done.value


def heard(notes: list[tuple[Any, Any]]) -> Any:
    """A notice handler that keeps each notice's message and detail in `notes`."""

    def keep(diag: Any) -> None:
        notes.append((diag.message_primary, diag.message_detail))

    return keep


def enqueue_plan(specs: Sequence[JobSpec], cur: Any) -> plans.Plan:
    """plans.job_enqueue for what this cursor's connection is and can do."""
    conn = cur.connection
    info = getattr(conn, "info", None)
    who = (
        (info.host, info.port, info.dbname, info.user)
        if info is not None and hasattr(info, "user")
        else (id(conn),)
    )
    notices = hasattr(conn, "add_notice_handler")  # psycopg 3 (psycopg2 keeps a list)
    return plans.job_enqueue(specs, who, copies_on(cur), alone(conn), notices)


def copies_on(cur: Any) -> bool:
    """Whether jobs can be copied in on this cursor: psycopg 3 (psycopg2 has no binary
    COPY), with the client encoding the rows are encoded in."""
    return isinstance(cur, psycopg.Cursor | psycopg.AsyncCursor) and (
        cur.connection.info.encoding == "utf-8"
    )


def alone(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """Whether each statement on `conn` is a transaction of its own (autocommit, and no
    transaction open)."""
    return conn.autocommit and conn.info.transaction_status == pq.TransactionStatus.IDLE


class JobStore:
    """Synchronous store over a psycopg pool, or a caller's DBAPI connection."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    @contextmanager
    def _cursor(self, conn: Any = None, timeout: float | None = None) -> Iterator[Any]:
        """A cursor on `conn`, else on a pooled connection (waiting `timeout` at most for
        one; None: the pool's own timeout)."""
        with translate_errors():
            if conn is None:
                with idle.live(self.pool, timeout) as own, own.cursor() as cur:
                    yield cur
            else:
                cur = conn.cursor()
                try:
                    yield cur
                finally:
                    cur.close()

    def _run(
        self, name: str, params: dict[str, Any], conn: Any = None, timeout: float | None = None
    ) -> list[Row]:
        with self._cursor(conn, timeout) as cur:
            cur.execute(QUERIES[name], params)
            return as_dicts(cur.description, cur.fetchall() if cur.description else [])

    def _drive(self, plan: plans.Plan, conn: Any = None) -> Any:
        """Run a plan's statements on one connection, in one transaction."""
        with self._cursor(conn) as cur:
            return drive_on(plan, cur)

    def job_insert_many(self, specs: Sequence[JobSpec], conn: Any = None) -> list[int]:
        """Insert jobs (see plans.job_enqueue); ids in input order."""
        with producer_rights(), self._cursor(conn) as cur:
            ids: list[int] = drive_on(enqueue_plan(specs, cur), cur)
            return ids

    def job_cancel(self, job_id: int, reason: str | None = None, conn: Any = None) -> str | None:
        state: str | None = self._drive(plans.job_cancel(job_id, reason), conn)
        return state

    def job_get(self, job_id: int, conn: Any = None) -> Job | None:
        rows = self._run("job_get", {"id": job_id}, conn)
        return Job.from_row(rows[0]) if rows else None

    def job_outcome(self, job_id: int, timeout: float | None = None) -> Row | None:
        rows = self._run("job_outcome", {"id": job_id}, timeout=timeout)
        return rows[0] if rows else None

    def job_retry(self, job_id: int, conn: Any = None) -> bool:
        retried: bool = self._drive(plans.job_retry(job_id), conn)
        return retried

    def queue_stats(self) -> list[Row]:
        return [stats.queue_row(r) for r in self._run("queue_stats", {})]

    def throughput(self, minutes: int = 60) -> list[Row]:
        return [stats.throughput_row(r) for r in self._run("throughput", {"minutes": minutes})]

    def stats_compact(self) -> Row:
        """Fold the counted changes into the statistics rollups (maintenance does it)."""
        return self._run("stats_compact", {})[0]

    def task_unserved(self) -> list[Row]:
        return self._run("task_unserved", {})

    def metrics_jobs(self) -> list[Row]:
        return self._run("metrics_jobs", {})

    def metrics_recent(self) -> list[Row]:
        return self._run("metrics_recent", {})

    def metrics_lifetime(self) -> list[Row]:
        return self._run("metrics_lifetime", {})

    def job_list(self, **filters: Any) -> list[Row]:
        params = {k: filters.get(k) for k in ("queue", "state", "task", "since", "before_id")}
        params["limit"] = filters.get("limit", 50)
        return self._run("job_list", params)

    def job_purge(
        self, state: str, before: datetime, queue: str | None = None, batch: int = 1000
    ) -> int:
        """Delete one batch; returns how many went (0: done)."""
        params = {"state": state, "before": before, "queue": queue, "batch": batch}
        return len(self._run("job_purge", params))

    def job_retry_dead(
        self, queue: str | None = None, batch: int = 1000, after: int = 0
    ) -> tuple[int, int | None]:
        """Re-queue the dead jobs among the next `batch` after id `after`: how many, and the
        id to go on after (None: done)."""
        done: tuple[int, int | None] = self._drive(plans.job_retry_dead(queue, batch, after))
        return done

    def queue_set(self, name: str, **settings: Any) -> Row:
        return self._run("queue_set", queue_set_params(name, settings))[0]

    def queue_config(self) -> list[Row]:
        return self._run("queue_config", {})

    def schedule_list(self) -> list[Row]:
        return self._run("schedule_list", {})

    def server_health(self) -> Row:
        return self._run("server_health", {})[0]

    def task_list(self) -> list[Row]:
        return self._run("task_list", {})

    def worker_list(self) -> list[Row]:
        return self._run("worker_list", {})

    def schema_version(self) -> str | None:
        rows = self._run("schema_version", {})
        return rows[0]["version_num"] if rows else None
