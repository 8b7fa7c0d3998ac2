"""A claim over several queues locks only the rows it takes. Rows locked and left would be
skipped by every other claim meanwhile: those claims would take fewer than they asked for
while jobs are due, and a worker reads "fewer than asked" as "nothing more is due"."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from pgqueue.sql import QUERIES


@pytest.fixture
def worker_id(db: psycopg.Connection[Any]) -> Iterator[uuid.UUID]:
    wid = uuid.uuid4()
    db.execute(
        "INSERT INTO pgqueue.workers (id, host, pid, queues, concurrency, lease) "
        "VALUES (%s, 'test', 1, '{}', 100, 30)",
        (wid,),
    )
    yield wid


def backlog(db: psycopg.Connection[Any], queues: dict[str, int], per_queue: int = 20) -> None:
    """`per_queue` due jobs in each queue, at the given priority."""
    for queue, priority in queues.items():
        db.execute(
            "INSERT INTO pgqueue.jobs (task, args, queue, priority, max_attempts, run_at) "
            "SELECT 'echo', jsonb_build_array(i), %s, %s, 3, now() - interval '1 minute' "
            "FROM generate_series(1, %s) AS i",
            (queue, priority, per_queue),
        )


def claim(conn: psycopg.Connection[Any], worker_id: uuid.UUID, limit: int) -> list[int]:
    params = {
        "worker_id": worker_id,
        "queues": ["a", "b", "c"],
        "limit": limit,
        "now": None,
        "tasks": None,
    }
    return [row[0] for row in conn.execute(QUERIES["job_claim"], params).fetchall()]


def free_rows(dsn: str) -> int:
    """Queued rows no transaction holds a lock on."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM (SELECT id FROM pgqueue.jobs WHERE state = 'queued' "
            "FOR UPDATE SKIP LOCKED) AS free"
        ).fetchone()
        assert row is not None
        return int(row[0])


def test_a_claim_over_several_queues_locks_only_what_it_takes(db, dsn, worker_id):
    backlog(db, {"a": 0, "b": 0, "c": 0})
    with psycopg.connect(dsn) as first:  # a claim in flight: its transaction is open
        assert len(claim(first, worker_id, 10)) == 10
        assert free_rows(dsn) == 50
        first.rollback()


def test_a_claim_beside_one_in_flight_takes_every_free_job_it_asks_for(db, dsn, worker_id):
    backlog(db, {"a": 0, "b": 0, "c": 0})
    with psycopg.connect(dsn) as first, psycopg.connect(dsn, autocommit=True) as second:
        taken_first = claim(first, worker_id, 10)
        taken_second = claim(second, worker_id, 50)
        first.commit()
    assert len(taken_first) == 10
    assert len(taken_second) == 50, "fewer than asked while due jobs were free"
    assert not set(taken_first) & set(taken_second)


def test_best_jobs_held_elsewhere_are_made_up_from_the_other_queues(db, dsn, worker_id):
    # Queue a has the best jobs, and another transaction holds every one of them.
    backlog(db, {"a": 10, "b": 5, "c": 0})
    with psycopg.connect(dsn) as holder:
        holder.execute("SELECT id FROM pgqueue.jobs WHERE queue = 'a' FOR UPDATE").fetchall()
        taken = claim(db, worker_id, 30)
        holder.rollback()
    queues = dict(
        db.execute(
            "SELECT queue, count(*) FROM pgqueue.jobs WHERE id = ANY(%s) GROUP BY queue",
            (taken,),
        ).fetchall()
    )
    # b's jobs come first (better priority than c's); the rest from c.
    assert queues == {"b": 20, "c": 10}


def test_a_claim_over_several_queues_takes_the_best_jobs_across_them(db, worker_id):
    backlog(db, {"a": 0, "b": 7, "c": 3}, per_queue=10)
    taken = claim(db, worker_id, 15)
    queues = dict(
        db.execute(
            "SELECT queue, count(*) FROM pgqueue.jobs WHERE id = ANY(%s) GROUP BY queue",
            (taken,),
        ).fetchall()
    )
    assert queues == {"b": 10, "c": 5}
