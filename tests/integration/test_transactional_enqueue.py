"""A job exists exactly when the producer's transaction commits, and only then wakes anyone."""

from __future__ import annotations

import asyncio
import math

import psycopg
import pytest
from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session, scoped_session, sessionmaker

import pgqueue
from pgqueue.migrate import sqlalchemy_url
from tests import jobs


def count_jobs(db: psycopg.Connection) -> int:
    return db.execute("SELECT count(*) FROM pgqueue.jobs").fetchone()[0]


class Listener:
    """A separate connection LISTENing on the workers' channel, as a worker of every queue
    that waits for jobs (inserts wake only waiting workers)."""

    def __init__(self, dsn: str) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.conn.execute(
            "INSERT INTO pgqueue.workers (id, host, pid, queues, concurrency, lease, waiting) "
            "VALUES (gen_random_uuid(), 'listener', 1, '{*}', 1, 3600, true)"
        )
        self.conn.execute("LISTEN pgqueue_jobs")

    def received(self, wait: float = 0.3) -> list[str]:
        return [n.payload for n in self.conn.notifies(timeout=wait, stop_after=10)]

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def listener(dsn: str):
    lst = Listener(dsn)
    yield lst
    lst.close()


def test_psycopg_rollback_leaves_nothing_and_commit_one(dsn, db, listener):
    with psycopg.connect(dsn) as conn:
        jobs.add.options(conn=conn).enqueue(1, 2)
        conn.rollback()
        assert count_jobs(db) == 0
        assert listener.received() == []
        job_id = jobs.add.options(conn=conn).enqueue(1, 2)
        assert count_jobs(db) == 0, "not visible before commit"
        conn.commit()
    assert count_jobs(db) == 1
    assert listener.received() == ["default"]
    assert jobs.app.get_job(job_id).task == "add"


def test_app_enqueue_by_name_in_transaction(dsn, db, listener):
    with psycopg.connect(dsn) as conn:
        jobs.app.enqueue("add", args=[1, 2], conn=conn)
        conn.rollback()
    assert count_jobs(db) == 0
    assert listener.received() == []


def test_sqlalchemy_session_rollback_and_commit(dsn, db, listener):
    engine = create_engine(sqlalchemy_url(dsn))
    try:
        with Session(engine) as session:
            session.execute(__import__("sqlalchemy").text("SELECT 1"))
            jobs.add.options(conn=session).enqueue(2, 3)
            session.rollback()
        assert count_jobs(db) == 0
        assert listener.received() == []
        with Session(engine) as session, session.begin():
            jobs.add.options(conn=session).enqueue(2, 3)
        assert count_jobs(db) == 1
        assert listener.received() == ["default"]
        with engine.connect() as conn:
            jobs.app.enqueue("add", args=[1, 1], conn=conn)
            conn.rollback()
        assert count_jobs(db) == 1
    finally:
        engine.dispose()


def test_sqlalchemy_connection_commits_the_job_it_was_given(dsn, db, listener):
    # "Commit as you go": the enqueue is the connection's first statement, so SQLAlchemy has
    # begun nothing yet; its commit() must still commit the job (it once did nothing, and
    # the job was rolled back when the connection went back to the pool).
    engine = create_engine(sqlalchemy_url(dsn))
    try:
        with engine.connect() as conn:
            job_id = jobs.add.options(conn=conn).enqueue(1, 2)
            assert count_jobs(db) == 0, "not visible before commit"
            conn.commit()
        assert jobs.app.get_job(job_id).state == "queued"
        assert listener.received() == ["default"]
        with engine.connect() as conn:
            ids = jobs.app.enqueue_many([{"task": "add", "args": [i, i]} for i in range(3)], conn)
            jobs.app.enqueue("add", args=[9, 9], conn=conn)
            conn.commit()
        assert all(jobs.app.get_job(i) is not None for i in ids)
        assert count_jobs(db) == 5
        with engine.connect() as conn:
            jobs.add.options(conn=conn).enqueue(1, 2)
        assert count_jobs(db) == 5, "closed without commit: rolled back"
    finally:
        engine.dispose()


def test_sqlalchemy_async_connection_commits_the_job_it_was_given(dsn, db, listener):
    async def scenario() -> int:
        engine = create_async_engine(sqlalchemy_url(dsn))
        try:
            async with engine.connect() as conn:
                job_id = await jobs.add.options(conn=conn).enqueue_async(1, 2)
                await conn.commit()
            async with engine.connect() as conn:
                await jobs.app.enqueue_async("add", args=[3, 3], conn=conn)
                await conn.rollback()
            return job_id
        finally:
            await engine.dispose()

    job_id = asyncio.run(scenario())
    assert count_jobs(db) == 1
    assert jobs.app.get_job(job_id).state == "queued"
    assert listener.received() == ["default"]


def test_psycopg_async_rollback_and_commit(dsn, db, listener):
    async def scenario() -> None:
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            await jobs.add.options(conn=conn).enqueue_async(1, 2)
            await conn.rollback()
            assert count_jobs(db) == 0
            await jobs.add.options(conn=conn).enqueue_async(1, 2)
            await conn.commit()

    asyncio.run(scenario())
    assert count_jobs(db) == 1
    assert listener.received() == ["default"]


def test_sqlalchemy_async_session_rollback_and_commit(dsn, db, listener):
    async def scenario() -> None:
        engine = create_async_engine(sqlalchemy_url(dsn))
        try:
            async with AsyncSession(engine) as session:
                await jobs.add.options(conn=session).enqueue_async(1, 2)
                await session.rollback()
            assert count_jobs(db) == 0
            assert listener.received() == []
            async with AsyncSession(engine) as session, session.begin():
                await jobs.app.enqueue_async("add", args=[5, 5], conn=session)
        finally:
            await engine.dispose()

    asyncio.run(scenario())
    assert count_jobs(db) == 1
    assert listener.received() == ["default"]


def test_unserialisable_args_raise_and_insert_nothing(dsn, db):
    with pytest.raises(jobs.pgqueue.SerializationError, match="not JSON-serialisable"):
        jobs.add.enqueue(object(), 1)
    with pytest.raises(jobs.pgqueue.SerializationError):
        jobs.app.enqueue_many([{"task": "add", "args": [1, 2]}, {"task": "add", "args": [{1, 2}]}])
    assert count_jobs(db) == 0


def test_bulk_insert_notifies_once_per_queue(dsn, db, listener):
    ids = jobs.app.enqueue_many(
        [{"task": "add", "args": [i, i]} for i in range(500)]
        + [{"task": "add", "args": [1, 1], "queue": "other"}]
    )
    assert len(ids) == 501 and ids == sorted(ids)
    assert sorted(listener.received()) == ["default", "other"]


def test_plain_sql_insert_wakes_workers(dsn, db, listener):
    db.execute("INSERT INTO pgqueue.jobs (task, args) VALUES ('add', '[1, 2]')")
    assert listener.received() == ["default"]


def test_unique_key_returns_existing_id(dsn, db):
    first = jobs.add.options(unique_key="k1").enqueue(1, 2)
    second = jobs.add.options(unique_key="k1").enqueue(1, 2)
    ids = jobs.app.enqueue_many(
        [
            {"task": "add", "args": [1, 2], "unique_key": "k1"},
            {"task": "add", "args": [1, 2], "unique_key": "k2"},
            {"task": "add", "args": [1, 2], "unique_key": "k2"},
        ]
    )
    assert first == second == ids[0]
    assert ids[1] == ids[2] != first
    assert count_jobs(db) == 2


def test_bulk_ids_come_back_in_input_order(dsn, db):
    specs = [{"task": "add", "args": [i, 0], "priority": (i * 7) % 5} for i in range(500)]
    ids = jobs.app.enqueue_many(specs)
    rows = dict(db.execute("SELECT id, args->>0 FROM pgqueue.jobs").fetchall())
    assert [int(rows[i]) for i in ids] == list(range(500))
    # The same with unique keys in the batch (another statement).
    keyed = [{"task": "add", "args": [i, 1], "unique_key": f"k{i % 3}"} for i in range(6)]
    ids = jobs.app.enqueue_many(keyed)
    assert ids[:3] == ids[3:] and len(set(ids)) == 3


def test_infinite_delays_and_timeouts_are_refused(dsn, db):
    for bad in ({"delay": math.inf}, {"timeout": math.inf}, {"delay": math.nan}):
        with pytest.raises(pgqueue.ConfigurationError, match="finite"):
            jobs.app.enqueue_many([{"task": "add", "args": [1, 2], **bad}] * 2)
    assert db.execute("SELECT count(*) FROM pgqueue.jobs").fetchone()[0] == 0


def test_scoped_sessions_and_asyncio_connections_in_sync_enqueue(dsn, db, listener):
    # Flask-SQLAlchemy's db.session is a scoped_session: it was refused.
    engine = create_engine(sqlalchemy_url(dsn))
    scoped = scoped_session(sessionmaker(engine))
    try:
        job_id = jobs.add.options(conn=scoped).enqueue(1, 2)
        scoped.rollback()
        assert count_jobs(db) == 0
        job_id = jobs.add.options(conn=scoped).enqueue(1, 2)
        scoped.commit()
        assert jobs.app.get_job(job_id).state == "queued"
    finally:
        scoped.remove()
        engine.dispose()

    # An asyncio connection given to the sync enqueue: one clear line (it was "unique keys
    # kept changing hands", and a coroutine never awaited).
    async def scenario() -> None:
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            with pytest.raises(pgqueue.ConfigurationError, match="enqueue_async"):
                jobs.add.options(conn=conn).enqueue(1, 2)
        aengine = create_async_engine(sqlalchemy_url(dsn))
        try:
            async with AsyncSession(aengine) as session:
                with pytest.raises(pgqueue.ConfigurationError, match="enqueue_async"):
                    jobs.app.enqueue("add", args=[1, 2], conn=session)
        finally:
            await aengine.dispose()

    asyncio.run(scenario())
    assert count_jobs(db) == 1
