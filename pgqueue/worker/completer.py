"""Writes attempt outcomes in batches: one statement for many jobs, retried while the
database is away. A batch is capped in rows and in bytes; an outcome the database refuses
is written on its own, as `dead` with a readable error, and never holds up the others."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

from pgqueue.errors import SchemaNotMigrated
from pgqueue.job import Cancelled, Failed, Job, Outcome, Released, Snoozed, Succeeded
from pgqueue.store import Applied, AsyncJobStore, JobSpec, OutcomeRow, dumps, is_unavailable
from pgqueue.store.errors import first_line
from pgqueue.worker.outage import Outage

log = logging.getLogger("pgqueue.worker")
FINAL = frozenset({"succeeded", "dead", "cancelled"})
BATCH_BYTES = 16 * 2**20  # an outcome batch stays well under jsonb's 255 MB per document
MAX_RESULT_BYTES = 64 * 2**20  # a bigger result is refused: the job ends dead, saying why


def outcome_row(job: Job, outcome: Outcome, followups: Sequence[JobSpec] = ()) -> OutcomeRow:
    """The database change an outcome stands for (follow-ups only go with a success)."""

    def row(state: str, **fields: Any) -> OutcomeRow:
        # Named by its attempt and its claim's start (see OutcomeRow.started).
        return OutcomeRow(
            job.id, job.attempts, state, queue=job.queue, started=job.started_at, **fields
        )

    if type(outcome) is Succeeded and outcome.result_json is None:
        # The common case first, without the pattern matching below.
        return row("succeeded", followups=tuple(followups))
    match outcome:
        case Succeeded(result_json) if (
            result_json is not None and len(result_json) > MAX_RESULT_BYTES
        ):
            error = {
                "attempt": job.attempts,
                "error": f"ResultTooLarge: the result is {len(result_json):,} bytes of JSON; "
                f"at most {MAX_RESULT_BYTES:,} are stored (keep big data elsewhere)",
            }
            return row("dead", error_json=dumps(error))
        case Succeeded(result_json):
            return row("succeeded", result_json=result_json, followups=tuple(followups))
        case Failed(error, None):
            return row("dead", error_json=dumps(error))
        case Failed(error, retry_in):
            return row("queued", error_json=dumps(error), delay=retry_in)
        case Snoozed(delay) | Released(delay):
            return row("queued", delay=delay, refund=1)
        case Cancelled(reason):
            error = {"attempt": job.attempts, "error": f"Cancelled: {reason}"}
            return row("cancelled", error_json=dumps(error))
    raise TypeError(f"not an outcome: {outcome!r}")


class Completer:
    """Buffers outcomes and writes them with job_finish_many, as fast as the database takes.

    While one batch is being written the next one accumulates, so the batch size follows the
    load without a timer. If the database is away, the buffer is kept and written when it
    is back; outcomes are never dropped while the process lives.
    """

    def __init__(
        self,
        store: AsyncJobStore,
        worker_id: UUID,
        batch: int = 500,
        on_written: Callable[[], None] = lambda: None,
        delete_now: Callable[[str, str], bool] = lambda state, queue: False,
        outage: Outage | None = None,
    ) -> None:
        self.store = store
        self.outage = outage or Outage()
        self.delete_now = delete_now
        self.on_written = on_written
        self.worker_id = worker_id
        self.batch = batch
        self._pending: list[OutcomeRow] = []
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.rejected = 0
        self.written = 0

    def put(self, row: OutcomeRow) -> None:
        self._pending.append(row)
        self._idle.clear()
        self._ready.set()

    @property
    def backlog(self) -> int:
        return len(self._pending)

    def pending(self) -> set[tuple[int, int]]:
        """(job id, attempt) of the outcomes not written yet (the batch in flight included)."""
        return {(row.id, row.attempt) for row in self._pending}

    def _next_batch(self) -> list[OutcomeRow]:
        """The oldest outcomes, up to `batch` rows and BATCH_BYTES (at least one row)."""
        size = 0
        for n, row in enumerate(self._pending[: self.batch]):
            size += row.size
            if size > BATCH_BYTES and n > 0:
                return self._pending[:n]
        return self._pending[: self.batch]

    async def run(self) -> None:
        backoff = 0.05
        while True:
            await self._ready.wait()
            if not self._pending:
                self._ready.clear()
                self._idle.set()
                continue
            rows = self._next_batch()
            try:
                applied = await self._write(rows)
            except SchemaNotMigrated as exc:
                # The schema went back under this worker (a downgrade, a restore): what the
                # attempts came to is kept until it is migrated again; claims stop at the
                # backlog's bound meanwhile (Claimer.free).
                log.error("%s; %d outcome(s) kept", exc, len(self._pending))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                log.log(
                    self.outage.level(exc),
                    "%s; %d outcome(s) kept, retrying in %.1fs",
                    first_line(exc),
                    len(self._pending),
                    backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.05
            self.outage.answered()
            del self._pending[: len(rows)]
            self.written += len(applied)
            self.on_written()
            await self._settle_children(applied)
            await self._delete_finished(rows, applied)
            if len(applied) != len(rows):
                lost = [r.id for r in rows if r.id not in applied]
                self.rejected += len(lost)
                log.warning(
                    "outcome of job(s) %s not recorded: no longer running this "
                    "attempt here (rescued or cancelled meanwhile)",
                    lost,
                )

    async def recorded(self, rows: list[OutcomeRow], applied: Applied) -> None:
        """Outcomes written elsewhere (in a handler's own transaction): what follows a
        write here follows them too."""
        self.written += len(applied)
        self.on_written()
        await self._settle_children(applied)
        await self._delete_finished(rows, applied)

    async def _write(self, rows: list[OutcomeRow]) -> Applied:
        """Write a batch; if the database refuses it for any reason but being away (a NUL
        character in a result, a follow-up naming an unknown job, a value too large), write
        the rows one by one so that only the bad one fails."""
        try:
            return await self.store.job_finish_many(self.worker_id, rows)
        except Exception as exc:
            if is_unavailable(exc) or isinstance(exc, SchemaNotMigrated):
                raise
            log.warning("outcome batch refused (%s); writing one by one", first_line(exc))
            return await self._one_by_one(rows)

    async def _settle_children(self, applied: Applied) -> None:
        """Free or cancel jobs that depend on the ones that just finished. If this fails
        the maintenance sweep does it a little later."""
        finished = [job_id for job_id, state in applied.items() if state in FINAL]
        if not finished or not applied.children_waiting:
            return
        try:
            await self.store.job_settle_children(finished)
        except Exception as exc:
            log.warning("dependent jobs will be settled by the sweep: %s", first_line(exc))

    async def _delete_finished(self, rows: list[OutcomeRow], applied: Applied) -> None:
        """Retention 0: finished jobs of such queues go at once (else the pruner's job)."""
        doomed = [
            r.id
            for r in rows
            if applied.get(r.id) in FINAL and self.delete_now(applied[r.id], r.queue)
        ]
        if doomed:
            try:
                await self.store.job_delete_finished(doomed)
            except Exception as exc:
                log.warning("finished jobs will be pruned later: %s", first_line(exc))

    async def _one_by_one(self, rows: list[OutcomeRow]) -> Applied:
        applied = Applied()
        applied.children_waiting = True  # rare path: let the settle statement find out
        for row in rows:
            try:
                applied.update(await self.store.job_finish_many(self.worker_id, [row]))
            except Exception as exc:
                if is_unavailable(exc) or isinstance(exc, SchemaNotMigrated):
                    raise
                error = {
                    "attempt": row.attempt,
                    "error": f"StorageError: the outcome could not be stored: {first_line(exc)}",
                }
                log.error("job %d: %s", row.id, error["error"])
                fallback = OutcomeRow(
                    row.id, row.attempt, "dead", error_json=dumps(error), started=row.started
                )
                try:
                    applied.update(await self.store.job_finish_many(self.worker_id, [fallback]))
                except Exception as again:
                    if is_unavailable(again) or isinstance(again, SchemaNotMigrated):
                        raise
                    # Refused even as dead (a rule of the database's own on that row): the
                    # worker goes on with the others; the job stays running here until
                    # this worker stops, and is rescued then.
                    log.error(
                        "job %d: not even its failure could be stored: %s",
                        row.id,
                        first_line(again),
                    )
        return applied

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything buffered is written; False if time ran out."""
        if not self._pending:
            return True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True
