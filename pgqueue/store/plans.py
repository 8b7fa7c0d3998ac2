"""Operations of several statements, written once, without I/O.

Each plan is a generator: it yields (query, params), or a CopyIn, and is sent back the
rows the query returned (a list of tuples; none for a CopyIn); its return value is the
operation's result. JobStore and AsyncJobStore each run any plan in a few lines, so the
logic exists once for both (the way psycopg keeps its protocol code apart from its sync
and async connections). Internal API.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, LiteralString

from pgqueue.errors import ConfigurationError, PermissionDenied, PgQueueError
from pgqueue.sql import QUERIES
from pgqueue.store.copyin import copy_rows, copyable, timed
from pgqueue.store.errors import PRODUCER_RIGHTS
from pgqueue.store.params import JobSpec, insert_params, insert_query, spec_parts
from pgqueue.tracing import capture


@dataclass(frozen=True, slots=True)
class CopyIn:
    """A step that runs `COPY ... FROM STDIN` and sends it this data."""

    query: LiteralString
    data: Iterable[bytes]


@dataclass(frozen=True, slots=True)
class Reported:
    """A step whose answer is the notices the server sent this session while it ran, as
    (message, detail) pairs, rather than rows (see job_insert_reported)."""

    query: LiteralString
    params: dict[str, Any]


Step = tuple[LiteralString, dict[str, Any]]
Plan = Generator[Step | CopyIn | Reported, list[tuple[Any, ...]], Any]
INSERT_TRIES = 5
REPORTED = "pgqueue: jobs inserted"  # the insert trigger's notice (migration 0025)
# Per server, database and role: whether enqueue may read back what it inserts, and whether
# the insert trigger can report ids instead. Privileges rarely change under a running
# process; asking once spares every enqueue a round trip.
_RIGHTS: dict[tuple[Any, ...], tuple[bool, bool]] = {}


def job_enqueue(
    specs: Sequence[JobSpec], who: tuple[Any, ...], copies: bool, alone: bool, notices: bool
) -> Plan:
    """Insert jobs; ids in input order. By COPY when copyin.copyable says so and the driver
    can (`copies`; `alone`: no transaction of the caller's is open), else by INSERT. A role
    that may INSERT into pgqueue.jobs and nothing more (`who` names it) cannot read back
    ids: its jobs go in through job_insert_reported when the driver passes notices on."""
    # Options read from the shapes: a Batch builds a JobSpec per job only when asked, which
    # costs more than the COPY's encoding of plain jobs.
    reads_table = any(
        s.unique_key is not None or s.depends_on is not None for s in spec_parts(specs)[0]
    )
    rights = _RIGHTS.get(who)
    if rights is None or (reads_table and not rights[0]):
        # (Asked again before refusing jobs that read the table: granted since, perhaps.)
        rows = yield QUERIES["producer_rights"], {}
        rights = _RIGHTS[who] = (bool(rows[0][0]), bool(rows[0][1]))
    reads, reports = rights
    if not reads and reports and notices:
        return (yield from job_insert_reported(specs))
    if copies and copyable(specs):
        return (yield from job_copy_many(specs, alone))
    return (yield from job_insert_many(specs))


def forget_rights() -> None:
    """Ask every role's rights again at its next enqueue."""
    _RIGHTS.clear()


def job_insert_reported(specs: Sequence[JobSpec]) -> Plan:
    """Insert jobs without reading the table: the insert trigger lists the ids in a notice
    to this session. Jobs with a unique key or dependencies need reads (the key's holder,
    the parents): those are refused with what to grant."""
    if not specs:
        return []
    if any(s.unique_key is not None or s.depends_on is not None for s in spec_parts(specs)[0]):
        raise PermissionDenied(
            f"a job with a unique_key or depends_on is enqueued by reading the table: "
            f"{PRODUCER_RIGHTS}"
        )
    notes = yield Reported(QUERIES["job_insert_reported"], insert_params(specs, capture()))
    for message, detail in notes:
        if message == REPORTED and detail is not None:
            ids = sorted(int(i) for i in detail.split(",") if i)
            if len(ids) == len(specs):
                return ids
    raise PgQueueError(f"{len(specs)} job(s) inserted, but their ids were not reported")


def settle_params(parents: list[int]) -> dict[str, Any]:
    """job_settle_children for the children of these jobs."""
    return {"parents": parents, "after": None, "newest": False}


def job_insert_many(specs: Sequence[JobSpec]) -> Generator[Step, list[tuple[Any, ...]], list[int]]:
    """Insert jobs; ids in input order, a duplicate unique key giving the holder's id.

    The holder of a taken key is looked up in the same transaction; if it finished in
    between, only the jobs that found no holder are inserted again (never one twice)."""
    if not specs:
        return []
    specs = list(specs)  # a Batch builds its JobSpecs when read: once
    parents = sorted({p for s in specs for p in (s.depends_on or ())})
    if parents:
        missing = [r[0] for r in (yield QUERIES["job_missing"], {"ids": parents})]
        if missing:
            raise ConfigurationError(f"depends_on names unknown job(s): {missing}")
    if keys := sorted({s.unique_key for s in specs if s.unique_key is not None}):
        yield QUERIES["job_release_unique"], {"unique_keys": keys}
    ids: list[int | None] = [None] * len(specs)
    todo = list(range(len(specs)))
    for _ in range(INSERT_TRIES):
        batch = [specs[i] for i in todo]
        rows = yield insert_query(batch)
        if len(batch) == 1 and not rows:  # job_insert returns nothing on a conflict
            rows = [(None, batch[0].unique_key)]
        if parents:
            # Parents that already finished free (or cancel) their children now.
            yield QUERIES["job_settle_enqueued"], {"parents": parents}
        taken: dict[str, list[int]] = {}
        for i, (job_id, key) in zip(todo, rows, strict=True):
            if job_id is not None:
                ids[i] = job_id
            else:
                taken.setdefault(key, []).append(i)
        if not taken:
            return [i for i in ids if i is not None]
        found = yield QUERIES["job_find_unique"], {"unique_keys": sorted(taken)}
        holders = {key: job_id for key, job_id in found}
        todo = []
        for key, positions in taken.items():
            if key in holders:
                for i in positions:
                    ids[i] = holders[key]
            else:
                todo.extend(positions)
        if not todo:
            return [i for i in ids if i is not None]
        todo.sort()
    raise PgQueueError("could not insert jobs: their unique keys kept changing hands")


def job_copy_many(
    specs: Sequence[JobSpec], alone: bool
) -> Generator[Step | CopyIn, Any, list[int]]:
    """Insert jobs by COPY (see pgqueue.store.copyin: none has a unique key or depends_on);
    ids in input order. `alone`: each statement is a transaction of its own (no transaction
    of the caller's is open); the rows are still written by one statement, the COPY."""
    with_times = timed(specs)
    rows = yield QUERIES["job_ids"], {"n": len(specs), "alone": alone}
    now, low, high, listed, _ = rows[0]
    ids: list[int] = list(range(low, high + 1)) if listed is None else listed
    query = QUERIES["job_copy_timed"] if with_times else QUERIES["job_copy"]
    yield CopyIn(query, copy_rows(ids, specs, now if with_times else None, capture()))
    return ids


def job_retry(job_id: int) -> Generator[Step, list[tuple[Any, ...]], bool]:
    """Put a dead or cancelled job back in the queue; False if it is not one, or if another
    live job holds its unique key (a holder whose window has passed is let go first)."""
    yield QUERIES["job_retry_release"], {"id": job_id}
    return bool((yield QUERIES["job_retry"], {"id": job_id}))


def job_retry_dead(
    queue: str | None, batch: int, after: int
) -> Generator[Step, list[tuple[Any, ...]], tuple[int, int | None]]:
    """Re-queue the dead jobs (of `queue`, if given) among the next `batch` after id
    `after`: how many, and the last id looked at (None: no dead job is left after it)."""
    yield QUERIES["job_retry_dead_release"], {"queue": queue}
    rows = yield QUERIES["job_retry_dead"], {"queue": queue, "batch": batch, "after": after}
    retried, last_id, _ = rows[0]
    return int(retried), last_id


def job_cancel(
    job_id: int, reason: str | None
) -> Generator[Step, list[tuple[Any, ...]], str | None]:
    """Cancel a job; the state it had (None: no such job). Children of a job cancelled
    while queued are settled in the same transaction."""
    rows = yield QUERIES["job_cancel"], {"id": job_id, "reason": reason}
    if not rows:
        return None
    state: str = rows[0][0]
    if state == "queued":
        yield QUERIES["job_settle_children"], settle_params([job_id])
    return state
