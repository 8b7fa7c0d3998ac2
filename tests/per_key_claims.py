"""Calling `pgqueue.claim_limited` as a worker would, for the tests of per-key claims."""

from __future__ import annotations

import uuid

import psycopg

from tests import jobs

QUEUE = "tenants"


def register(db: psycopg.Connection) -> uuid.UUID:
    worker = uuid.uuid4()
    db.execute(
        "INSERT INTO pgqueue.workers (id, host, pid, queues, concurrency, lease) "
        "VALUES (%s, 'test', 1, '{}', 100, 30)",
        (worker,),
    )
    return worker


def claim(db: psycopg.Connection, worker: uuid.UUID, n: int, keys: int = 1000) -> list[int]:
    rows = db.execute(
        "SELECT id FROM pgqueue.claim_limited(%s, %s, %s, p_keys => %s)",
        (worker, [QUEUE], n, keys),
    ).fetchall()
    return sorted(r[0] for r in rows)


def per_key(keys: str, n: int) -> dict[str, list[int]]:
    """`n` jobs of each key (one letter each), enqueued key after key: ids by key."""
    return {
        key: jobs.app.enqueue_many(
            [{"task": "echo", "args": [i], "queue": QUEUE, "concurrency_key": key}
             for i in range(n)]
        )
        for key in keys
    }  # fmt: skip


def hold_floors(db: psycopg.Connection) -> None:
    """The floors as a claim that found no job without a key wrote them a moment ago, for
    the next hour: claims read from them, and look for jobs without a key only after
    `age_floors`, however slow the machine."""
    db.execute(
        "UPDATE pgqueue.claim_floors SET keyless = false, "
        "walked_at = now() + interval '1 hour', written_at = now() + interval '1 hour'"
    )


def age_floors(db: psycopg.Connection, seconds: float = 2.0) -> None:
    """The floors as written and read from the start `seconds` ago."""
    db.execute(
        "UPDATE pgqueue.claim_floors SET walked_at = clock_timestamp() - %s * interval '1 s', "
        "written_at = clock_timestamp() - %s * interval '1 s'",
        (seconds, seconds),
    )
