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
