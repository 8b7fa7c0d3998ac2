"""Unique jobs: race-free across connections, and optionally held for a while after."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

import pgqueue
from tests import jobs
from tests.waiting import wait_for


def test_twenty_threads_same_key_make_one_job(app, dsn, db):
    barrier = threading.Barrier(20)
    ids: list[int] = []
    errors: list[BaseException] = []

    def enqueue() -> None:
        try:
            # Each thread on its own connection and transaction, released at once.
            with psycopg.connect(dsn) as conn:
                barrier.wait()
                ids.append(jobs.add.options(conn=conn, unique_key="same").enqueue(1, 2))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=enqueue) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert len(ids) == 20 and len(set(ids)) == 1
    assert db.execute("SELECT count(*) FROM pgqueue.jobs").fetchone()[0] == 1


def test_key_is_free_again_once_the_job_finished(app, worker):
    first = jobs.add.options(unique_key="k").enqueue(1, 2)
    with worker():
        app.wait(first, timeout=10)
    second = jobs.add.options(unique_key="k").enqueue(1, 2)
    assert second != first


def test_unique_for_holds_the_key_after_the_job_finished(app, worker):
    first = jobs.add.options(unique_key="hold", unique_for=1.0).enqueue(1, 2)
    with worker():
        app.wait(first, timeout=10)
        assert jobs.add.options(unique_key="hold", unique_for=1.0).enqueue(1, 2) == first
        time.sleep(1.1)
        later = jobs.add.options(unique_key="hold", unique_for=1.0).enqueue(1, 2)
    assert later != first
    assert app.get_job(first).unique_until is None


def test_unique_for_needs_a_key(app):
    with pytest.raises(pgqueue.ConfigurationError, match="unique_for needs a unique_key"):
        jobs.add.options(unique_for=5).enqueue(1, 2)


def test_retry_takes_a_key_whose_window_has_passed(app, worker, db):
    # Dead jobs whose keys another job held for a second after it finished: once that
    # second has passed, retry (one job, and every dead one) takes the key. It stayed
    # refused until someone enqueued the key again.
    keys = ("w1", "w2")
    dead = [jobs.always_fails.options(unique_key=k, max_attempts=1).enqueue() for k in keys]
    with worker():
        for job_id in dead:
            with pytest.raises(pgqueue.JobFailed):
                app.wait(job_id, timeout=10)
        for k in keys:
            app.wait(jobs.add.options(unique_key=k, unique_for=1.0).enqueue(1, 1), timeout=10)
    assert not app.retry(dead[0]), "the key is held for a second after its job finished"
    time.sleep(1.1)
    assert app.retry(dead[0])
    assert jobs.app.store.job_retry_dead(queue=None)[0] == 1  # type: ignore[attr-defined]
    states = db.execute("SELECT state FROM pgqueue.jobs WHERE id = ANY(%s)", (dead,)).fetchall()
    assert states == [("queued",), ("queued",)]


def test_a_unique_for_window_starts_however_the_job_ends(app, worker, db, dsn):
    """Cancelled while queued, ended by the rescue, cancelled with its parent: each holds
    its key for unique_for, as a job whose worker wrote its outcome does (those three freed
    it at once)."""
    import asyncio
    import uuid

    from pgqueue.maintenance import Rescuer
    from tests.stores import with_store

    def again(key: str) -> int:
        return jobs.add.options(unique_key=key, unique_for=60).enqueue(1, 1)

    queued = jobs.add.options(unique_key="queued", unique_for=60, delay=30).enqueue(1, 1)
    assert app.cancel(queued)
    lost = jobs.add.options(unique_key="lost", unique_for=60, max_attempts=1).enqueue(1, 1)
    gone = uuid.uuid4()

    async def rescue(store) -> None:
        await store.worker_register(gone, "gone", 1, None, 1, 1.0)
        db.execute(
            "UPDATE pgqueue.jobs SET state = 'running', attempts = 1, worker_id = %s,"
            " started_at = now() WHERE id = %s",
            (gone, lost),
        )
        db.execute(
            "UPDATE pgqueue.workers SET heartbeat_at = now() - interval '1 hour' WHERE id = %s",
            (gone,),
        )
        assert await Rescuer(store).run_once() == 1

    asyncio.run(with_store(dsn, rescue))
    parent = jobs.always_fails.options(max_attempts=1).enqueue()
    child = jobs.add.options(unique_key="child", unique_for=60, depends_on=[parent]).enqueue(1, 1)
    with worker():
        wait_for(lambda: app.get_job(child).state == "cancelled", timeout=20)
    assert [app.get_job(i).state for i in (queued, lost, child)] == [
        "cancelled",
        "dead",
        "cancelled",
    ]
    assert [again("queued"), again("lost"), again("child")] == [queued, lost, child]
