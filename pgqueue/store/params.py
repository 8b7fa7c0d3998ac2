"""What the store sends and gets back, built without I/O: jobs to insert, outcomes to write,
and the JSON encoding both sides agree on. Internal API."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString, overload
from uuid import UUID

import orjson

from pgqueue.job import Job, JobState
from pgqueue.sql import QUERIES
from pgqueue.tracing import capture


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job to insert, validated and serialised (args/kwargs are JSON text)."""

    task: str
    args_json: str
    kwargs_json: str
    queue: str | None  # None: the task's declared default (see migration 0009), else 'default'
    priority: int | None
    max_attempts: int | None
    delay: float | None = None
    run_at: datetime | None = None
    unique_key: str | None = None
    timeout: float | None = None
    depends_on: tuple[int, ...] | None = None
    unique_for: float | None = None
    # W3C trace context to store (see pgqueue.tracing); None: the one current at insert.
    trace_context: dict[str, str] | None = None
    concurrency_key: str | None = None  # see queues.per_key_limit


class Batch(Sequence[JobSpec]):
    """Jobs to insert, in order, kept as each job's options (a JobSpec that the jobs of one
    task giving no options share) and its own arguments. A JobSpec per job is built only
    when asked for: for plain jobs that costs more than encoding them for COPY does."""

    __slots__ = ("args", "kwargs", "shapes")

    def __init__(self) -> None:
        self.shapes: list[JobSpec] = []  # each job's options; args_json and kwargs_json aside
        self.args: list[str] = []
        self.kwargs: list[str] = []

    def add(
        self, shape: JobSpec, args_json: str | None = None, kwargs_json: str | None = None
    ) -> None:
        """Add a job: `shape` with these arguments (None: the shape's own)."""
        self.shapes.append(shape)
        self.args.append(shape.args_json if args_json is None else args_json)
        self.kwargs.append(shape.kwargs_json if kwargs_json is None else kwargs_json)

    def __len__(self) -> int:
        return len(self.shapes)

    @overload
    def __getitem__(self, index: int) -> JobSpec: ...

    @overload
    def __getitem__(self, index: slice) -> list[JobSpec]: ...

    def __getitem__(self, index: int | slice) -> JobSpec | list[JobSpec]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self._spec(self.shapes[index], self.args[index], self.kwargs[index])

    def __iter__(self) -> Iterator[JobSpec]:
        return map(self._spec, self.shapes, self.args, self.kwargs)

    @staticmethod
    def _spec(shape: JobSpec, args: str, kwargs: str) -> JobSpec:
        if shape.args_json is args and shape.kwargs_json is kwargs:
            return shape
        # Every field, in order: dataclasses.replace costs three times as much.
        s = shape
        return JobSpec(s.task, args, kwargs, s.queue, s.priority, s.max_attempts, s.delay,
                       s.run_at, s.unique_key, s.timeout, s.depends_on, s.unique_for,
                       s.trace_context, s.concurrency_key)  # fmt: skip


def spec_parts(specs: Sequence[JobSpec]) -> tuple[Sequence[JobSpec], Sequence[str], Sequence[str]]:
    """Each job's options (read them for anything but the arguments), args and kwargs."""
    if isinstance(specs, Batch):
        return specs.shapes, specs.args, specs.kwargs
    return specs, [s.args_json for s in specs], [s.kwargs_json for s in specs]


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
    # When the claim started the attempt (the row's started_at): with the attempt number
    # and the worker, what names one claim. A job given back (Retry, a release) and claimed
    # again has its attempt number again, but not its start: a batch sent again after its
    # answer was lost must not land on that later claim. None: not checked.
    started: datetime | None = None

    @property
    def size(self) -> int:
        """Roughly the bytes this outcome adds to a batch (for the batch's byte cap)."""
        return 100 + len(self.result_json or "") + len(self.error_json or "")


class Applied(dict[int, str]):
    """The outcomes job_finish_many wrote, {job id: new state}, and whether any job waits on
    another (if none does, there are no children to settle)."""

    children_waiting: bool = False

    @classmethod
    def of(cls, rows: Sequence[Sequence[Any]]) -> Applied:
        applied = cls((r[0], r[1]) for r in rows)
        applied.children_waiting = any(r[3] for r in rows)
        return applied


# The columns job_claim and pgqueue.claim_limited (claim_limited) return, in order.
CLAIM_COLUMNS = (
    "id",
    "queue",
    "task",
    "args",
    "kwargs",
    "priority",
    "run_at",
    "attempts",
    "max_attempts",
    "unique_key",
    "timeout",
    "created_at",
    "started_at",
    "trace_context",
    "concurrency_key",
)
# Every claim returns trace_context: a tracing worker need not look it up per job.
CLAIM_RETURNS_TRACE = "j.trace_context" in QUERIES["job_claim"]


class Unreadable(list[Any]):
    """The arguments of a claimed job that could not be parsed (empty, with the reason)."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


def claimed_job(row: Sequence[Any], worker_id: UUID) -> Job:
    """The Job a claimed row stands for: running, for `worker_id`, this attempt."""
    # Positional, in CLAIM_COLUMNS order: this runs for every job a worker takes.
    (job_id, queue, task, args, kwargs, priority, run_at, attempts, max_attempts, unique_key,
     timeout, created_at, started_at, trace_context, concurrency_key) = row  # fmt: skip
    try:
        args = loads(args)  # text: see job_claim
        kwargs = loads(kwargs) if kwargs is not None else {}
    except (ValueError, RecursionError) as exc:
        # Valid jsonb that Python cannot read back (nested deeper than its parsers go): the
        # job ends dead with the reason, and the rest of the claim runs.
        args, kwargs = Unreadable(f"{type(exc).__name__}: {exc}"), {}
    if type(trace_context) is UnreadableJSON:
        trace_context = None  # a context nobody could have sent: the job runs without it
    return Job(
        job_id,
        queue,
        task,
        args,
        kwargs,
        JobState.RUNNING,
        priority,
        run_at,
        attempts,
        max_attempts,
        unique_key,
        timeout,
        None,  # last_error
        [],  # errors
        None,  # result
        worker_id,
        created_at,
        started_at,
        None,  # finished_at
        None,  # depends_on
        None,  # unique_for
        None,  # unique_until
        None,  # progress: a new attempt reports its own
        None,  # progress_message
        trace_context,
        concurrency_key,
    )


def insert_params(specs: Sequence[JobSpec], trace: dict[str, str] | None = None) -> dict[str, str]:
    """The jobs as one JSON document (arguments embedded as they are): far cheaper to build
    and send than twelve typed arrays. `trace`: the trace context of jobs that carry none."""
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
            "trace_context": s.trace_context if s.trace_context is not None else trace,
            "concurrency_key": s.concurrency_key,
        }
        for s in specs
    ]
    return {"jobs": orjson.dumps(jobs).decode()}


def insert_one_params(spec: JobSpec, trace: dict[str, str] | None = None) -> dict[str, Any]:
    context = spec.trace_context if spec.trace_context is not None else trace
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
        "trace_context": None if context is None else orjson.dumps(context).decode(),
        "concurrency_key": spec.concurrency_key,
    }


def insert_query(specs: Sequence[JobSpec]) -> tuple[LiteralString, dict[str, Any]]:
    """One job: a plain INSERT; several: one statement over a JSON document, the lighter one
    when no job has a unique key (every job is then inserted). All return (id, unique_key).
    Jobs that carry no trace context get the one current now, if any (pgqueue.tracing)."""
    trace = capture()
    if len(specs) == 1:
        return QUERIES["job_insert"], insert_one_params(specs[0], trace)
    if any(s.unique_key is not None for s in specs):
        return QUERIES["job_insert_many"], insert_params(specs, trace)
    return QUERIES["job_insert_keyless"], insert_params(specs, trace)


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
            "started": None if r.started is None else r.started.isoformat(),
        }
        for r in rows
    ]
    return {
        "worker_id": worker_id,
        "outcomes": orjson.dumps(batch).decode(),
        "ids": [r.id for r in rows],
    }


_PLAIN = frozenset({str, int, bool, type(None)})


def dumps(value: Any) -> str:
    """JSON text for PostgreSQL's jsonb: strict (no NaN), compact."""
    # The common case, a list of plain values (or no kwargs), goes through orjson; anything
    # else through json, whose rules (NaN refused, big integers) are the reference.
    kind = type(value)
    if (kind is list and _PLAIN.issuperset(map(type, value))) or (kind is dict and not value):
        try:
            return orjson.dumps(value).decode()
        except orjson.JSONEncodeError:
            pass  # an integer beyond 64 bits, a lone surrogate: json says what to do
    return json.dumps(value, allow_nan=False, separators=(",", ":"))


# orjson reads an integer beyond 64 bits as a float (2**70 would reach a handler as
# 1.1805916207174113e+21). Nineteen digits in a row may be such a number: json reads those.
_LONG_NUMBER_TEXT = re.compile(r"\d{19}")
_LONG_NUMBER_BYTES = re.compile(rb"\d{19}")


class UnreadableJSON(str):
    """A jsonb value Python cannot read back (nested deeper than its parsers go, a number
    too long for int()), given as text that says so: one such row must not fail every
    query that reads it (a claim of many jobs, a page of the dashboard)."""


def tolerant_loads(data: str | bytes | bytearray | memoryview) -> Any:
    """`loads`, with an UnreadableJSON for what it cannot read: pgqueue's connections read
    jsonb with it, since anyone who may insert a job chooses its values."""
    try:
        return loads(data)
    except (ValueError, RecursionError) as exc:
        return UnreadableJSON(f"<unreadable JSON: {type(exc).__name__}: {exc}>")


def loads(data: str | bytes | bytearray | memoryview) -> Any:
    """Parse jsonb text as fast as orjson does, exactly as json does."""
    if isinstance(data, str):
        if _LONG_NUMBER_TEXT.search(data):
            return json.loads(data)
        return orjson.loads(data)
    raw = bytes(data)
    if _LONG_NUMBER_BYTES.search(raw):
        return json.loads(raw)
    return orjson.loads(raw)
