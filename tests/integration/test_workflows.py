"""Dependencies between jobs (fan-out, fan-in) and follow-ups enqueued by handlers."""

from __future__ import annotations

import time

import pytest

import pgqueue
from tests import jobs


def test_diamond_runs_in_order(app, worker):
    a = jobs.step.enqueue("a")
    b = jobs.step.options(depends_on=[a]).enqueue("b")
    c = jobs.step.options(depends_on=[a]).enqueue("c")
    d = jobs.step.options(depends_on=[b, c]).enqueue("d")
    assert app.get_job(d).state == "queued"
    with worker(concurrency=4):
        assert app.wait(d, timeout=15) == "d"
    order = [label for _, label in jobs.calls]
    assert order[0] == "a" and order[-1] == "d" and sorted(order[1:3]) == ["b", "c"]
    assert app.get_job(d).started_at >= max(app.get_job(b).finished_at, app.get_job(c).finished_at)


def test_dead_parent_cancels_children_and_grandchildren(app, worker):
    parent = app.enqueue("always_fails", max_attempts=1)
    child = jobs.step.options(depends_on=[parent]).enqueue("child")
    grandchild = jobs.step.options(depends_on=[child]).enqueue("grandchild")
    other = jobs.step.enqueue("independent")
    with worker():
        with pytest.raises(pgqueue.JobCancelled):
            app.wait(grandchild, timeout=15)
        app.wait(other, timeout=10)
    for job_id in (child, grandchild):
        job = app.get_job(job_id)
        assert job.state == "cancelled"
        assert job.last_error.startswith("Cancelled: a job it depends on ended dead or cancelled")
    assert [label for _, label in jobs.calls] == ["independent"]


def test_cancelled_parent_cancels_child_at_once(app):
    parent = jobs.step.options(delay=60).enqueue("p")
    child = jobs.step.options(depends_on=[parent]).enqueue("c")
    assert app.cancel(parent)
    assert app.get_job(child).state == "cancelled"


def test_child_of_finished_parents_is_due_at_once(app, worker):
    done = jobs.step.enqueue("first")
    with worker():
        app.wait(done, timeout=10)
        child = jobs.step.options(depends_on=[done]).enqueue("second")
        assert app.wait(child, timeout=10) == "second"


def test_unknown_parent_is_refused_and_nothing_inserted(app, db):
    with pytest.raises(pgqueue.ConfigurationError, match="unknown job"):
        jobs.step.options(depends_on=[123456789]).enqueue("orphan")
    with pytest.raises(pgqueue.ConfigurationError, match="depends_on"):
        jobs.step.options(depends_on=[]).enqueue("empty")
    assert db.execute("SELECT count(*) FROM pgqueue.jobs").fetchone()[0] == 0


def test_fan_out_fan_in_with_enqueue_many(app, worker):
    root = jobs.step.enqueue("root")
    leaves = app.enqueue_many(
        [{"task": "step", "args": [f"leaf{i}"], "depends_on": [root]} for i in range(5)]
    )
    join = app.enqueue("step", args=["join"], depends_on=leaves)
    with worker(concurrency=5):
        assert app.wait(join, timeout=15) == "join"
    order = [label for _, label in jobs.calls]
    assert order[0] == "root" and order[-1] == "join" and len(order) == 7


def test_follow_up_exists_iff_the_parent_succeeded(app, worker, db):
    ok = jobs.spawner.enqueue(False)
    retried = jobs.spawner.enqueue(True)
    with worker():
        app.wait(ok, timeout=10)
        app.wait(retried, timeout=10)
        deadline = time.monotonic() + 10
        while len(jobs.calls) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    notes = sorted(label for _, label in jobs.calls)
    # The failed first attempt's follow-up was never written; the successful ones were.
    assert notes == ["follow-up of attempt 1", "follow-up of attempt 2"]
    assert db.execute("SELECT count(*) FROM pgqueue.jobs WHERE task = 'note'").fetchone()[0] == 2
