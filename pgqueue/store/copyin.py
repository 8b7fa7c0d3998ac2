"""Jobs as rows of COPY's binary format, for bulk enqueue (built without I/O). Internal API.

A large batch goes in by `COPY pgqueue.jobs FROM STDIN (FORMAT BINARY)` rather than an
INSERT over a JSON document: the server parses no document and plans no statement, and
the client encodes each row in a few concatenations. The rows carry ids drawn beforehand
(job_ids), so they come back in order without RETURNING. Only jobs that need nothing of
the INSERT's logic go this way: no unique key (ON CONFLICT) and no dependency (checked
and settled in the same transaction); see `copyable`.

The format (PostgreSQL's "COPY", "Binary Format"): a signature, then per row the number
of fields and each field as its length (-1: NULL) and the bytes the column type's binary
input reads: int8/int4 big-endian, float8 IEEE big-endian, text as bytes in the client
encoding, jsonb as a version byte 1 and the JSON text, timestamptz as microseconds since
2000-01-01 UTC (integer datetimes, the only kind since PostgreSQL 10).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import orjson

from pgqueue.store.params import JobSpec, spec_parts

# Batches smaller than this go through the INSERT. A COPY costs two more round trips (the
# ids, and COPY's own hand-shake), which the rows repay: measured with bench/copy_threshold.py
# on a 2-core machine, COPY took 0.85 of the INSERT's time at 200 jobs and 0.75 at 1,000 when
# it was quiet (break-even near 100), and 0.98 at 200 and 0.8 at 1,000 with the test suite
# running beside it (twice the time at 100, where round trips wait for a CPU).
COPY_MIN_JOBS = 200
ROWS_PER_CHUNK = 5000  # rows per COPY data message, so a huge batch is not one buffer

_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags 0, no header extension
_TRAILER = b"\xff\xff"
_NULL = b"\xff\xff\xff\xff"
_EMPTY_OBJECT = b"\x00\x00\x00\x03\x01{}"  # jsonb '{}', most jobs' kwargs
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_ROW_START = struct.Struct(">hiq").pack  # field count, then the id: length 8, int8
_JSONB_START = struct.Struct(">iB").pack  # length, jsonb version 1
_INT4 = struct.Struct(">ii").pack
_FLOAT8 = struct.Struct(">id").pack
_TIMESTAMPTZ = struct.Struct(">iq").pack

# The columns of job_copy, in order; job_copy_timed adds created_at and run_at. Those that
# a batch's jobs of one task share come after args and kwargs: their bytes are made once.
FIELDS = 10


def copyable(specs: Sequence[JobSpec]) -> bool:
    """Whether these jobs go in by COPY: enough of them, and none with a unique key or a
    dependency (those need the INSERT's ON CONFLICT and the settling of children)."""
    shapes = spec_parts(specs)[0]
    return len(specs) >= COPY_MIN_JOBS and all(
        s.unique_key is None and s.depends_on is None for s in shapes
    )


def timed(specs: Sequence[JobSpec]) -> bool:
    """Whether a job has a delay or a run_at (then every row carries its run_at)."""
    return any(s.run_at is not None or s.delay is not None for s in spec_parts(specs)[0])


def _text(value: str | None) -> bytes:
    if value is None:
        return _NULL
    data = value.encode()
    return struct.pack(">i", len(data)) + data


def _jsonb(text: str) -> bytes:
    data = text.encode()
    return _JSONB_START(len(data) + 1, 1) + data


def _shared(spec: JobSpec, trace: dict[str, str] | None) -> bytes:
    """The fields after args and kwargs, up to run_at."""
    context = spec.trace_context if spec.trace_context is not None else trace
    return b"".join(
        (
            _text(spec.queue),
            _text(spec.task),
            _NULL if spec.priority is None else _INT4(4, spec.priority),
            _NULL if spec.max_attempts is None else _INT4(4, spec.max_attempts),
            _NULL if spec.timeout is None else _FLOAT8(8, spec.timeout),
            _NULL if context is None else _jsonb(orjson.dumps(context).decode()),
            _text(spec.concurrency_key),
        )
    )


def copy_rows(
    ids: Sequence[int],
    specs: Sequence[JobSpec],
    now: datetime | None,
    trace: dict[str, str] | None,
) -> Iterator[bytes]:
    """The COPY data for these jobs with these ids, in chunks. With `now` (job_ids'), each
    row ends with its created_at, now, and its run_at: run_at, else now + delay, else now,
    as the INSERT computes it (make_interval rounds delay to the microsecond, half to even,
    as round() does). `trace`: the trace context of jobs that carry none."""
    now_us = None if now is None else (now - _PG_EPOCH) // _MICROSECOND
    fields = FIELDS if now_us is None else FIELDS + 2
    created = b"" if now_us is None else _TIMESTAMPTZ(8, now_us)
    shared: dict[tuple[object, ...], bytes] = {}
    parts: list[bytes] = [_SIGNATURE]
    shapes, args_texts, kwargs_texts = spec_parts(specs)
    rows = zip(ids, shapes, args_texts, kwargs_texts, strict=True)
    for n, (job_id, spec, args_json, kwargs_json) in enumerate(rows, 1):
        key = (spec.queue, spec.task, spec.priority, spec.max_attempts, spec.timeout,
               spec.concurrency_key)  # fmt: skip
        tail = shared.get(key) if spec.trace_context is None else None
        if tail is None:
            tail = _shared(spec, trace)
            if spec.trace_context is None:
                shared[key] = tail
        args = args_json.encode()
        parts += (
            _ROW_START(fields, 8, job_id),
            _JSONB_START(len(args) + 1, 1),
            args,
            _EMPTY_OBJECT if kwargs_json == "{}" else _jsonb(kwargs_json),
            tail,
        )
        if now_us is not None:
            if spec.run_at is not None:
                run_at = (spec.run_at - _PG_EPOCH) // _MICROSECOND
            elif spec.delay is not None:
                run_at = now_us + round(spec.delay * 1_000_000)
            else:
                run_at = now_us
            parts += (created, _TIMESTAMPTZ(8, run_at))
        if n % ROWS_PER_CHUNK == 0:
            yield b"".join(parts)
            parts = []
    parts.append(_TRAILER)
    yield b"".join(parts)
