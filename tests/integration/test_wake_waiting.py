"""Inserts wake workers only when one waits. NOTIFY serialises the commits of every
notifying transaction, so a wake-up nobody needs (every worker busy) costs producers; but a
worker that waits must never miss a job for want of one."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from tests import jobs
from tests.conftest import running_worker
from tests.waiting import wait_for

MARK = "wake-test-mark"


def register(db: psycopg.Connection[Any], queues: list[str], waiting: bool | None) -> None:
    db.execute(
        "INSERT INTO pgqueue.workers (id, host, pid, queues, concurrency, lease, waiting) "
        "VALUES (%s, 'test', 1, %s, 10, 30, %s)",
        (uuid.uuid4(), queues, waiting),
    )


def woken(dsn: str, insert: str) -> list[str]:
    """The wake-ups an insert (committed on its own) sends. A mark notified after it
    arrives after any of them (notifications come in commit order), so nothing is left to
    wait for once the mark is in."""
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN pgqueue_jobs")
        with psycopg.connect(dsn, autocommit=True) as producer:
            producer.execute(insert)
            producer.execute("SELECT pg_notify('pgqueue_jobs', %s)", (MARK,))
        got: list[str] = []
        for note in listener.notifies(timeout=10.0):
            if note.payload == MARK:
                return got
            got.append(note.payload)
    pytest.fail("the mark never came")


def insert_into(queue: str) -> str:
    return f"INSERT INTO pgqueue.jobs (task, args, queue, max_attempts) VALUES ('echo', '[1]', '{queue}', 3)"  # noqa: E501


def test_no_wake_up_while_no_worker_waits(dsn, db):
    register(db, ["*"], waiting=False)
    register(db, ["mail"], waiting=False)
    assert woken(dsn, insert_into("mail")) == []


def test_a_waiting_worker_of_the_queue_is_woken(dsn, db):
    register(db, ["mail"], waiting=True)
    assert woken(dsn, insert_into("mail")) == ["mail"]
    assert woken(dsn, insert_into("reports")) == [], "nobody waits on reports"
    register(db, ["*"], waiting=True)
    assert woken(dsn, insert_into("reports")) == ["reports"]


def test_a_worker_that_does_not_say_is_woken_as_before(dsn, db):
    register(db, ["*"], waiting=None)  # an older worker: no `waiting` written
    assert woken(dsn, insert_into("mail")) == ["mail"]


def test_a_busy_worker_is_not_woken_and_a_waiting_one_is(app, worker, dsn, db):
    with worker(concurrency=2, poll_interval=60.0):
        # Registered waiting; its slots full of sleeping jobs, it says it is busy.
        ids = [jobs.sleep.enqueue(1.5) for _ in range(2)]
        wait_for(lambda: db.execute("SELECT waiting FROM pgqueue.workers").fetchone()[0] is False)
        assert woken(dsn, insert_into("elsewhere")) == []
        # The sleepers end, the next claims find nothing: it waits, and a job wakes it.
        wait_for(lambda: all(app.get_job(i).state == "succeeded" for i in ids))
        wait_for(lambda: db.execute("SELECT waiting FROM pgqueue.workers").fetchone()[0])
        job_id = jobs.echo.enqueue("wake")
        assert app.wait(job_id, timeout=10) == "wake"


def test_a_job_committed_after_its_worker_began_to_wait_is_not_left_behind(app, worker, dsn, db):
    with worker(concurrency=1, poll_interval=60.0):
        busy = jobs.sleep.enqueue(1.0)
        wait_for(lambda: db.execute("SELECT waiting FROM pgqueue.workers").fetchone()[0] is False)
        # A producer inserts while the worker is busy (so nobody is woken) and commits
        # after the worker has begun to wait.
        producer = psycopg.connect(dsn)
        row = producer.execute(
            "INSERT INTO pgqueue.jobs (task, args, max_attempts) VALUES ('echo', '[\"late\"]', 3) "
            "RETURNING id"
        ).fetchone()
        assert row is not None
        wait_for(lambda: app.get_job(busy).state == "succeeded")
        wait_for(lambda: db.execute("SELECT waiting FROM pgqueue.workers").fetchone()[0])
        producer.commit()
        producer.close()
        # Found by the claims that follow the start of a wait, long before the 60 s poll.
        assert app.wait(row[0], timeout=15) == "late"


def test_a_worker_draining_a_per_key_backlog_does_not_flip_its_waiting_flag(app, dsn, db):
    """A claim held back by a per-key cap (reached while outcomes are being written) takes
    fewer jobs than it asks: that is no reason to say the worker waits. It used to, and
    the next claim said it no longer did: two writes to the workers row per claim."""
    db.execute(
        "CREATE TABLE public.flips (at timestamptz DEFAULT clock_timestamp());"
        "CREATE FUNCTION public.count_flips() RETURNS trigger LANGUAGE plpgsql AS $$"
        " BEGIN INSERT INTO public.flips DEFAULT VALUES; RETURN NEW; END $$;"
        "CREATE TRIGGER count_flips AFTER UPDATE OF waiting ON pgqueue.workers FOR EACH ROW"
        " WHEN (OLD.waiting IS DISTINCT FROM NEW.waiting) EXECUTE FUNCTION public.count_flips()"
    )
    app.set_queue_limits("tenants", per_key=10)
    ids = app.enqueue_many(
        [{"task": "echo", "args": [i], "queue": "tenants", "concurrency_key": "a"}
         for i in range(2000)]
    )  # fmt: skip
    with running_worker(dsn, concurrency=10):
        wait_for(lambda: app.get_job(ids[-1]).state == "succeeded", timeout=60)
    (flips,) = db.execute("SELECT count(*) FROM public.flips").fetchone()
    # Once busy, and once waiting again at the end; a few more where claims came up empty
    # twice in a row (4 to 6 here; a loaded machine writes outcomes later). Not one or two
    # per claim: 278 before.
    assert flips <= 40, f"{flips} flips of the waiting flag while 2,000 jobs ran"
