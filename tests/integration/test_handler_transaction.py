"""ctx.transaction(): what a handler writes through it exists if and only if its job ends
`succeeded` (exactly-once database effects), whatever happens to the attempt."""

from __future__ import annotations

import pytest

from tests.waiting import wait_for


def rows(db, note: str = "tx") -> list[tuple[int, int]]:
    return db.execute(
        "SELECT job_id, attempt FROM public.effects WHERE note = %s ORDER BY 1, 2", (note,)
    ).fetchall()


@pytest.mark.parametrize("task", ["tx_insert", "tx_insert_async"])
def test_the_writes_commit_with_the_success(app, worker, db, task):
    ids = [app.enqueue(task, [n]) for n in range(20)]
    with worker(concurrency=5):
        wait_for(lambda: all(app.get_job(i).state == "succeeded" for i in ids), timeout=30)
    assert rows(db) == [(i, 1) for i in ids]
    assert [app.get_job(i).result for i in ids] == list(range(20))


@pytest.mark.parametrize("task", ["tx_insert", "tx_insert_async"])
def test_a_failed_attempt_leaves_nothing_and_its_retry_writes_once(app, worker, db, task):
    job_id = app.enqueue(task, [7], kwargs={"fail_first": True})
    with worker():
        wait_for(lambda: app.get_job(job_id).state == "succeeded", timeout=30)
    assert rows(db) == [(job_id, 2)], "attempt 1 failed: its row must be gone"
    assert app.get_job(job_id).attempts == 2


def test_a_cancelled_job_leaves_nothing(app, worker, db):
    job_id = app.enqueue("tx_then_wait", [30])
    with worker():
        wait_for(lambda: rows(db, "written"), timeout=30)
        assert app.cancel(job_id)
        wait_for(lambda: app.get_job(job_id).state == "cancelled", timeout=30)
    assert rows(db) == []


def test_a_job_taken_from_the_worker_meanwhile_leaves_nothing(app, worker, db):
    """The job was rescued (given to another worker) while the handler ran: the success is
    refused, and the handler's writes go with it."""
    job_id = app.enqueue("tx_then_wait", [1.0])
    with worker() as w:
        wait_for(lambda: rows(db, "written"), timeout=30)
        db.execute(
            "UPDATE pgqueue.jobs SET worker_id = gen_random_uuid(), attempts = attempts + 1 "
            "WHERE id = %s",
            (job_id,),
        )
        wait_for(lambda: w.processed == 1, timeout=30)  # its outcome was refused
    assert rows(db) == []
    assert app.get_job(job_id).state == "running"  # still the other worker's


def test_a_timed_out_thread_writes_nothing_anywhere(app, worker, db):
    """A sync handler's thread outlives its attempt's timeout and goes on writing: its
    transaction must not be given to the next job while it does (its rows were committed
    with that job's success), and it cannot open a new one."""
    stray = app.enqueue("tx_outlives_timeout", [1.0])
    others = [app.enqueue("tx_insert", [n], priority=-1) for n in range(3)]  # after it
    with worker(concurrency=1):  # one slot: the next job runs once the stray thread ended
        wait_for(lambda: all(app.get_job(i).state == "succeeded" for i in others), timeout=30)
    assert "TimeoutError" in app.get_job(stray).last_error
    assert rows(db, "thread done") == [(stray, 1)]
    assert rows(db, "late") == []
    assert rows(db) == [(i, 1) for i in others], "only the successes' own rows"
    assert rows(db, "refused") == [(stray, 1)]


def test_a_sync_transaction_in_an_async_handler_is_a_clear_error(app, worker):
    job_id = app.enqueue("tx_sync_in_async")
    with worker():
        wait_for(lambda: app.get_job(job_id).state == "dead", timeout=30)
    assert "async with ctx.transaction()" in app.get_job(job_id).last_error


def test_follow_ups_commit_in_the_same_transaction(app, worker, db):
    job_id = app.enqueue("tx_with_followup", [True])
    with worker():
        wait_for(lambda: app.get_job(job_id).state == "succeeded", timeout=30)
        wait_for(
            lambda: (
                db.execute(
                    "SELECT count(*) FROM pgqueue.jobs WHERE task = 'echo' AND state = 'succeeded'"
                ).fetchone()[0]
                == 1
            ),
            timeout=30,
        )
    assert rows(db) == [(job_id, 2)]
    followups = db.execute("SELECT args FROM pgqueue.jobs WHERE task = 'echo'").fetchall()
    assert followups == [([f"after {job_id}.2"],)], "attempt 1's follow-up must be gone"
