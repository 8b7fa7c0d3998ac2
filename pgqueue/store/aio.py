"""AsyncJobStore: the asyncio store, for asyncio producers and the worker. Internal API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from typing import Any, LiteralString
from uuid import UUID

import orjson
from psycopg_pool import AsyncConnectionPool

from pgqueue.errors import SchemaNotMigrated
from pgqueue.job import Job
from pgqueue.sql import QUERIES
from pgqueue.store import idle, plans
from pgqueue.store.errors import producer_rights, translate_errors
from pgqueue.store.params import (
    Applied,
    JobSpec,
    OutcomeRow,
    claimed_job,
    dumps,
    finish_params,
    insert_one_params,
)
from pgqueue.store.single import SingleConnection
from pgqueue.store.sync import Row, as_dicts, enqueue_plan, heard

PER_KEY_WALK = 1000  # keys a per-key claim looks at, at most (see pgqueue.claim_limited)
KEYLESS_SCAN = 50  # due jobs of a per-key queue read to find those without a key


# Where a claim of one queue starts: (rank, run_at, id) in the claim index's order (rank is
# -priority). START is before any job.
ClaimPosition = tuple[int, datetime, int]
START: ClaimPosition = (-(2**63), datetime.min.replace(tzinfo=UTC), 0)


def position(job: Job) -> ClaimPosition:
    """A job's place in the claim order."""
    return (-job.priority, job.run_at, job.id)


def claim_params(
    worker_id: UUID,
    queues: Sequence[str] | None,
    limit: int,
    now: datetime | None,
    tasks: Sequence[str] | None,
) -> dict[str, Any]:
    """The parameters job_claim and job_claim_limited share."""
    return {
        "worker_id": worker_id,
        "queues": queues,
        "limit": limit,
        "now": now,
        "tasks": None if tasks is None else list(tasks),
    }


class AsyncJobStore:
    """The asyncio twin of JobStore, also used by the worker."""

    def __init__(self, pool: AsyncConnectionPool | SingleConnection) -> None:
        self.pool = pool

    def _connection(self, timeout: float | None = None) -> AbstractAsyncContextManager[Any]:
        # A SingleConnection sees for itself that its server closed it.
        if isinstance(self.pool, SingleConnection):
            return self.pool.connection()
        return idle.live_async(self.pool, timeout)

    @asynccontextmanager
    async def _cursor(self, conn: Any = None, timeout: float | None = None) -> AsyncIterator[Any]:
        with translate_errors():
            if conn is None:
                async with self._connection(timeout) as own, own.cursor() as cur:
                    yield cur
            else:
                async with conn.cursor() as cur:
                    yield cur

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Any]:
        """A cursor in a transaction of its own on a pooled connection."""
        with translate_errors():
            async with self._connection() as conn, conn.transaction(), conn.cursor() as cur:
                yield cur

    async def _run(
        self, name: str, params: dict[str, Any], conn: Any = None, timeout: float | None = None
    ) -> list[Row]:
        async with self._cursor(conn, timeout) as cur:
            await cur.execute(QUERIES[name], params)
            return as_dicts(cur.description, await cur.fetchall() if cur.description else [])

    async def _tuples(
        self, name: LiteralString, params: dict[str, Any], prepare: bool | None = None
    ) -> list[tuple[Any, ...]]:
        async with self._cursor() as cur:
            await cur.execute(QUERIES[name], params, prepare=prepare)
            return list(await cur.fetchall()) if cur.description else []

    async def _drive(self, plan: plans.Plan, conn: Any = None) -> Any:
        """Run a plan's statements on one connection (in a transaction when it is ours)."""
        if conn is None:
            async with self._transaction() as cur:
                return await self._drive_on(plan, cur)
        async with self._cursor(conn) as cur:
            return await self._drive_on(plan, cur)

    @staticmethod
    async def _drive_on(plan: plans.Plan, cur: Any) -> Any:
        try:
            step = next(plan)
            while True:
                if isinstance(step, plans.Reported):
                    notes: list[tuple[Any, Any]] = []
                    keep = heard(notes)
                    cur.connection.add_notice_handler(keep)
                    try:
                        await cur.execute(step.query, step.params)
                    finally:
                        cur.connection.remove_notice_handler(keep)
                    step = plan.send(notes)
                    continue
                if isinstance(step, plans.CopyIn):
                    async with cur.copy(step.query) as copy:
                        for data in step.data:
                            await copy.write(data)
                    step = plan.send([])
                    continue
                await cur.execute(*step)
                step = plan.send(list(await cur.fetchall()) if cur.description else [])
        except StopIteration as done:
            return done.value

    # -- producers and admin ------------------------------------------------------------------

    async def job_insert_many(self, specs: Sequence[JobSpec], conn: Any = None) -> list[int]:
        """Insert jobs (see plans.job_enqueue); ids in input order. Each statement on a
        connection of ours is a transaction of its own, as in JobStore (one round trip for
        the usual one-statement enqueue)."""
        with producer_rights():
            async with self._cursor(conn) as cur:
                ids: list[int] = await self._drive_on(enqueue_plan(specs, cur), cur)
                return ids

    async def job_cancel(
        self, job_id: int, reason: str | None = None, conn: Any = None
    ) -> str | None:
        state: str | None = await self._drive(plans.job_cancel(job_id, reason), conn)
        return state

    async def job_get(self, job_id: int, conn: Any = None) -> Job | None:
        rows = await self._run("job_get", {"id": job_id}, conn)
        return Job.from_row(rows[0]) if rows else None

    async def job_outcome(self, job_id: int, timeout: float | None = None) -> Row | None:
        rows = await self._run("job_outcome", {"id": job_id}, timeout=timeout)
        return rows[0] if rows else None

    async def job_retry(self, job_id: int, conn: Any = None) -> bool:
        retried: bool = await self._drive(plans.job_retry(job_id), conn)
        return retried

    async def schema_version(self) -> str | None:
        rows = await self._run("schema_version", {})
        return rows[0]["version_num"] if rows else None

    async def worker_schema_fits(self, worker_id: UUID, needs: str) -> None:
        """Raise SchemaNotMigrated unless the schema is at revision `needs` or later, and
        the server can plan (not run) the statements by which a worker records what it
        did: a schema that lacks a column or table they name fails here, at start, saying
        what is missing, rather than at every outcome. (The revision alone cannot tell a
        schema changed by hand, or migrated by a build whose migration differed.)"""
        version = await self.schema_version()
        if version is None or version < needs:
            at = "is not migrated" if version is None else f"is at revision {version}"
            raise SchemaNotMigrated(
                f"the pgqueue schema {at} and this worker needs {needs}: run `pgqueue migrate`"
            )
        checks: list[tuple[LiteralString, dict[str, Any]]] = [
            ("job_finish_many", finish_params(worker_id, [])),
            ("job_running_here", {"worker_id": worker_id}),
            ("stats_compact", {}),
        ]
        async with self._cursor() as cur:
            for name, params in checks:
                await cur.execute("EXPLAIN " + QUERIES[name], params)

    # -- the worker: tuples or named types, never dicts, on the hot path -------------------------

    async def job_claim(
        self,
        worker_id: UUID,
        queues: Sequence[str] | None,
        limit: int,
        now: datetime | None = None,
        tasks: Sequence[str] | None = None,
        after: ClaimPosition | None = None,
    ) -> list[Job]:
        """Claim up to `limit` due jobs of `queues` and `tasks` (None: any). A claim of one
        queue starts its walk at `after` (see job_claim_queue), else at the start."""
        params = claim_params(worker_id, queues, limit, now, tasks)
        query = "job_claim"
        if queues is not None and len(queues) == 1:
            query, params["queue"] = "job_claim_queue", queues[0]
            rank, run_at, job_id = after or START
            params.update(after_rank=rank, after_run_at=run_at, after_id=job_id)
        return [claimed_job(r, worker_id) for r in await self._tuples(query, params)]

    async def job_claim_limited(
        self,
        worker_id: UUID,
        queues: Sequence[str] | None,
        limit: int,
        now: datetime | None = None,
        tasks: Sequence[str] | None = None,
    ) -> list[Job]:
        """Claim from the queues of `queues` (None: all) that have cluster-wide limits, within
        their budgets: one call of pgqueue.claim_limited, which locks them first."""
        params = claim_params(worker_id, queues, limit, now, tasks)
        params.update(keys=PER_KEY_WALK, keyless_scan=KEYLESS_SCAN)
        return [claimed_job(r, worker_id) for r in await self._tuples("claim_limited", params)]

    async def job_next_run_at(
        self,
        queues: Sequence[str] | None,
        now: datetime | None = None,
        tasks: Sequence[str] | None = None,
    ) -> float | None:
        params = {"queues": queues, "now": now, "tasks": None if tasks is None else list(tasks)}
        rows = await self._tuples("job_next_run_at", params)
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
                await self._drive_on(plans.job_insert_many(specs), cur)
            return applied

    async def job_running_here(
        self, worker_id: UUID
    ) -> list[tuple[int, int, str, datetime | None]]:
        """(job id, attempt, queue, started_at) of the attempts the table says run for this
        worker."""
        rows = await self._tuples("job_running_here", {"worker_id": worker_id})
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    async def job_cancel_requests(self, worker_id: UUID) -> list[tuple[int, int]]:
        """(job id, attempt) of this worker's running attempts that were asked to cancel."""
        rows = await self._tuples("job_cancel_requests", {"worker_id": worker_id})
        return [(r[0], r[1]) for r in rows]

    async def worker_waiting(self, worker_id: UUID, waiting: bool) -> None:
        """Say whether this worker waits for jobs (inserts wake it only then)."""
        await self._tuples("worker_waiting", {"id": worker_id, "waiting": waiting})

    async def job_settle_children(
        self, parents: Sequence[int] | None, after: int | None = None, newest: bool = False
    ) -> tuple[int, int, int | None, int]:
        """Free or cancel the children of these finished jobs (None: a page of the waiting
        jobs with ids above `after`, or with `newest` the newest waiting jobs); returns
        (cancelled, released, last id seen, seen)."""
        params = {
            "parents": None if parents is None else list(parents),
            "after": after,
            "newest": newest,
        }
        rows = await self._tuples("job_settle_children", params)
        if not rows:
            return 0, 0, None, 0
        cancelled, released, _, last_id, seen = rows[0]
        return cancelled, released, last_id, seen

    async def job_prune(
        self, retention: dict[str, float], state: str, horizon: float, batch: int
    ) -> int:
        """Delete one batch of jobs finished in `state` past their retention; how many."""
        params = {**retention, "state": state, "horizon": horizon, "batch": batch}
        return len(await self._tuples("job_prune", params, prepare=False))

    async def job_delete_finished(self, ids: Sequence[int]) -> None:
        await self._tuples("job_delete_finished", {"ids": list(ids)})

    async def stats_compact(self) -> Row:
        """Fold the counted changes into the statistics rollups; how many rows moved."""
        return (await self._run("stats_compact", {}))[0]

    async def job_rescue_lost(
        self, me: UUID | None, now: datetime | None = None
    ) -> list[tuple[int, str]]:
        """Rescue the jobs of lost workers (never `me`'s); (id, new state) per job."""
        rows = await self._tuples("job_rescue_lost", {"me": me, "now": now})
        return [(r[0], r[1]) for r in rows]

    async def worker_prune(self, me: UUID | None, now: datetime | None = None) -> int:
        return len(await self._tuples("worker_prune", {"me": me, "now": now}))

    async def worker_register(
        self,
        worker_id: UUID,
        host: str,
        pid: int,
        queues: Sequence[str] | None,
        concurrency: int,
        lease: float,
        tasks: Sequence[str] | None = None,
        version: str | None = None,
    ) -> None:
        """Register (or register again) a worker, serving `tasks` (None: any), running
        pgqueue `version`."""
        params = {
            "id": worker_id,
            "host": host,
            "pid": pid,
            "queues": list(queues or ["*"]),
            "concurrency": concurrency,
            "lease": lease,
            "tasks": None if tasks is None else list(tasks),
            "version": version,
        }
        await self._tuples("worker_register", params)

    async def task_register(self, tasks: Sequence[dict[str, Any]]) -> None:
        """Declare tasks and their defaults: name, queue, priority, max_attempts, timeout."""
        if tasks:
            await self._tuples("task_register", {"tasks": orjson.dumps(list(tasks)).decode()})

    async def worker_heartbeat(self, worker_id: UUID) -> bool:
        """False if this worker's row is gone: it was declared lost."""
        return bool(await self._tuples("worker_heartbeat", {"id": worker_id}))

    async def worker_unregister(self, worker_id: UUID) -> None:
        await self._tuples("worker_unregister", {"id": worker_id})

    async def queue_config(self) -> list[tuple[Any, ...]]:
        return await self._tuples("queue_config", {})

    # -- schedules ------------------------------------------------------------------------------

    async def schedule_register(
        self, sched: Any, last_fire_at: datetime, next_fire_at: datetime
    ) -> datetime | None:
        """Declare a schedule; returns the last fire time recorded for it (new: the given)."""
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
        rows = await self._tuples("schedule_register", params)
        return rows[0][0] if rows else None

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

    # -- progress and tracing -------------------------------------------------------------------

    async def job_progress_many(self, worker_id: UUID, reports: str) -> list[int]:
        """Store progress reports (JSON: id, attempt, progress, message) of attempts this
        worker still runs; returns the ids written."""
        rows = await self._tuples("job_progress_many", {"worker_id": worker_id, "reports": reports})
        return [r[0] for r in rows]

    async def job_trace_context(self, job_id: int) -> Any:
        """The trace context stored with a job at enqueue (None: none)."""
        rows = await self._tuples("job_trace_context", {"id": job_id})
        return rows[0][0] if rows else None
