"""Bulk enqueue by COPY (pgqueue/store/copyin.py): a batch of at least COPY_MIN_JOBS jobs
without unique keys or dependencies is copied in, and keeps every promise of the INSERT it
replaces: ids in order, the same rows, nothing inserted on bad input or rollback, the
insert triggers (defaults, wake-up, statistics) firing for it."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from pgqueue.errors import ConfigurationError, InvalidJobState, SerializationError
from pgqueue.migrate import sqlalchemy_url
from pgqueue.store import plans
from pgqueue.store.copyin import COPY_MIN_JOBS, ROWS_PER_CHUNK, copyable
from pgqueue.store.sync import drive_on

N = max(COPY_MIN_JOBS, 300)
MARK = "bulk-copy-test-mark"
# Every column a producer can set, and those the database fills.
COLUMNS = (
    "queue, task, args, kwargs, state, priority, run_at, attempts, max_attempts, unique_key, "
    "timeout, last_error, errors, result, worker_id, created_at, started_at, finished_at, "
    "depends_on, unique_for, unique_until, cancel_requested_at, progress, progress_message, "
    "trace_context, concurrency_key"
)


def mixed(n: int) -> list[dict[str, Any]]:
    """Jobs of every kind the COPY takes: registered and unknown tasks (defaults from the
    app, from a worker's declaration in pgqueue.tasks, from the database), options,
    delays, run_at in odd zones, keyword arguments that need escaping, big integers."""
    odd = timezone(timedelta(hours=5, minutes=45))
    out: list[dict[str, Any]] = []
    for i in range(n):
        match i % 9:
            case 0:
                out.append({"task": "add", "args": [i, i]})
            case 1:
                out.append({"task": "declared", "args": [i], "kwargs": {"note": "tab\there"}})
            case 2:
                out.append({"task": "unknown", "args": [], "kwargs": {"é": "ü\\n", "n": 2**70}})
            case 3:
                out.append({"task": "echo", "args": [{"deep": [1, None, True]}], "delay": 1.5})
            case 4:
                out.append(
                    {
                        "task": "add",
                        "args": [1, 2],
                        "run_at": datetime(2031, 5, 6, 7, 8, 9, 123456, odd),
                    }
                )
            case 5:
                out.append({"task": "add", "args": [i, 1], "priority": -7, "queue": "other"})
            case 6:
                out.append({"task": "echo", "args": ["x"], "max_attempts": 9, "timeout": 2.5})
            case 7:
                out.append({"task": "echo", "args": [i], "delay": timedelta(seconds=0.0000005)})
            case _:
                out.append({"task": "note", "args": ["n"], "concurrency_key": f"k{i % 3}"})
    return out


def rows(conn: psycopg.Connection[Any], ids: list[int]) -> list[tuple[Any, ...]]:
    return conn.execute(
        f"SELECT {COLUMNS} FROM pgqueue.jobs WHERE id = ANY(%s) ORDER BY id",  # type: ignore[arg-type]
        (ids,),
    ).fetchall()


def count(db: psycopg.Connection[Any]) -> int:
    return db.execute("SELECT count(*) FROM pgqueue.jobs").fetchone()[0]


def declare(db: psycopg.Connection[Any]) -> None:
    """A task only a worker declared: its jobs take its defaults from pgqueue.tasks."""
    db.execute(
        "INSERT INTO pgqueue.tasks (name, queue, priority, max_attempts, timeout) "
        "VALUES ('declared', 'declared-q', 4, 6, 12)"
    )


def test_copied_rows_equal_inserted_rows_column_by_column(app, db, dsn):
    declare(db)
    batch = mixed(N)
    specs = app._specs(batch)
    assert copyable(specs)
    with psycopg.connect(dsn) as conn:  # one transaction: now() is the same for both
        ids = app.enqueue_many(batch, conn=conn)
        with conn.cursor() as cur:
            inserted = drive_on(plans.job_insert_many(specs), cur)
        copied_rows, inserted_rows = rows(conn, ids), rows(conn, inserted)
        conn.commit()
    assert len(ids) == N and ids == sorted(ids), "ids in input order"
    assert copied_rows == inserted_rows
    # And they are what was asked, in order.
    assert [r[2] for r in copied_rows] == [job.get("args", []) for job in batch]
    declared = next(r for r in copied_rows if r[1] == "declared")
    assert (declared[0], declared[5], declared[8]) == ("declared-q", 4, 6)
    delayed = next(r for r in copied_rows if r[1] == "echo" and r[6] != r[15])
    assert delayed[6] - delayed[15] == timedelta(seconds=1.5)
    assert count(db) == 2 * N


def test_ids_come_back_in_order_when_the_sequence_is_not_consecutive(app, db, dsn):
    with psycopg.connect(dsn) as conn:
        conn.execute("ALTER SEQUENCE pgqueue.jobs_id_seq INCREMENT BY 7")
        ids = app.enqueue_many([{"task": "echo", "args": [i]} for i in range(N)], conn=conn)
        got = conn.execute("SELECT id, args->>0 FROM pgqueue.jobs ORDER BY id").fetchall()
        conn.rollback()  # the sequence's increment too
    assert ids == [job_id for job_id, _ in got]
    assert [int(arg) for _, arg in got] == list(range(N))
    assert all(b - a == 7 for a, b in itertools.pairwise(ids))
    assert count(db) == 0


def test_a_batch_larger_than_a_chunk(app, db):
    n = ROWS_PER_CHUNK * 2 + 17
    ids = app.enqueue_many([{"task": "echo", "args": [i]} for i in range(n)])
    assert len(ids) == n
    got = db.execute("SELECT id, (args->>0)::int FROM pgqueue.jobs ORDER BY id").fetchall()
    assert got == list(zip(ids, range(n), strict=True))


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        ({"task": "echo", "args": [object()]}, SerializationError, "arguments of echo are not"),
        ({"task": "echo", "args": ["\x00"]}, SerializationError, "contain a NUL character"),
        ({"task": "echo", "delay": -1}, ConfigurationError, "delay must be >= 0"),
        ({"task": "", "args": []}, ConfigurationError, "task must be a non-empty string"),
        ("echo", ConfigurationError, "must be a dict with a 'task' key"),
    ],
)
def test_bad_input_in_the_middle_inserts_nothing(app, db, dsn, bad, error, message):
    middle = N // 2
    batch: list[Any] = [{"task": "echo", "args": [i]} for i in range(N)]
    batch[middle] = bad
    small: list[Any] = [{"task": "echo", "args": [1]}, bad]  # the INSERT's batch size
    with pytest.raises(error) as small_error:
        app.enqueue_many(small)
    with pytest.raises(error, match=message) as big_error:
        app.enqueue_many(batch)
    assert str(big_error.value) == str(small_error.value).replace("#1", f"#{middle}")
    with psycopg.connect(dsn) as conn, pytest.raises(error, match=message):
        app.enqueue_many(batch, conn=conn)
    assert count(db) == 0


def clash_in_second_chunk(db: psycopg.Connection[Any]) -> None:
    """A job whose id the next COPY of more than a chunk draws for a row of its second
    chunk: the COPY fails there, on the server, half-way through the rows."""
    drawn = db.execute("SELECT nextval('pgqueue.jobs_id_seq')").fetchone()[0]
    clash = drawn + ROWS_PER_CHUNK + 5
    db.execute("INSERT INTO pgqueue.jobs (id, task) VALUES (%s, 'echo')", (clash,))


def test_a_failure_inside_the_copy_leaves_nothing(app, db, dsn):
    batch = [{"task": "echo", "args": [i]} for i in range(ROWS_PER_CHUNK + 10)]
    clash_in_second_chunk(db)
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO public.effects (note) VALUES ('mine')")
        with pytest.raises(InvalidJobState, match=r"already exists"):
            app.enqueue_many(batch, conn=conn)
        conn.rollback()
    assert count(db) == 1
    clash_in_second_chunk(db)
    with pytest.raises(InvalidJobState, match=r"already exists"):
        app.enqueue_many(batch)
    assert count(db) == 2, "the COPY on our own connection failed whole"
    assert len(app.enqueue_many(batch)) == len(batch), "and the connection is fine"


def test_a_rolled_back_transaction_leaves_nothing_and_wakes_nobody(app, db, dsn):
    register_waiting_worker(db)
    batch = [{"task": "echo", "args": [i], "delay": i % 2} for i in range(N)]

    def rolled_back() -> None:
        with psycopg.connect(dsn) as conn:
            assert len(app.enqueue_many(batch, conn=conn)) == N
            assert conn.execute("SELECT count(*) FROM pgqueue.jobs").fetchone()[0] == N
            conn.rollback()
        with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction() as tx:
            app.enqueue_many(batch, conn=conn)
            raise psycopg.Rollback(tx)

    assert woken(dsn, rolled_back) == []
    assert count(db) == 0
    engine = create_engine(sqlalchemy_url(dsn))
    try:
        with Session(engine) as session:
            session.execute(text("SELECT 1"))
            app.enqueue_many(batch, conn=session)
            session.rollback()
        assert count(db) == 0
        with Session(engine) as session, session.begin():
            assert len(app.enqueue_many(batch, conn=session)) == N
        assert count(db) == N
    finally:
        engine.dispose()


def test_an_autocommit_connection_gets_the_batch_whole(app, db, dsn):
    batch = [{"task": "echo", "args": [i], "delay": 60} for i in range(N)]
    with psycopg.connect(dsn, autocommit=True) as conn:
        ids = app.enqueue_many(batch, conn=conn)
    times = db.execute(
        "SELECT DISTINCT run_at - created_at FROM pgqueue.jobs WHERE id = ANY(%s)", (ids,)
    ).fetchall()
    assert times == [(timedelta(seconds=60),)], "run_at from the COPY's own now()"


def register_waiting_worker(db: psycopg.Connection[Any]) -> None:
    """A worker row that says nothing of waiting: inserts wake it (see migration 0015)."""
    db.execute(
        "INSERT INTO pgqueue.workers (id, host, pid, queues, concurrency, lease) "
        "VALUES (%s, 'test', 1, '{*}', 10, 30)",
        (uuid.uuid4(),),
    )


def woken(dsn: str, produce: Any) -> list[str]:
    """The wake-ups `produce()` sends. A mark notified after it arrives after any of them
    (notifications come in commit order), so nothing is left to wait for."""
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN pgqueue_jobs")
        produce()
        with psycopg.connect(dsn, autocommit=True) as other:
            other.execute("SELECT pg_notify('pgqueue_jobs', %s)", (MARK,))
        got: list[str] = []
        for note in listener.notifies(timeout=10.0):
            if note.payload == MARK:
                return got
            got.append(note.payload)
    pytest.fail("the mark never came")


def test_the_wake_up_and_the_statistics_see_copied_rows(app, db, dsn):
    register_waiting_worker(db)
    batch = [{"task": "echo", "args": [i], "queue": ("a", "b")[i % 2]} for i in range(N)]
    batch += [{"task": "echo", "args": [0], "queue": "later", "delay": 3600}]
    assert sorted(woken(dsn, lambda: app.enqueue_many(batch))) == ["a", "b", "later"]
    totals = db.execute(
        """
        SELECT queue, state, sum(n)::int FROM (
            SELECT queue, state, jobs AS n FROM pgqueue.stats_totals
            UNION ALL
            SELECT queue, state, n FROM pgqueue.stats_changes WHERE measure = 'jobs') AS t
        GROUP BY 1, 2 HAVING sum(n) <> 0 ORDER BY 1
        """
    ).fetchall()
    assert totals == [("a", "queued", N // 2), ("b", "queued", N - N // 2), ("later", "queued", 1)]
    shown = {r["queue"]: (r["queued"], r["scheduled"]) for r in app.store.queue_stats()}
    assert shown == {"a": (N // 2, 0), "b": (N - N // 2, 0), "later": (0, 1)}


def test_jobs_with_unique_keys_or_dependencies_keep_the_insert(app, db):
    parent = app.enqueue("echo", args=[0])
    holder = app.enqueue("echo", args=[0], unique_key="held")
    batch: list[dict[str, Any]] = [{"task": "echo", "args": [i]} for i in range(N)]
    batch[5] = {"task": "echo", "args": [5], "unique_key": "held"}
    batch[6] = {"task": "echo", "args": [6], "depends_on": [parent]}
    ids = app.enqueue_many(batch)
    assert ids[5] == holder, "a taken key gives the holder's id"
    assert len(set(ids)) == N
    assert app.get_job(ids[6]).depends_on == [parent]
    assert count(db) == N + 1


def test_async_twin(app, db, dsn):
    register_waiting_worker(db)
    batch = [{"task": "echo", "args": [i], "delay": i % 3} for i in range(N)]

    async def main() -> tuple[list[int], list[int]]:
        own = await app.enqueue_many_async(batch)
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            await app.enqueue_many_async(batch, conn=conn)
            await conn.rollback()
            theirs = await app.enqueue_many_async(batch, conn=conn)
            await conn.commit()
        return own, theirs

    own, theirs = asyncio.run(main())
    assert own == sorted(own) and theirs == sorted(theirs) and own[-1] < theirs[0]
    assert count(db) == 2 * N
    shape = (
        "SELECT task, args, run_at - created_at FROM pgqueue.jobs WHERE id = ANY(%s) ORDER BY id"
    )
    assert db.execute(shape, (own,)).fetchall() == db.execute(shape, (theirs,)).fetchall()
    later = db.execute(
        "SELECT count(*) FROM pgqueue.jobs WHERE run_at - created_at = interval '2 s'"
    ).fetchone()[0]
    assert later == 2 * len(batch[2::3])


def test_run_at_in_any_zone_and_far_off_is_stored_exactly(app, db):
    moments = [
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(9999, 12, 30, tzinfo=timezone(timedelta(hours=-11))),
        datetime(2001, 2, 3, 4, 5, 6, 7, tzinfo=timezone(timedelta(hours=14))),
    ]
    batch = [{"task": "echo", "run_at": moments[i % 4]} for i in range(N)]
    ids = app.enqueue_many(batch)
    got = db.execute("SELECT run_at FROM pgqueue.jobs ORDER BY id").fetchall()
    assert len(ids) == N
    assert [r[0] for r in got] == [moments[i % 4] for i in range(N)]


def test_small_batches_keep_the_insert(app):
    assert not copyable(app._specs([{"task": "echo"}] * (COPY_MIN_JOBS - 1)))
    assert copyable(app._specs([{"task": "echo"}] * COPY_MIN_JOBS))


def test_the_callers_settings_are_left_alone(app, dsn):
    # Ids drawn in a statement of its own skip the wait for the disk; never the caller's
    # transaction, nor the session afterwards.
    batch = [{"task": "echo", "args": [i]} for i in range(N)]
    with psycopg.connect(dsn) as conn:
        app.enqueue_many(batch, conn=conn)
        assert conn.execute("SHOW synchronous_commit").fetchone()[0] == "on"
        conn.commit()
    with psycopg.connect(dsn, autocommit=True) as conn:
        app.enqueue_many(batch, conn=conn)
        assert conn.execute("SHOW synchronous_commit").fetchone()[0] == "on"
