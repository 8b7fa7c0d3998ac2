"""JobStore and AsyncJobStore: the only code that executes SQL. Internal API.

Each method runs one named query from sql/queries.sql. Given a caller's connection it runs
inside the caller's transaction; otherwise it borrows a pooled connection and commits.
Driver errors become pgqueue.errors here.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString
from uuid import UUID

import orjson
import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from pgqueue.errors import (
    ConfigurationError,
    DatabaseUnavailable,
    InvalidJobState,
    PgQueueError,
    SchemaNotMigrated,
)
from pgqueue.job import Job
from pgqueue.sql import QUERIES

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job to insert, validated and serialised (args/kwargs are JSON text)."""

    task: str
    args_json: str
    kwargs_json: str
    queue: str
    priority: int
    max_attempts: int
    delay: float | None = None
    run_at: datetime | None = None
    unique_key: str | None = None
    timeout: float | None = None
    depends_on: tuple[int, ...] | None = None
    unique_for: float | None = None


@dataclass(frozen=True, slots=True)
class OutcomeRow:
    """One attempt's outcome, in the shape job_finish_many takes."""

    id: int
    attempt: int
    state: str
    result_json: str | None = None
    error_json: str | None = None
    delay: float | None = None
    refund: int = 0
    followups: tuple[JobSpec, ...] = ()
    queue: str = ""  # not written: for retention decisions after the write


class Applied(dict[int, str]):
    """The outcomes job_finish_many wrote, {job id: new state}, and whether any job waits on
    another (if none does, there are no children to settle)."""

    children_waiting: bool = False

    @classmethod
    def of(cls, rows: Sequence[Sequence[Any]]) -> Applied:
        applied = cls((r[0], r[1]) for r in rows)
        applied.children_waiting = any(r[3] for r in rows)
        return applied


def insert_params(specs: Sequence[JobSpec]) -> dict[str, str]:
    """The jobs as one JSON document (arguments embedded as they are): far cheaper to build
    and send than twelve typed arrays."""
    fragment = orjson.Fragment
    jobs = [
        {
            "queue": s.queue,
            "task": s.task,
            "args": fragment(s.args_json),
            "kwargs": fragment(s.kwargs_json),
            "priority": s.priority,
            "run_at": None if s.run_at is None else s.run_at.isoformat(),
            "delay": s.delay,
            "max_attempts": s.max_attempts,
            "unique_key": s.unique_key,
            "timeout": s.timeout,
            "depends_on": None if s.depends_on is None else list(s.depends_on),
            "unique_for": s.unique_for,
        }
        for s in specs
    ]
    return {"jobs": orjson.dumps(jobs).decode()}


def insert_one_params(spec: JobSpec) -> dict[str, Any]:
    return {
        "queue": spec.queue,
        "task": spec.task,
        "args": spec.args_json,
        "kwargs": spec.kwargs_json,
        "priority": spec.priority,
        "run_at": spec.run_at,
        "delay": spec.delay,
        "max_attempts": spec.max_attempts,
        "unique_key": spec.unique_key,
        "timeout": spec.timeout,
        "depends_on": None if spec.depends_on is None else list(spec.depends_on),
        "unique_for": spec.unique_for,
    }


def insert_query(specs: Sequence[JobSpec]) -> tuple[LiteralString, dict[str, Any]]:
    """One job: a plain INSERT; several: one statement over a JSON document, the lighter one
    when no job has a unique key (every job is then inserted). All return (id, unique_key)."""
    if len(specs) == 1:
        return QUERIES["job_insert"], insert_one_params(specs[0])
    if any(s.unique_key is not None for s in specs):
        return QUERIES["job_insert_many"], insert_params(specs)
    return QUERIES["job_insert_keyless"], insert_params(specs)


def finish_params(worker_id: UUID, rows: Sequence[OutcomeRow]) -> dict[str, Any]:
    """The batch as one JSON document: much cheaper to send than seven typed arrays."""
    fragment = orjson.Fragment
    batch = [
        {
            "id": r.id,
            "attempt": r.attempt,
            "state": r.state,
            "result": None if r.result_json is None else fragment(r.result_json),
            "error": None if r.error_json is None else fragment(r.error_json),
            "delay": r.delay,
            "refund": r.refund,
        }
        for r in rows
    ]
    return {
        "worker_id": worker_id,
        "outcomes": orjson.dumps(batch).decode(),
        "ids": [r.id for r in rows],
    }


def wrap_error(exc: Exception) -> PgQueueError | None:
    """The pgqueue error a driver error stands for, or None to let it through."""
    if isinstance(exc, PoolTimeout):
        return DatabaseUnavailable("database unavailable: no connection could be had in time")
    if isinstance(exc, pg_errors.UniqueViolation):
        return InvalidJobState(
            f"another live job holds the same unique key: {exc.diag.message_detail or exc}"
        )
    if isinstance(exc, pg_errors.UndefinedTable | pg_errors.InvalidSchemaName):
        return SchemaNotMigrated("the pgqueue schema is not migrated: run `pgqueue migrate`")
    if isinstance(exc, psycopg.OperationalError | pg_errors.AdminShutdown):
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return DatabaseUnavailable(f"database unavailable: {detail}")
    try:  # psycopg2, when a SQLAlchemy engine uses it
        import psycopg2  # type: ignore[import-untyped]

        if isinstance(exc, psycopg2.OperationalError):
            return DatabaseUnavailable(f"database unavailable: {exc}")
    except ImportError:
        pass
    return None


@contextmanager
def translate_errors() -> Iterator[None]:
    """Driver errors out as pgqueue errors (wrap_error), others as they are."""
    try:
        yield
    except Exception as exc:
        wrapped = wrap_error(exc)
        if wrapped is None:
            raise
        raise wrapped from exc


def _rows(description: Any, rows: Sequence[Sequence[Any]]) -> list[Row]:
    names = [col[0] for col in description] if description else []
    return [dict(zip(names, row, strict=True)) for row in rows]


def _ids_in_order(inserted: list[Row], existing: dict[str, int]) -> list[int]:
    """Ids for each input row: the new job's, or the existing holder of its unique_key."""
    ids: list[int] = []
    for row in inserted:
        if row["id"] is not None:
            ids.append(row["id"])
        else:
            ids.append(existing[row["unique_key"]])
    return ids


def _unique_keys(specs: Sequence[JobSpec]) -> list[str]:
    return sorted({s.unique_key for s in specs if s.unique_key is not None})


def _parents(specs: Sequence[JobSpec]) -> list[int]:
    return sorted({p for s in specs for p in (s.depends_on or ())})


def _missing_error(missing: list[int]) -> ConfigurationError:
    return ConfigurationError(f"depends_on names unknown job(s): {missing}")


def _inserted(specs: Sequence[JobSpec], rows: list[Row]) -> list[Row]:
    """job_insert returns no row on a unique conflict: make it look like job_insert_many's."""
    if len(specs) == 1 and not rows:
        return [{"id": None, "unique_key": specs[0].unique_key}]
    return rows


def _keys_taken(inserted: list[Row]) -> list[str]:
    return sorted({r["unique_key"] for r in inserted if r["id"] is None})


class JobStore:
    """Synchronous store over a psycopg pool, or a caller's DBAPI connection."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    @contextmanager
    def _cursor(self, conn: Any = None) -> Iterator[Any]:
        with translate_errors():
            if conn is None:
                with self.pool.connection() as own, own.cursor() as cur:
                    yield cur
            else:
                cur = conn.cursor()
                try:
                    yield cur
                finally:
                    cur.close()

    def _run(self, name: str, params: dict[str, Any], conn: Any = None) -> list[Row]:
        with self._cursor(conn) as cur:
            cur.execute(QUERIES[name], params)
            return _rows(cur.description, cur.fetchall() if cur.description else [])

    def job_insert_many(self, specs: Sequence[JobSpec], conn: Any = None) -> list[int]:
        if not specs:
            return []
        parents = _parents(specs)
        with self._cursor(conn) as cur:
            if parents:
                cur.execute(QUERIES["job_missing"], {"ids": parents})
                if missing := [r[0] for r in cur.fetchall()]:
                    raise _missing_error(missing)
            if keys := _unique_keys(specs):
                cur.execute(QUERIES["job_release_unique"], {"unique_keys": keys})
            # Unique-key holders are looked up in the same transaction; if one finished in
            # between, the insert is simply tried again.
            for _ in range(5):
                cur.execute(*insert_query(specs))
                inserted = _inserted(specs, _rows(cur.description, cur.fetchall()))
                if parents:
                    # Parents that already finished free (or cancel) their children now.
                    cur.execute(QUERIES["job_settle_children"], {"parents": parents})
                taken = _keys_taken(inserted)
                if not taken:
                    return [r["id"] for r in inserted]
                cur.execute(QUERIES["job_find_unique"], {"unique_keys": taken})
                existing = {r[0]: r[1] for r in cur.fetchall()}
                if set(taken) <= set(existing):
                    return _ids_in_order(inserted, existing)
        raise PgQueueError("could not insert jobs: their unique keys kept changing hands")

    def job_get(self, job_id: int, conn: Any = None) -> Job | None:
        rows = self._run("job_get", {"id": job_id}, conn)
        return Job.from_row(rows[0]) if rows else None

    def job_outcome(self, job_id: int) -> Row | None:
        rows = self._run("job_outcome", {"id": job_id})
        return rows[0] if rows else None

    def job_cancel(self, job_id: int, reason: str | None = None, conn: Any = None) -> str | None:
        rows = self._run("job_cancel", {"id": job_id, "reason": reason}, conn)
        if rows and rows[0]["state"] == "queued":
            self._run("job_settle_children", {"parents": [job_id]}, conn)
        return rows[0]["state"] if rows else None

    def job_retry(self, job_id: int, conn: Any = None) -> bool:
        return bool(self._run("job_retry", {"id": job_id}, conn))

    def queue_stats(self) -> list[Row]:
        return self._run("queue_stats", {})

    def throughput(self, minutes: int = 60) -> list[Row]:
        return self._run("throughput", {"minutes": minutes})

    def metrics_jobs(self) -> list[Row]:
        return self._run("metrics_jobs", {})

    def metrics_recent(self) -> list[Row]:
        return self._run("metrics_recent", {})

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

    def job_retry_dead(self, queue: str | None = None, batch: int = 1000) -> int:
        """Re-queue one batch of dead jobs; returns how many (0: done)."""
        return len(self._run("job_retry_dead", {"queue": queue, "batch": batch}))

    def queue_set(self, name: str, **settings: Any) -> Row:
        params = {
            "name": name,
            "paused": settings.get("paused"),
            "concurrency_limit": settings.get("concurrency_limit"),
            "set_concurrency": "concurrency_limit" in settings,
            "rate_limit": settings.get("rate_limit"),
            "set_rate": "rate_limit" in settings,
            "rate_period": settings.get("rate_period"),
        }
        for state in ("succeeded", "dead", "cancelled"):
            params[f"retain_{state}"] = settings.get(f"retain_{state}")
            params[f"set_retain_{state}"] = f"retain_{state}" in settings
        return self._run("queue_set", params)[0]

    def queue_config(self) -> list[Row]:
        return self._run("queue_config", {})

    def schedule_list(self) -> list[Row]:
        return self._run("schedule_list", {})

    def worker_list(self) -> list[Row]:
        return self._run("worker_list", {})

    def schema_version(self) -> str | None:
        rows = self._run("schema_version", {})
        return rows[0]["version_num"] if rows else None


class AsyncJobStore:
    """The asyncio twin of JobStore, also used by the worker."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    @asynccontextmanager
    async def _cursor(self, conn: Any = None) -> AsyncIterator[Any]:
        with translate_errors():
            if conn is None:
                async with self.pool.connection() as own, own.cursor() as cur:
                    yield cur
            else:
                async with conn.cursor() as cur:
                    yield cur

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Any]:
        """A cursor in a transaction of its own on a pooled connection."""
        with translate_errors():
            async with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                yield cur

    async def _run(self, name: str, params: dict[str, Any], conn: Any = None) -> list[Row]:
        async with self._cursor(conn) as cur:
            await cur.execute(QUERIES[name], params)
            return _rows(cur.description, await cur.fetchall() if cur.description else [])

    async def _tuples(
        self, name: LiteralString, params: dict[str, Any], prepare: bool | None = None
    ) -> list[tuple[Any, ...]]:
        async with self._cursor() as cur:
            await cur.execute(QUERIES[name], params, prepare=prepare)
            return list(await cur.fetchall()) if cur.description else []

    async def job_insert_many(self, specs: Sequence[JobSpec], conn: Any = None) -> list[int]:
        if not specs:
            return []
        parents = _parents(specs)
        async with self._cursor(conn) as cur:
            if parents:
                await cur.execute(QUERIES["job_missing"], {"ids": parents})
                if missing := [r[0] for r in await cur.fetchall()]:
                    raise _missing_error(missing)
            if keys := _unique_keys(specs):
                await cur.execute(QUERIES["job_release_unique"], {"unique_keys": keys})
            for _ in range(5):
                await cur.execute(*insert_query(specs))
                inserted = _inserted(specs, _rows(cur.description, await cur.fetchall()))
                if parents:
                    await cur.execute(
                        QUERIES["job_settle_children"], {"parents": parents}, prepare=False
                    )
                taken = _keys_taken(inserted)
                if not taken:
                    return [r["id"] for r in inserted]
                await cur.execute(QUERIES["job_find_unique"], {"unique_keys": taken})
                existing = {r[0]: r[1] for r in await cur.fetchall()}
                if set(taken) <= set(existing):
                    return _ids_in_order(inserted, existing)
        raise PgQueueError("could not insert jobs: their unique keys kept changing hands")

    async def job_get(self, job_id: int, conn: Any = None) -> Job | None:
        rows = await self._run("job_get", {"id": job_id}, conn)
        return Job.from_row(rows[0]) if rows else None

    async def job_outcome(self, job_id: int) -> Row | None:
        rows = await self._run("job_outcome", {"id": job_id})
        return rows[0] if rows else None

    async def job_cancel(
        self, job_id: int, reason: str | None = None, conn: Any = None
    ) -> str | None:
        rows = await self._run("job_cancel", {"id": job_id, "reason": reason}, conn)
        if rows and rows[0]["state"] == "queued":
            await self._run("job_settle_children", {"parents": [job_id]}, conn)
        return rows[0]["state"] if rows else None

    async def job_retry(self, job_id: int, conn: Any = None) -> bool:
        return bool(await self._run("job_retry", {"id": job_id}, conn))

    async def schema_version(self) -> str | None:
        rows = await self._run("schema_version", {})
        return rows[0]["version_num"] if rows else None

    # The worker's queries: tuples, not dicts, on the hot path.

    async def job_claim(
        self, worker_id: UUID, queues: Sequence[str] | None, limit: int, now: datetime | None = None
    ) -> list[tuple[Any, ...]]:
        params = {"worker_id": worker_id, "queues": queues, "limit": limit, "now": now}
        return await self._tuples("job_claim", params)

    async def job_claim_limited(
        self, worker_id: UUID, queues: Sequence[str] | None, limit: int, now: datetime | None = None
    ) -> list[tuple[Any, ...]]:
        """Claim from queues with cluster-wide limits: lock them, then claim within budget."""
        async with self._transaction() as cur:
            await cur.execute(QUERIES["queue_lock_limited"], {"queues": queues})
            names = [r[0] for r in await cur.fetchall()]
            if not names:
                return []
            params = {"worker_id": worker_id, "queues": names, "limit": limit, "now": now}
            await cur.execute(QUERIES["job_claim_limited"], params)
            return list(await cur.fetchall())

    async def schedule_register(
        self, sched: Any, last_fire_at: datetime, next_fire_at: datetime
    ) -> None:
        params = {
            "name": sched.name,
            "task": sched.task,
            "cron": sched.cron,
            "timezone": sched.timezone,
            "args": dumps(sched.args),
            "kwargs": dumps(sched.kwargs),
            "queue": sched.queue,
            "priority": sched.priority,
            "last_fire_at": last_fire_at,
            "next_fire_at": next_fire_at,
        }
        await self._tuples("schedule_register", params)

    async def schedule_fire(
        self, name: str, fire_at: datetime, next_fire_at: datetime, spec: JobSpec
    ) -> int | None:
        """Enqueue `spec` for this fire time unless some node already did; the job id."""
        async with self._transaction() as cur:
            params = {"name": name, "fire_at": fire_at, "next_fire_at": next_fire_at}
            await cur.execute(QUERIES["schedule_claim_fire"], params)
            if not await cur.fetchall():
                return None
            await cur.execute(QUERIES["job_insert"], insert_one_params(spec))
            row = await cur.fetchone()
            job_id: int | None = row[0] if row else None
            await cur.execute(QUERIES["schedule_set_job"], {"name": name, "job_id": job_id})
            return job_id

    async def queue_config(self) -> list[tuple[Any, ...]]:
        return await self._tuples("queue_config", {})

    async def job_next_run_at(
        self, queues: Sequence[str] | None, now: datetime | None = None
    ) -> float | None:
        rows = await self._tuples("job_next_run_at", {"queues": queues, "now": now})
        return rows[0][0] if rows else None

    async def job_finish_many(self, worker_id: UUID, rows: Sequence[OutcomeRow]) -> Applied:
        """Write outcomes; returns {id: new state} for those applied."""
        # Prepared: planning the statement costs more than running it for a batch. Its shape
        # keeps every plan to a primary-key lookup per outcome.
        params = finish_params(worker_id, rows)
        if not any(r.followups for r in rows):
            return Applied.of(await self._tuples("job_finish_many", params))
        # Follow-ups enqueued by handlers commit with their parent's success, or not at all.
        async with self._transaction() as cur:
            await cur.execute(QUERIES["job_finish_many"], params)
            applied = Applied.of(await cur.fetchall())
            specs = [spec for r in rows if applied.get(r.id) == "succeeded" for spec in r.followups]
            if specs:
                await self.job_insert_many(specs, conn=cur.connection)
            return applied

    async def job_settle_children(self, parents: Sequence[int] | None) -> tuple[int, int]:
        """Free or cancel the children of these finished jobs (None: sweep every waiting
        job); returns (cancelled, released)."""
        params = {"parents": None if parents is None else list(parents)}
        rows = await self._tuples("job_settle_children", params)
        return (rows[0][0], rows[0][1]) if rows else (0, 0)

    async def job_prune(self, retention: dict[str, float], horizon: float, batch: int) -> int:
        """Delete one batch of jobs past their retention; returns how many."""
        params = {**retention, "horizon": horizon, "batch": batch}
        return len(await self._tuples("job_prune", params, prepare=False))

    async def job_delete_finished(self, ids: Sequence[int]) -> None:
        await self._tuples("job_delete_finished", {"ids": list(ids)})

    async def job_rescue_lost(self, now: datetime | None = None) -> list[tuple[Any, ...]]:
        """Rescue the jobs of lost workers; returns (id, new state, _) per job."""
        return await self._tuples("job_rescue_lost", {"now": now})

    async def worker_prune(self, now: datetime | None = None) -> int:
        return len(await self._tuples("worker_prune", {"now": now}))

    async def worker_register(
        self,
        worker_id: UUID,
        host: str,
        pid: int,
        queues: Sequence[str] | None,
        concurrency: int,
        lease: float,
    ) -> None:
        params = {
            "id": worker_id,
            "host": host,
            "pid": pid,
            "queues": list(queues or ["*"]),
            "concurrency": concurrency,
            "lease": lease,
        }
        await self._tuples("worker_register", params)

    async def worker_heartbeat(self, worker_id: UUID) -> bool:
        return bool(await self._tuples("worker_heartbeat", {"id": worker_id}))

    async def worker_unregister(self, worker_id: UUID) -> None:
        await self._tuples("worker_unregister", {"id": worker_id})

    async def worker_offer_slots(
        self, worker_id: UUID, queues: Sequence[str] | None, slots: Sequence[int], lock_id: int
    ) -> None:
        params = {"id": worker_id, "queues": queues, "slots": list(slots), "lock_id": lock_id}
        await self._tuples("worker_offer_slots", params)

    async def worker_withdraw_slots(self, worker_id: UUID) -> set[int]:
        """Take back offered slots; returns those that stay offered (being taken now)."""
        rows = await self._tuples("worker_withdraw_slots", {"id": worker_id})
        return {int(r[0]) for r in rows}

    async def worker_drop_slots(self, worker_id: UUID, wait: float) -> None:
        """Take back every slot, waiting up to `wait` seconds for producers holding one."""
        async with self._transaction() as cur:
            await cur.execute(f"SET LOCAL lock_timeout = '{int(wait * 1000)}ms'")
            await cur.execute(QUERIES["worker_drop_slots"], {"id": worker_id})

    async def job_running_for(
        self, worker_id: UUID, ids: Sequence[int] | None = None
    ) -> list[tuple[Any, ...]]:
        params = {"id": worker_id, "ids": None if ids is None else list(ids)}
        return await self._tuples("job_running_for", params)


_PLAIN = frozenset({str, int, bool, type(None)})


def dumps(value: Any) -> str:
    """JSON text for PostgreSQL's jsonb: strict (no NaN), compact."""
    # The common case, a list of plain values (or no kwargs), goes through orjson; anything
    # else through json, whose rules (NaN refused, big integers) are the reference.
    kind = type(value)
    if (kind is list and all(type(v) in _PLAIN for v in value)) or (kind is dict and not value):
        try:
            return orjson.dumps(value).decode()
        except orjson.JSONEncodeError:
            pass  # an integer beyond 64 bits, a lone surrogate: json says what to do
    return json.dumps(value, allow_nan=False, separators=(",", ":"))
