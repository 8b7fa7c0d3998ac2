"""pgqueue.testing: drain, assert_enqueued, eager mode and the plugin's database fixtures,
against a real database (the plugin's own `pgqueue_dsn` fixture)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import psycopg
import pytest

import pgqueue
from pgqueue.testing import (
    EagerJobFailed,
    assert_enqueued,
    assert_not_enqueued,
    drain,
    drain_async,
    eager,
    enqueued_jobs,
    use_database,
)

pytestmark = pytest.mark.timeout(120)

app = pgqueue.App("")
seen: list[tuple[str, object]] = []


@app.task(name="add")
def add(a: int, b: int) -> int:
    seen.append(("add", (a, b)))
    return a + b


@app.task(name="shout")
async def shout(word: str) -> str:
    seen.append(("shout", word))
    return word.upper()


@app.task(name="flaky", max_attempts=2, retry=pgqueue.RetryPolicy(base=60, jitter=0))
def flaky() -> None:
    seen.append(("flaky", pgqueue.context().attempt))
    raise ValueError("boom")


@app.task(name="parent")
def parent(n: int) -> None:
    for i in range(n):
        add.enqueue(i, i)  # enqueued by a handler: the same drain runs them


@app.task(name="with_followup")
def with_followup() -> None:
    pgqueue.context().enqueue("add", args=[40, 2])


@pytest.fixture
def shop(pgqueue_dsn: str) -> Iterator[pgqueue.App]:
    seen.clear()
    with use_database(app, pgqueue_dsn):
        yield app


def test_drain_runs_due_jobs_and_returns_them(shop):
    first = add.enqueue(1, 2)
    second = shout.enqueue("hi")
    later = add.options(delay=3600).enqueue(5, 5)
    ran = drain(shop)
    assert [(j.id, j.state, j.result) for j in ran] == [
        (first, "succeeded", 3),
        (second, "succeeded", "HI"),
    ]
    assert shop.get_job(later).state == "queued"
    assert drain(shop) == []  # nothing due: returns at once


def test_drain_runs_jobs_enqueued_by_handlers_and_followups(shop):
    parent.enqueue(3)
    with_followup.enqueue()
    ran = drain(shop)
    assert sorted(j.task for j in ran) == ["add", "add", "add", "add", "parent", "with_followup"]
    assert all(j.state == "succeeded" for j in ran)
    assert ("add", (40, 2)) in seen


def test_drain_runs_children_once_their_parents_succeed(shop):
    a, b = add.enqueue(1, 1), add.enqueue(2, 2)
    child = add.options(depends_on=[a, b]).enqueue(3, 3)
    ran = drain(shop)
    assert [j.id for j in ran][-1] == child
    assert shop.get_job(child).result == 6


def test_drain_leaves_backed_off_retries_unless_run_scheduled(shop):
    job_id = flaky.enqueue()
    (job,) = drain(shop)
    assert (job.state, job.attempts) == ("queued", 1)
    assert "ValueError: boom" in job.last_error
    (job,) = drain(shop, run_scheduled=True)
    assert (job.id, job.state, job.attempts) == (job_id, "dead", 2)


def test_run_scheduled_drains_every_failing_job_to_dead(shop):
    # Moving retries forward and asking whether anything was left were two statements: a
    # retry recorded between them was neither running nor due, and drain returned with the
    # job queued (2 runs in 10).
    for _ in range(10):
        job_id = flaky.options(max_attempts=3).enqueue()
        ran = drain(shop, run_scheduled=True)
        assert [(j.id, j.state, j.attempts) for j in ran] == [(job_id, "dead", 3)]


def test_drain_async(shop):
    async def main() -> list[pgqueue.Job]:
        await shout.enqueue_async("async")
        return await drain_async(shop)

    (job,) = asyncio.run(main())
    assert job.result == "ASYNC"


def test_assert_enqueued_matches_arguments_and_options(shop):
    job_id = add.options(queue="math", priority=5).enqueue(1, 2)
    assert assert_enqueued(add, args=[1, 2]).id == job_id
    assert_enqueued(add, args=(1, 2), queue="math", priority=5, count=1)
    assert_enqueued("add", app=shop)
    assert_not_enqueued(add, args=[2, 1])
    assert_not_enqueued(shout)
    with pytest.raises(AssertionError, match=r"no queued job of add args=\[9, 9\]"):
        assert_enqueued(add, args=[9, 9])
    with pytest.raises(AssertionError, match="expected no queued job of add"):
        assert_not_enqueued(add)
    drain(shop)
    assert_not_enqueued(add)
    assert enqueued_jobs(shop) == []


def test_eager_runs_the_job_before_enqueue_returns(shop):
    with eager(shop):
        job_id = add.enqueue(20, 22)
        assert shop.get_job(job_id).state == "succeeded"
        assert shop.wait(job_id, timeout=1) == 42
        parent.enqueue(2)  # and what the job enqueues
        assert [name for name, _ in seen].count("add") == 3
    later = add.enqueue(1, 1)  # eager mode is over
    assert shop.get_job(later).state == "queued"


def test_eager_raises_the_handlers_error(shop):
    with eager(shop), pytest.raises(EagerJobFailed, match="ValueError: boom"):
        flaky.enqueue()
    with eager(shop, propagate=False):
        job_id = flaky.enqueue()
    assert shop.get_job(job_id).last_error.startswith("ValueError: boom")


def test_overlapping_eager_blocks_end_with_the_last(shop):
    # Each block put back the pools it found when it began: the first to close left the
    # app in eager mode for good.
    first, second = eager(shop), eager(shop)
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert shop.get_job(add.enqueue(1, 1)).state == "succeeded", "the second still acts"
    second.__exit__(None, None, None)
    assert shop.get_job(add.enqueue(2, 2)).state == "queued", "eager mode is over"


def test_assert_enqueued_count_zero_says_what_to_use(shop):
    with pytest.raises(ValueError, match="assert_not_enqueued"):
        assert_enqueued(add, count=0)


def test_eager_waits_for_the_callers_commit(shop, pgqueue_dsn):
    with eager(shop), psycopg.connect(pgqueue_dsn) as conn:
        job_id = add.options(conn=conn).enqueue(1, 1)
        conn.commit()
        assert_enqueued(add, args=[1, 1])  # written in a transaction: not run by enqueue
        drain(shop)
    assert shop.get_job(job_id).result == 2


def test_eager_async(shop):
    async def main() -> int:
        with eager(shop):
            return await shout.enqueue_async("loud")

    job_id = asyncio.run(main())
    assert shop.get_job(job_id).result == "LOUD"


def test_each_test_gets_an_empty_database(shop, pgqueue_dsn):
    with psycopg.connect(pgqueue_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM pgqueue.jobs").fetchone() == (0,)
    add.enqueue(1, 1)  # left behind on purpose: the next test starts empty again
