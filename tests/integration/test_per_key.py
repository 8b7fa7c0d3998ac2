"""Per-key concurrency: a queue's cap on running jobs per `concurrency_key`, cluster-wide, with
keys taking turns so that one key's backlog cannot starve another's."""

from __future__ import annotations

import contextlib
import threading
import time

import psycopg
import pytest

import pgqueue
from tests import jobs
from tests.conftest import running_worker
from tests.waiting import wait_for


class RunningPerKey:
    """Samples the table: the most jobs of one key ever seen running at once."""

    def __init__(self, dsn: str, queue: str) -> None:
        self.dsn, self.queue = dsn, queue
        self.peak: dict[str, int] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self._stop.is_set():
                rows = conn.execute(
                    "SELECT concurrency_key, count(*) FROM pgqueue.jobs "
                    "WHERE state = 'running' AND queue = %s GROUP BY 1",
                    (self.queue,),
                ).fetchall()
                for key, n in rows:
                    self.peak[key] = max(self.peak.get(key, 0), n)
                self.samples += 1

    def __enter__(self) -> RunningPerKey:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


# With one key every claim after the first takes the one-key path (migration 0024).
@pytest.mark.parametrize("keys", [4, 1])
def test_the_cap_per_key_holds_across_workers(app, dsn, db, keys):
    app.set_queue_limits("tenants", per_key=2)
    jobs = [
        {"task": "async_sleep", "args": [0.02], "queue": "tenants", "concurrency_key": f"c{k}"}
        for k in range(keys)
        for _ in range(100 // keys)
    ]
    ids = app.enqueue_many(jobs)
    with RunningPerKey(dsn, "tenants") as monitor, contextlib.ExitStack() as stack:
        for _ in range(3):
            stack.enter_context(running_worker(dsn, concurrency=10))
        wait_for(lambda: all(app.get_job(i).state == "succeeded" for i in ids), timeout=60)
    assert monitor.samples > 10
    assert set(monitor.peak) <= {"c0", "c1", "c2", "c3"}
    assert max(monitor.peak.values()) <= 2, monitor.peak
    assert max(monitor.peak.values()) == 2, f"the cap should be reached: 30 slots, {keys} keys"


def test_a_quiet_key_is_not_starved_by_a_noisy_one(app, worker, dsn, db):
    # The cap is no help here (the noisy key never reaches it): only turn-taking is.
    app.set_queue_limits("tenants", per_key=100)
    app.enqueue_many(
        [
            {"task": "async_sleep", "args": [0.005], "queue": "tenants", "concurrency_key": "noisy"}
            for _ in range(2000)
        ]
    )
    quiet = app.enqueue("echo", ["hello"], queue="tenants", concurrency_key="quiet")
    with worker(concurrency=4):
        wait_for(lambda: app.get_job(quiet).state == "succeeded", timeout=30)
        left = db.execute(
            "SELECT count(*) FROM pgqueue.jobs WHERE concurrency_key = 'noisy' AND state = 'queued'"
        ).fetchone()[0]
    assert left > 1000, f"the quiet key's job waited for the noisy backlog ({left} left)"


def test_keys_take_turns_in_the_order_they_come(app, worker, dsn, db):
    app.set_queue_limits("tenants", per_key=1)
    for key in ("a", "b", "c"):
        app.enqueue_many(
            [
                {"task": "echo", "args": [f"{key}{i}"], "queue": "tenants", "concurrency_key": key}
                for i in range(3)
            ]
        )
    with worker(concurrency=1):
        wait_for(
            lambda: (
                db.execute(
                    "SELECT count(*) FROM pgqueue.jobs WHERE state = 'succeeded'"
                ).fetchone()[0]
                == 9
            ),
            timeout=30,
        )
    keys = [
        r[0]
        for r in db.execute(
            "SELECT concurrency_key FROM pgqueue.jobs ORDER BY started_at, id"
        ).fetchall()
    ]
    assert keys == ["a", "b", "c"] * 3


def test_priority_orders_jobs_within_a_key(app, worker, db):
    app.set_queue_limits("tenants", per_key=1)
    low = app.enqueue("echo", ["low"], queue="tenants", concurrency_key="k", priority=0)
    high = app.enqueue("echo", ["high"], queue="tenants", concurrency_key="k", priority=5)
    with worker(concurrency=2):
        wait_for(lambda: app.get_job(low).state == "succeeded", timeout=30)
    assert app.get_job(high).started_at <= app.get_job(low).started_at


def test_jobs_without_a_key_still_run_in_a_per_key_queue(app, worker):
    app.set_queue_limits("tenants", per_key=1)
    keyed = [app.enqueue("echo", [i], queue="tenants", concurrency_key="k") for i in range(3)]
    plain = [app.enqueue("echo", [i], queue="tenants") for i in range(3)]
    with worker(concurrency=4):
        wait_for(
            lambda: all(app.get_job(i).state == "succeeded" for i in keyed + plain), timeout=30
        )


def test_keys_are_ignored_where_the_queue_has_no_per_key_limit(app, worker, dsn):
    ids = [app.enqueue("echo", [i], concurrency_key="same") for i in range(20)]
    with RunningPerKey(dsn, "default"), worker(concurrency=10):
        wait_for(lambda: all(app.get_job(i).state == "succeeded" for i in ids), timeout=30)
    assert app.get_job(ids[0]).concurrency_key == "same"


def test_removing_the_per_key_limit_frees_the_queue(app, worker, db):
    app.set_queue_limits("tenants", per_key=1)
    assert app.queues()[0]["per_key_limit"] == 1
    app.set_queue_limits("tenants", per_key=None)
    assert app.queues()[0]["per_key_limit"] is None
    ids = [app.enqueue("echo", [i], queue="tenants", concurrency_key="k") for i in range(5)]
    with worker(concurrency=5):
        wait_for(lambda: all(app.get_job(i).state == "succeeded" for i in ids), timeout=30)


def test_lifting_a_limit_lets_the_queue_run_at_once(app, worker):
    # The worker was told, re-read the settings, and then claimed only from the queues it
    # knew to have jobs, which a limited queue is not among: the rest waited for the
    # safety poll (4.9 s at the default 5 s).
    app.set_queue_limits("rated", rate=1, per=3600)
    ids = [jobs.tick.enqueue(i) for i in range(4)]
    with worker(concurrency=4, poll_interval=30):
        wait_for(lambda: sum(app.get_job(i).state == "succeeded" for i in ids) == 1, timeout=10)
        time.sleep(4.0)  # past the worker's catch-up claims (3.2 s): it waits for the poll
        assert sum(app.get_job(i).state == "succeeded" for i in ids) == 1
        app.set_queue_limits("rated", rate=None)
        wait_for(lambda: all(app.get_job(i).state == "succeeded" for i in ids), timeout=5)


def test_a_cleared_rate_limit_takes_its_window_with_it(app):
    # `queues limit --clear` then `--rate 5` kept a window of 0.01 s from before: 60 starts
    # in 0.17 s where 5 a second was meant.
    app.set_queue_limits("tenants", rate=5, per=0.01)
    app.set_queue_limits("tenants", concurrency=None, rate=None, per_key=None)  # --clear
    app.set_queue_limits("tenants", rate=5)
    (row,) = app.queues()
    assert (row["rate_limit"], row["rate_period"]) == (5, 1.0)
    app.set_queue_limits("tenants", rate=9)  # a new rate alone keeps the window it has
    app.set_queue_limits("tenants", per=60)
    app.set_queue_limits("tenants", rate=10)
    assert app.queues()[0]["rate_period"] == 60.0


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "2"])
def test_a_bad_per_key_limit_is_refused(app, bad):
    with pytest.raises(pgqueue.ConfigurationError, match="per_key"):
        app.set_queue_limits("tenants", per_key=bad)
    assert app.queues() == []


@pytest.mark.parametrize("bad", ["", "a\x00b", 42, "x" * 600])
def test_a_bad_concurrency_key_is_refused_before_anything_is_written(app, db, bad):
    with pytest.raises(pgqueue.ConfigurationError, match="concurrency_key"):
        app.enqueue("echo", [1], concurrency_key=bad)
    assert db.execute("SELECT count(*) FROM pgqueue.jobs").fetchone()[0] == 0
