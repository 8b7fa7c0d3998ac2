"""Claims of a queue with a per-key limit start where the previous claims stood (the
floors in pgqueue.claim_floors), past the dead index entries of the jobs claimed since the
last vacuum. Better priorities are still found at once; a job that lands behind a floor
(its transaction committed late, with an earlier run_at) is found once the floors are a
second old, when a claim reads from the start again."""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest

from tests import jobs
from tests.per_key_claims import QUEUE, age_floors, claim, hold_floors, per_key, register
from tests.waiting import wait_for


def noisy_backlog(db: psycopg.Connection, n: int) -> None:
    """`n` jobs of key "noisy", inserted by one statement."""
    db.execute(
        "INSERT INTO pgqueue.jobs (task, args, queue, concurrency_key) "
        "SELECT 'echo', '[0]', %s, 'noisy' FROM generate_series(1, %s)",
        (QUEUE, n),
    )


def late(db: psycopg.Connection, key: str | None) -> int:
    """A job as a transaction that began an hour ago and committed now would leave it."""
    (job_id,) = db.execute(
        "INSERT INTO pgqueue.jobs (task, args, queue, concurrency_key, run_at) "
        "VALUES ('echo', '[0]', %s, %s, now() - interval '1 hour') RETURNING id",
        (QUEUE, key),
    ).fetchone()
    return int(job_id)


def test_claims_start_at_the_floors_and_read_from_the_start_a_second_later(app, db):
    app.set_queue_limits(QUEUE, per_key=100)
    a = app.enqueue_many(
        [{"task": "echo", "args": [i], "queue": QUEUE, "concurrency_key": "a"} for i in range(6)]
    )
    b = app.enqueue_many(
        [{"task": "echo", "args": [i], "queue": QUEUE, "concurrency_key": "b"} for i in range(6)]
    )
    worker = register(db)
    assert claim(db, worker, 4) == sorted(a[:2] + b[:2])  # the keys take turns
    (keys,) = db.execute(
        "SELECT keys FROM pgqueue.claim_floors WHERE queue = %s", (QUEUE,)
    ).fetchone()
    assert keys == ["a", "b"]
    hold_floors(db)

    behind = late(db, "a")
    assert claim(db, worker, 2) == sorted([a[2], b[2]])  # from the floors: not the late job
    # A better priority is looked for from its start, whatever the floor.
    urgent = app.enqueue("echo", [1], queue=QUEUE, concurrency_key="a", priority=10)
    assert claim(db, worker, 1) == [urgent]

    age_floors(db)
    assert behind in claim(db, worker, 2)  # read from the start: the late job comes first


def test_a_job_without_a_key_behind_the_queue_floor_is_found_a_second_later(app, db):
    app.set_queue_limits(QUEUE, per_key=100)
    keyed = app.enqueue_many(
        [{"task": "echo", "args": [i], "queue": QUEUE, "concurrency_key": "a"} for i in range(4)]
    )
    worker = register(db)
    assert claim(db, worker, 2) == keyed[:2]
    hold_floors(db)
    behind = late(db, None)
    assert claim(db, worker, 1) == [keyed[2]]
    age_floors(db)
    assert claim(db, worker, 2) == [keyed[3], behind]  # the key's turn, then the keyless'


def test_a_claim_goes_round_from_the_last_key_to_the_first(app, db):
    app.set_queue_limits(QUEUE, per_key=10)
    ids = per_key("abc", 2)
    worker = register(db)
    assert claim(db, worker, 2) == [ids["a"][0], ids["b"][0]]  # the cursor is now at "b"
    # After "b": "c", then round to "a" and "b" again, each key's first turn.
    assert claim(db, worker, 3) == sorted([ids["c"][0], ids["a"][1], ids["b"][1]])
    assert claim(db, worker, 10) == [ids["c"][1]]


def test_a_claim_looks_at_no_more_keys_than_it_is_told_in_all(app, db):
    app.set_queue_limits(QUEUE, per_key=1)
    ids = per_key("abcde", 2)
    worker = register(db)

    def claim_and_finish() -> list[int]:
        taken = claim(db, worker, 10, keys=2)
        db.execute("UPDATE pgqueue.jobs SET state = 'succeeded' WHERE id = ANY(%s)", (taken,))
        return taken

    assert claim_and_finish() == [ids["a"][0], ids["b"][0]]
    # From the cursor ("b") on: two keys, though those before it have jobs too.
    assert claim_and_finish() == [ids["c"][0], ids["d"][0]]
    # From "d" on, and round to the first key.
    assert claim_and_finish() == [ids["a"][1], ids["e"][0]]


def test_jobs_without_a_key_in_a_busy_keyed_queue_wait_a_tenth_of_a_second_at_most(app, db):
    app.set_queue_limits(QUEUE, per_key=100)
    keyed = per_key("a", 10)["a"]
    worker = register(db)
    assert claim(db, worker, 2) == keyed[:2]  # the floors say: no job without a key
    hold_floors(db)
    keyless = [jobs.app.enqueue("echo", [i], queue=QUEUE) for i in range(2)]
    # While the floors are fresh (written by claims that take jobs, at most every 0.1 s),
    # the jobs without a key are not looked for...
    assert claim(db, worker, 2) == keyed[2:4]
    db.execute(
        "UPDATE pgqueue.claim_floors SET written_at = clock_timestamp() - interval '0.2 second'"
    )
    # ... then they are, each taking its turn beside the keys.
    assert claim(db, worker, 2) == [keyed[4], keyless[0]]
    # Found: they are looked for at every claim while some are left, floors fresh or not.
    assert claim(db, worker, 2) == [keyed[5], keyless[1]]


@pytest.fixture
def no_autovacuum(db):
    """Dead index entries stay until the test ends (autovacuum would remove them)."""
    db.execute("ALTER TABLE pgqueue.jobs SET (autovacuum_enabled = false)")
    yield
    db.execute("ALTER TABLE pgqueue.jobs RESET (autovacuum_enabled)")


INDEXES = ("jobs_key_order_idx", "jobs_claim_order_idx")


def blocks_read_by_a_claim(db: psycopg.Connection, worker: uuid.UUID) -> int:
    """Blocks of the claim indexes that one claim reads (this transaction's own counts)."""
    count = (
        "SELECT sum(pg_stat_get_xact_blocks_fetched(c.oid))::int FROM pg_class AS c "
        "JOIN pg_namespace AS n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'pgqueue' AND c.relname = ANY(%s)"
    )
    with db.transaction():
        (before,) = db.execute(count, (list(INDEXES),)).fetchone()
        db.execute("SELECT * FROM pgqueue.claim_limited(%s, %s, 1)", (worker, [QUEUE]))
        (after,) = db.execute(count, (list(INDEXES),)).fetchone()
    return int(after - before)


# About 2 s alone; in CI it has run beside the hundred-worker pooler test on the same two
# cores and taken 96 s and more (the server busy, never stuck).
@pytest.mark.timeout(300)
def test_a_claim_does_not_read_the_jobs_claimed_before_it(app, db, no_autovacuum):
    app.set_queue_limits(QUEUE, per_key=1000)
    noisy_backlog(db, 30_000)
    worker = register(db)
    blocks_read_by_a_claim(db, worker)  # the first call in a session plans the function too
    first = blocks_read_by_a_claim(db, worker)
    # 20,000 jobs claimed and done: their entries are dead, and stay in the indexes.
    for _ in range(40):
        ids = claim(db, worker, 500)
        db.execute(
            "UPDATE pgqueue.jobs SET state = 'succeeded', finished_at = now() WHERE id = ANY(%s)",
            (ids,),
        )
    # Floors are written at most every 0.1 s: let a claim write them (a worker's claims are
    # smaller and slower, and write them every few hundred jobs). And once a second a claim
    # reads from the start: the one measured comes between two of those.
    db.execute(
        "UPDATE pgqueue.claim_floors "
        "SET written_at = written_at - interval '1 second', walked_at = clock_timestamp()"
    )
    claim(db, worker, 1)
    later = blocks_read_by_a_claim(db, worker)
    # Without statistics (the table was filled and not analysed) a claim read the whole
    # queue (about 2,000 blocks); reading the dead entries would add about 120 pages of the
    # key index and 100 of the claim index.
    assert first < 200, f"a claim read {first} blocks"
    assert later < first + 100, f"a claim read {first} blocks at first and {later} later"


def test_a_late_job_of_a_busy_key_waits_a_second_at_most(app, db, worker):
    app.set_queue_limits(QUEUE, per_key=2)
    app.enqueue_many(
        [
            {"task": "async_sleep", "args": [0.01], "queue": QUEUE, "concurrency_key": "a"}
            for _ in range(2000)
        ]
    )
    with worker(concurrency=2, queues=(QUEUE,)):
        wait_for(
            lambda: (
                db.execute(
                    "SELECT count(*) FROM pgqueue.jobs WHERE state = 'succeeded'"
                ).fetchone()[0]
                >= 100
            ),
            timeout=30,
        )
        behind = late(db, "a")
        inserted = time.monotonic()
        wait_for(lambda: jobs.app.get_job(behind).state == "succeeded", timeout=30)
        waited = time.monotonic() - inserted
        left = db.execute("SELECT count(*) FROM pgqueue.jobs WHERE state = 'queued'").fetchone()[0]
    assert left > 500, "the backlog ran out first: the test proves nothing"
    assert waited < 5, f"the job behind the floors waited {waited:.1f}s"


def test_a_claim_locks_by_primary_key_after_statistics_of_finished_jobs(app, db, no_autovacuum):
    # Statistics taken while the table held finished jobs only (a day's retention, a quiet
    # moment): the partial indexes of queued jobs look empty, and a lookup of a chosen job
    # by "id = ... AND state = 'queued'" read the whole run_at index instead of the key.
    db.execute(
        "INSERT INTO pgqueue.jobs (task, args, state, finished_at) "
        "SELECT 'echo', '[0]', 'succeeded', now() FROM generate_series(1, 20000)"
    )
    db.execute("ANALYZE pgqueue.jobs")
    db.execute("DELETE FROM pgqueue.jobs")
    app.set_queue_limits(QUEUE, per_key=1000)
    noisy_backlog(db, 5_000)
    worker = register(db)
    count = "SELECT pg_stat_get_xact_blocks_fetched('pgqueue.jobs_run_at_idx'::regclass)::int"
    with db.transaction():
        (before,) = db.execute(count).fetchone()
        assert len(claim(db, worker, 500)) == 500
        (after,) = db.execute(count).fetchone()
    # By primary key: none of it (on 0021, this claim read 2,510 blocks of it).
    assert after - before < 50, f"the claim read {after - before} blocks of the run_at index"
