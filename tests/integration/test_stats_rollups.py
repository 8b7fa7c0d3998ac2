"""The statistics rollups (migration 0014) against the truth: whatever happens to jobs, the
figures of `pgqueue stats`, /api/throughput and /metrics equal what a scan of pgqueue.jobs
says (percentiles apart, which are estimates). Each test drives jobs through a life that
could leave the counts wrong, then recomputes everything from the table. Jobs by state are
the rows in the table; what finished in a minute counts the rows deleted since too
(migration 0026), which a trigger of the tests keeps in `public.jobs_deleted`."""

from __future__ import annotations

import asyncio
import random
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

import pgqueue
from pgqueue import migrate
from pgqueue.maintenance import Pruner, Rescuer
from pgqueue.stats import BUCKETS, bucket_of
from pgqueue.store import AsyncJobStore, OutcomeRow
from pgqueue.web.server import create_app
from tests import jobs
from tests.server import scratch_database
from tests.stores import with_store
from tests.waiting import wait_for

FINISHED = ("succeeded", "dead", "cancelled")
NEVER = datetime(1, 1, 1, tzinfo=UTC)  # stands for '-infinity': finished_at unknown

Key = tuple[datetime, str, str, str, str, float]
# Finished jobs for the per-minute figures: those in the table and those deleted since.
FINISHED_ROWS = (
    "(SELECT * FROM pgqueue.jobs UNION ALL SELECT * FROM public.jobs_deleted) AS j"
    " WHERE state IN ('succeeded', 'dead', 'cancelled')"
)
# The counters of /metrics: every increase counted for a final state, since the schema
# was made (a retry that takes a job back out of one takes nothing off).
EVER = (
    "(SELECT * FROM public.changes_log"
    " WHERE n > 0 AND state IN ('succeeded', 'dead', 'cancelled')) AS c"
)


@pytest.fixture(autouse=True)
def deleted_rows(db: psycopg.Connection) -> Iterator[None]:
    """Keep a copy of every row deleted from pgqueue.jobs, for the per-minute truth."""
    db.execute("DROP TABLE IF EXISTS public.jobs_deleted")
    db.execute("CREATE TABLE public.jobs_deleted (LIKE pgqueue.jobs)")
    db.execute(
        """
        CREATE OR REPLACE FUNCTION public.keep_deleted_job() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO public.jobs_deleted SELECT OLD.*; RETURN NULL; END $$
        """
    )
    db.execute(
        "CREATE TRIGGER keep_deleted AFTER DELETE ON pgqueue.jobs"
        " FOR EACH ROW EXECUTE FUNCTION public.keep_deleted_job()"
    )
    # And of every change counted, for the counters of /metrics: each increase, once.
    db.execute("DROP TABLE IF EXISTS public.changes_log")
    db.execute("CREATE TABLE public.changes_log (LIKE pgqueue.stats_changes)")
    db.execute(
        """
        CREATE OR REPLACE FUNCTION public.log_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO public.changes_log SELECT NEW.*; RETURN NULL; END $$
        """
    )
    db.execute(
        "CREATE TRIGGER log_change AFTER INSERT ON pgqueue.stats_changes"
        " FOR EACH ROW EXECUTE FUNCTION public.log_change()"
    )
    yield
    db.execute("DROP TRIGGER keep_deleted ON pgqueue.jobs")
    db.execute("DROP TRIGGER log_change ON pgqueue.stats_changes")
    db.execute("DROP TABLE public.jobs_deleted")
    db.execute("DROP TABLE public.changes_log")


def truth(db: psycopg.Connection) -> dict[Key, tuple[int, float]]:
    """What the rollups should hold, computed here from every finished row (deleted ones
    too): per minute, queue, task ('' but for `jobs`), state, measure and bucket, the count
    and the sum."""
    counted: Counter[Key] = Counter()
    sums: Counter[Key] = Counter()
    rows = db.execute(
        "SELECT queue, task, state, finished_at, started_at, run_at, attempts, last_error "
        f"FROM {FINISHED_ROWS}"
    ).fetchall()
    for queue, task, state, finished, started, run_at, attempts, last_error in rows:
        minute = finished.replace(second=0, microsecond=0) if finished else NEVER
        counted[(minute, queue, task, state, "jobs", 0.0)] += 1
        counted[(minute, queue, "", state, "retries", 0.0)] += max(attempts - 1, 0)
        rescued = (last_error or "").startswith("WorkerLost")
        counted[(minute, queue, "", state, "rescued", 0.0)] += int(rescued)
        if started is not None:
            latency = max((started - run_at).total_seconds(), 0.0)
            counted[(minute, queue, "", state, "latency", bucket_of(latency))] += 1
            sums[(minute, queue, "", state, "latency", bucket_of(latency))] += latency
            if finished is not None:
                duration = max((finished - started).total_seconds(), 0.0)
                counted[(minute, queue, "", state, "duration", bucket_of(duration))] += 1
                sums[(minute, queue, "", state, "duration", bucket_of(duration))] += duration
    return {k: (n, sums[k]) for k, n in counted.items() if n}


def rollups(db: psycopg.Connection, since: datetime) -> dict[Key, tuple[int, float]]:
    """What the rollups hold for the minutes from `since`, folded or still pending."""
    rows = db.execute(
        """
        SELECT minute, queue, task, state, measure, le, sum(n), sum(total)
        FROM (SELECT minute, queue, task, state, measure, le, n, total
              FROM pgqueue.stats_minutes
              UNION ALL
              SELECT minute, queue, task, state, measure, le, n, total
              FROM pgqueue.stats_changes
              WHERE state IN ('succeeded', 'dead', 'cancelled')) AS r
        WHERE minute >= %s
        GROUP BY 1, 2, 3, 4, 5, 6
        HAVING sum(n) <> 0
        """,
        (since,),
    ).fetchall()
    return {(m, q, t, s, me, le): (int(n), float(total)) for m, q, t, s, me, le, n, total in rows}


def totals(db: psycopg.Connection) -> dict[tuple[str, str], int]:
    rows = db.execute(
        """
        SELECT queue, state, sum(n) FROM (
            SELECT queue, state, jobs AS n FROM pgqueue.stats_totals
            UNION ALL
            SELECT queue, state, n FROM pgqueue.stats_changes WHERE measure = 'jobs') AS t
        GROUP BY 1, 2 HAVING sum(n) <> 0
        """
    ).fetchall()
    return {(q, s): int(n) for q, s, n in rows}


def assert_agree(db: psycopg.Connection, horizon: timedelta = timedelta(minutes=60)) -> None:
    """Rollups equal the truth: totals for every job, minutes for recently finished ones."""
    counted = dict(
        ((q, s), n)
        for q, s, n in db.execute(
            "SELECT queue, state, count(*) FROM pgqueue.jobs GROUP BY 1, 2"
        ).fetchall()
    )
    assert totals(db) == counted
    since = (datetime.now(UTC) - horizon).replace(second=0, microsecond=0)
    expected = {k: v for k, v in truth(db).items() if k[0] >= since}
    held = rollups(db, since)
    assert {k: v[0] for k, v in held.items()} == {k: v[0] for k, v in expected.items()}
    for key, (_, total) in expected.items():
        assert held[key][1] == pytest.approx(total, abs=1e-6), key


def assert_surfaces(app: object, db: psycopg.Connection) -> None:
    """`pgqueue stats`, /api/throughput and /metrics show the table's counts."""
    by_queue = {
        r["queue"]: r
        for r in jobs.app.store.queue_stats()  # type: ignore[attr-defined]
    }
    expected = db.execute(
        """
        SELECT queue,
               count(*) FILTER (WHERE state = 'queued' AND run_at <= now()),
               count(*) FILTER (WHERE state = 'queued' AND run_at > now()),
               count(*) FILTER (WHERE state = 'running'),
               count(*) FILTER (WHERE state = 'succeeded'),
               count(*) FILTER (WHERE state = 'dead'),
               count(*) FILTER (WHERE state = 'cancelled')
        FROM pgqueue.jobs GROUP BY queue
        """
    ).fetchall()
    # A queue with no job left shows while jobs of it succeeded in the last five minutes.
    recent = {
        q
        for (q,) in db.execute(
            f"SELECT DISTINCT queue FROM {FINISHED_ROWS} AND state = 'succeeded'"
            "   AND finished_at > now() - interval '4 minutes'"
        )
    }
    assert set(by_queue) == {row[0] for row in expected} | recent
    for queue, *counts in expected:
        row = by_queue[queue]
        shown = [row[k] for k in ("queued", "scheduled", "running", "succeeded", "dead")]
        assert [*shown, row["cancelled"]] == counts, queue
    for queue in set(by_queue) - {row[0] for row in expected}:
        row = by_queue[queue]
        assert [row[k] for k in ("queued", "running", "succeeded", "dead")] == [0] * 4
    minutes = {
        r["minute"]: (r["succeeded"], r["dead"])
        for r in jobs.app.store.throughput(60)  # type: ignore[attr-defined]
    }
    for minute, succeeded, dead in db.execute(
        "SELECT date_trunc('minute', finished_at), count(*) FILTER (WHERE state = 'succeeded'),"
        f" count(*) FILTER (WHERE state = 'dead') FROM {FINISHED_ROWS}"
        "   AND finished_at >= date_trunc('minute', now()) - interval '59 minutes'"
        " GROUP BY 1"
    ).fetchall():
        assert minutes[minute] == (succeeded, dead), minute
    web = create_app(jobs.app, token=None, allowed_hosts=("testserver",))
    text = TestClient(web).get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    outcomes = {
        (s.labels["task"], s.labels["state"]): s.value
        for s in families["pgqueue_job_outcomes"].samples
    }
    hour = db.execute(
        f"SELECT task, state, count(*) FROM {FINISHED_ROWS}"
        "   AND finished_at >= date_trunc('minute', now() - interval '1 hour') GROUP BY 1, 2"
    ).fetchall()
    assert outcomes == {(t, s): n for t, s, n in hour}
    # Counters and histograms: every increase counted, once, whatever raced.
    finished = {
        (s.labels["queue"], s.labels["task"], s.labels["state"]): s.value
        for s in families["pgqueue_jobs_finished"].samples
        if s.name.endswith("_total")
    }
    ever = db.execute(
        f"SELECT queue, task, state, sum(n) FROM {EVER} WHERE measure = 'jobs' GROUP BY 1, 2, 3"
    )
    assert finished == {(q, t, s): n for q, t, s, n in ever.fetchall()}
    latency = {
        (s.labels["queue"], s.labels["le"]): s.value
        for s in families["pgqueue_job_latency_seconds"].samples
        if s.name.endswith("_bucket")
    }
    buckets = db.execute(
        f"SELECT queue, le, sum(n) FROM {EVER} WHERE measure = 'latency' GROUP BY 1, 2"
    ).fetchall()
    assert {q for q, _ in latency} == {q for q, _, _ in buckets}
    for (queue, le), n in latency.items():
        bound = float("inf") if le == "+Inf" else float(le)
        assert n == sum(c for q, b, c in buckets if q == queue and b <= bound), (queue, le)


def compact(dsn: str) -> None:
    asyncio.run(with_store(dsn, lambda store: store.stats_compact()))


def test_buckets_are_the_migrations():
    from importlib.util import module_from_spec, spec_from_file_location

    path = migrate.migrations_dir() / "versions" / "0014_stats_rollups.py"
    spec = spec_from_file_location("pgqueue_migration_0014", path)
    assert spec is not None and spec.loader is not None
    module = module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (*(float(b) for b in module.BOUNDS), float("inf")) == BUCKETS


def test_sql_buckets_match_python_at_every_edge(db):
    values = [0.0, 1e-9, *BUCKETS[:-1], *(b * 1.000001 for b in BUCKETS[:-1]), 1e9]
    values = [float(v) for v in values]
    got = db.execute(
        "SELECT v, pgqueue.stats_le(v) FROM unnest(%s::float8[]) AS v", (values,)
    ).fetchall()
    assert [le for _, le in got] == [bucket_of(v) for v in values]


def test_a_mixed_life_leaves_rollups_equal_to_the_table(app, db, worker, dsn):
    random.seed(7)
    ok = app.enqueue_many([{"task": "add", "args": [i, i]} for i in range(40)])
    app.enqueue_many([{"task": "add", "args": [1, 1], "queue": "other"} for _ in range(5)])
    retried = [jobs.flaky.enqueue(1) for _ in range(5)]  # fails once, then succeeds
    doomed = [jobs.always_fails.options(max_attempts=2).enqueue() for _ in range(6)]
    waiting = [jobs.add.options(delay=3600).enqueue(2, 2) for _ in range(4)]
    parent = jobs.always_fails.options(max_attempts=1).enqueue()
    child = jobs.add.options(depends_on=[parent]).enqueue(3, 3)  # cancelled when it dies
    assert app.cancel(waiting[0]) and app.cancel(waiting[1])  # cancelled before a start
    with worker(concurrency=8):
        long = jobs.async_sleep.enqueue(30)
        wait_for(lambda: app.get_job(long).state == "running", timeout=20)
        assert app.cancel(long)  # cancelled while it runs
        for job_id in ok + retried:
            app.wait(job_id, timeout=30)
        wait_for(lambda: all(app.get_job(j).state == "dead" for j in doomed), timeout=30)
        wait_for(lambda: app.get_job(child).state == "cancelled", timeout=30)
        wait_for(lambda: app.get_job(long).state == "cancelled", timeout=30)
    assert_agree(db)
    compact(dsn)
    assert_agree(db)
    # Dead jobs go back to the queue (one by id, the rest in a batch) and run again.
    assert app.retry(doomed[0])
    assert jobs.app.store.job_retry_dead(queue=None)[0] == 6  # type: ignore[attr-defined]
    assert_agree(db)
    assert app.retry(waiting[0])  # a cancelled one too
    # Rescues: jobs held by a worker that stopped heartbeating, one on its last attempt
    # (dead), one with attempts left (queued again, then run to success).
    lost = uuid.uuid4()

    async def rescue(store: AsyncJobStore) -> None:
        await store.worker_register(lost, "gone", 1, None, 1, 1.0)
        last, again = jobs.add.enqueue(5, 5), jobs.add.enqueue(6, 6)
        db.execute(
            "UPDATE pgqueue.jobs SET state = 'running', worker_id = %s, started_at = now(),"
            " attempts = CASE WHEN id = %s THEN max_attempts ELSE 1 END WHERE id IN (%s, %s)",
            (lost, last, last, again),
        )
        db.execute(
            "UPDATE pgqueue.workers SET heartbeat_at = now() - interval '1 hour' WHERE id = %s",
            (lost,),
        )
        assert await Rescuer(store).run_once() == 2
        assert app.get_job(last).state == "dead"
        db.execute("UPDATE pgqueue.jobs SET run_at = now() WHERE id = %s", (again,))

    asyncio.run(with_store(dsn, rescue))
    assert_agree(db)
    with worker(concurrency=8):
        wait_for(
            lambda: (
                db.execute(
                    "SELECT count(*) FROM pgqueue.jobs WHERE state IN ('queued', 'running')"
                    " AND run_at <= now()"
                ).fetchone()[0]
                == 0
            ),
            timeout=60,
        )
    compact(dsn)
    assert_agree(db)
    # Retention: some succeeded jobs purged, a few dead ones deleted at completion.
    before = datetime.now(UTC) + timedelta(seconds=1)
    assert jobs.app.store.job_purge("succeeded", before, queue="other") == 5  # type: ignore[attr-defined]
    dead = [r[0] for r in db.execute("SELECT id FROM pgqueue.jobs WHERE state = 'dead' LIMIT 3")]

    async def delete(store: AsyncJobStore) -> None:
        await store.job_delete_finished(dead)

    asyncio.run(with_store(dsn, delete))
    assert_agree(db)
    assert_surfaces(app, db)
    compact(dsn)
    assert_agree(db)
    assert_surfaces(app, db)


def test_outcomes_written_by_the_worker_path_count_once(app, db, dsn):
    ids = app.enqueue_many([{"task": "add", "args": [i, i]} for i in range(30)])
    me = uuid.uuid4()

    async def scenario(store: AsyncJobStore) -> None:
        await store.worker_register(me, "host", 1, None, 30, 30.0)
        claimed = await store.job_claim(me, None, 30)
        assert len(claimed) == 30
        outcomes = [
            OutcomeRow(j.id, j.attempts, "succeeded" if j.id % 3 else "dead", result_json="1")
            for j in claimed[:20]
        ]
        outcomes += [OutcomeRow(j.id, j.attempts, "queued", delay=0) for j in claimed[20:]]
        await store.job_finish_many(me, outcomes)
        # The same outcomes again (a retried write): nothing changes, nothing is counted.
        assert await store.job_finish_many(me, outcomes) == {}
        await store.stats_compact()

    asyncio.run(with_store(dsn, scenario))
    assert len(ids) == 30
    assert sum(n for (_, state), n in totals(db).items() if state in FINISHED) == 20
    assert_agree(db)


def test_plain_sql_changes_of_finished_rows_are_followed(app, db, dsn):
    db.execute(
        """
        INSERT INTO pgqueue.jobs (task, queue, state, attempts, run_at, started_at, finished_at,
                                  last_error)
        SELECT 'add', 'q' || (i % 3), (ARRAY['succeeded', 'dead', 'cancelled'])[i % 3 + 1],
               1 + i % 4, now() - interval '3 s', now() - (i % 7) * interval '0.3 s',
               CASE WHEN i % 11 = 0 THEN NULL ELSE now() END,
               CASE WHEN i % 5 = 0 THEN 'WorkerLost: gone' END
        FROM generate_series(1, 200) AS i
        """
    )
    # Never started, and never given a finish time: counted in the totals only.
    db.execute("INSERT INTO pgqueue.jobs (task, state) VALUES ('add', 'cancelled')")
    assert_agree(db)
    compact(dsn)
    # A finished job moved to another queue, another minute, another final state.
    db.execute("UPDATE pgqueue.jobs SET queue = 'moved' WHERE id % 10 = 1")
    db.execute(
        "UPDATE pgqueue.jobs SET finished_at = finished_at - interval '2 minutes' WHERE id % 10 = 2"
    )
    db.execute("UPDATE pgqueue.jobs SET state = 'dead' WHERE id % 10 = 3 AND state <> 'dead'")
    db.execute("UPDATE pgqueue.jobs SET started_at = NULL WHERE id % 10 = 4")
    # Two changes of the same table in one statement.
    db.execute(
        """
        WITH a AS (UPDATE pgqueue.jobs SET state = 'succeeded' WHERE id % 10 = 5 RETURNING id),
             b AS (DELETE FROM pgqueue.jobs WHERE id % 10 = 6 RETURNING id)
        SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM b)
        """
    )
    # An update that changes nothing counted (progress, unique key release).
    db.execute("UPDATE pgqueue.jobs SET result = '1' WHERE id % 10 = 7")
    assert_agree(db)
    # Rolled back: nothing of it stays.
    with psycopg.connect(dsn) as conn:
        conn.execute("UPDATE pgqueue.jobs SET state = 'queued' WHERE id % 10 = 8")
        conn.execute("DELETE FROM pgqueue.jobs WHERE id % 10 = 9")
        conn.rollback()
    assert_agree(db)
    compact(dsn)
    assert_agree(db)
    assert db.execute("SELECT count(*) FROM pgqueue.stats_changes").fetchone()[0] == 0


def test_old_jobs_count_in_totals_only_and_pruning_takes_them_out(app, db, dsn):
    db.execute(
        """
        INSERT INTO pgqueue.jobs (task, state, attempts, run_at, started_at, finished_at)
        SELECT 'add', 'succeeded', 1, f - interval '2 s', f - interval '1 s', f
        FROM unnest(ARRAY[now() - interval '3 hours', now() - interval '2 days',
                          now() - interval '30 seconds']) AS f
        """
    )
    compact(dsn)
    assert totals(db) == {("default", "succeeded"): 3}
    assert db.execute("SELECT count(DISTINCT minute) FROM pgqueue.stats_minutes").fetchone() == (
        1,
    ), "only the recent minute is kept per minute"
    assert db.execute("SELECT count(*) FROM pgqueue.stats_series").fetchone() == (2,)
    from pgqueue.settings import WorkerSettings
    from pgqueue.worker.queue_settings import QueueSettings

    async def prune(store: AsyncJobStore) -> int:
        settings = QueueSettings(WorkerSettings(retain_succeeded=3600.0))
        return await Pruner(store, settings, 100).run_once()

    assert asyncio.run(with_store(dsn, prune)) == 2
    assert db.execute("SELECT count(*) FROM pgqueue.stats_changes").fetchone() == (0,)
    assert totals(db) == {("default", "succeeded"): 1}
    assert_agree(db)
    assert_surfaces(app, db)


def test_writers_racing_compactions_never_count_twice(app, db, dsn):
    """Many short transactions change finished jobs while two compactors fold at once."""
    db.execute(
        "INSERT INTO pgqueue.jobs (task, queue) SELECT 'add', 'q' || (i % 4)"
        " FROM generate_series(1, 400) AS i"
    )
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                for _ in range(150):
                    state = rng.choice(["queued", "running", *FINISHED])
                    low = rng.randrange(1, 400)
                    try:
                        conn.execute(
                            "UPDATE pgqueue.jobs SET state = %s, started_at = now(),"
                            " finished_at = CASE WHEN %s IN ('succeeded', 'dead', 'cancelled')"
                            " THEN now() END, attempts = attempts + 1"
                            " WHERE id BETWEEN %s AND %s",
                            (state, state, low, low + rng.randrange(1, 20)),
                        )
                        if rng.random() < 0.05:
                            conn.execute(
                                "DELETE FROM pgqueue.jobs WHERE id = %s", (rng.randrange(1, 400),)
                            )
                    except psycopg.errors.DeadlockDetected:
                        pass  # rolled back, so counted for nothing: checked at the end
        except BaseException as exc:
            errors.append(exc)

    def compactor() -> None:
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                from pgqueue.sql import QUERIES

                while not stop.is_set():
                    conn.execute(QUERIES["stats_compact"])
        except BaseException as exc:
            errors.append(exc)

    writers = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    compactors = [threading.Thread(target=compactor) for _ in range(2)]
    for t in writers + compactors:
        t.start()
    for t in writers:
        t.join(120)
    stop.set()
    for t in compactors:
        t.join(60)
    assert not errors, errors
    assert_agree(db)
    compact(dsn)
    assert_agree(db)
    assert_surfaces(app, db)


def test_truncate_empties_the_figures(app, db, dsn):
    db.execute(
        "INSERT INTO pgqueue.jobs (task, state, finished_at) VALUES ('add', 'succeeded', now())"
    )
    compact(dsn)
    db.execute("INSERT INTO pgqueue.jobs (task, state, finished_at) VALUES ('add', 'dead', now())")
    db.execute("TRUNCATE pgqueue.jobs")
    assert totals(db) == {}
    assert jobs.app.store.queue_stats() == []  # type: ignore[attr-defined]
    assert_agree(db)


def test_migration_starts_the_rollups_from_the_jobs_already_there(server_dsn):
    with (
        scratch_database(server_dsn, "pgqueue_test_stats_backfill") as dsn,
        psycopg.connect(dsn, autocommit=True) as conn,
    ):
        migrate.upgrade(dsn, "0013")
        conn.execute(
            """
            INSERT INTO pgqueue.jobs (task, queue, priority, max_attempts, state, attempts,
                                      run_at, started_at, finished_at, last_error)
            SELECT 'task_' || i % 3, 'q' || i % 2, 0, 3,
                   (ARRAY['succeeded', 'dead', 'cancelled', 'queued', 'running'])[i % 5 + 1],
                   i % 3, now() - interval '5 s', now() - (i % 4) * interval '1 s',
                   CASE WHEN i % 5 < 3 THEN now() - (i % 90) * interval '1 minute' END,
                   CASE WHEN i % 7 = 0 THEN 'WorkerLost: gone' END
            FROM generate_series(1, 500) AS i
            """
        )
        migrate.upgrade(dsn)
        assert conn.execute("SELECT count(*) FROM pgqueue.stats_changes").fetchone() == (0,)
        conn.execute("CREATE TABLE public.jobs_deleted (LIKE pgqueue.jobs)")  # none deleted
        assert_agree(conn)
        series = conn.execute(
            "SELECT sum(succeeded), sum(dead) FROM pgqueue.stats_series"
        ).fetchone()
        assert series == tuple(
            conn.execute(
                "SELECT count(*) FILTER (WHERE state = 'succeeded'),"
                " count(*) FILTER (WHERE state = 'dead') FROM pgqueue.jobs"
            ).fetchone()
        )


def test_jobs_due_later_are_counted_by_the_minute_of_their_run_at(app, db, dsn):
    """`scheduled` comes from stats_queued (minutes to come) and the table (this minute):
    jobs delayed, then cancelled, deleted, made due, delayed again, claimed."""
    db.execute(
        "INSERT INTO pgqueue.jobs (task, queue, run_at) SELECT 'add', 'q' || (i % 3),"
        " now() + (i % 50) * interval '37 seconds' FROM generate_series(1, 300) AS i"
    )
    jobs.add.options(depends_on=[1]).enqueue(1, 1)  # waits on job 1: run_at 9999-12-31
    assert_surfaces(app, db)
    compact(dsn)
    assert_surfaces(app, db)
    db.execute("UPDATE pgqueue.jobs SET state = 'cancelled', finished_at = now() WHERE id % 7 = 0")
    db.execute("DELETE FROM pgqueue.jobs WHERE id % 11 = 0")
    db.execute("UPDATE pgqueue.jobs SET run_at = now() WHERE id % 13 = 0")
    db.execute("UPDATE pgqueue.jobs SET run_at = run_at + interval '2 hours' WHERE id % 17 = 0")
    assert_surfaces(app, db)
    compact(dsn)
    assert_surfaces(app, db)
    me = uuid.uuid4()

    async def claim(store: AsyncJobStore) -> None:
        await store.worker_register(me, "host", 1, None, 100, 30.0)
        await store.job_claim(me, None, 100)  # the due ones

    asyncio.run(with_store(dsn, claim))
    db.execute("UPDATE pgqueue.jobs SET state = 'queued' WHERE id % 19 = 0 AND state = 'running'")
    assert_surfaces(app, db)
    compact(dsn)
    assert_surfaces(app, db)
    assert_agree(db)


def test_deleted_jobs_keep_the_work_they_did_in_the_figures(app, db, dsn, worker):
    """Retention 0 (deleted as they finish) and a purge: the jobs leave the counts by state,
    and stay in throughput, the chart, latency and the outcomes of /metrics (they were all 0
    when a delete took finished jobs out of their minute too)."""
    app.set_queue_retention("default", succeeded=0, dead=0)
    done = [jobs.add.enqueue(i, i) for i in range(12)]
    dead = [jobs.always_fails.options(max_attempts=1).enqueue() for _ in range(3)]
    kept = [jobs.add.options(queue="kept").enqueue(i, i) for i in range(4)]
    with worker(concurrency=4):
        for job_id in kept:
            app.wait(job_id, timeout=30)
        wait_for(
            lambda: (
                db.execute("SELECT count(*) FROM pgqueue.jobs WHERE queue = 'default'").fetchone()[
                    0
                ]
                == 0
            ),
            timeout=30,
        )
    assert db.execute("SELECT count(*) FROM public.jobs_deleted").fetchone() == (15,)
    assert (
        jobs.app.store.job_purge(
            "succeeded", datetime.now(UTC) + timedelta(seconds=1), queue="kept"
        )
        == 4
    )  # type: ignore[attr-defined]
    for fold in (False, True):
        if fold:
            compact(dsn)
        by_queue = {r["queue"]: r for r in jobs.app.store.queue_stats()}  # type: ignore[attr-defined]
        assert set(by_queue) == {"default", "kept"}, "no job left, but work done"
        for queue, n in (("default", len(done)), ("kept", len(kept))):
            row = by_queue[queue]
            assert (row["succeeded"], row["dead"], row["succeeded_5m"]) == (0, 0, n)
            assert row["throughput"] == round(n / 300, 2)
        minutes = jobs.app.store.throughput(60)  # type: ignore[attr-defined]
        assert sum(m["succeeded"] for m in minutes) == len(done) + len(kept)
        assert sum(m["dead"] for m in minutes) == len(dead)
        assert_agree(db)
        assert_surfaces(app, db)


def test_metrics_counters_never_go_down(app, db, dsn, worker):
    """Prometheus reads a counter or histogram that goes down as a restart: `rate()` and
    `histogram_quantile(rate(...))` then give nonsense. The histograms of /metrics counted
    the last hour's jobs, so they went down as minutes passed; they now count every job
    that finished, and so do the `_total` counters, through a retry, a purge and the hour."""
    web = TestClient(create_app(jobs.app, token=None, allowed_hosts=("testserver",)))

    def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        families = text_string_to_metric_families(web.get("/metrics").text)
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for f in families
            if f.type in ("counter", "histogram")
            for s in f.samples
        }

    done = [jobs.add.enqueue(i, i) for i in range(5)]
    dead = jobs.always_fails.options(max_attempts=1).enqueue()
    with worker(concurrency=4):
        for job_id in done:
            app.wait(job_id, timeout=30)
        with pytest.raises(pgqueue.JobFailed):
            app.wait(dead, timeout=30)
        first = scrape()
        finished = ("pgqueue_jobs_finished_total", (("queue", "default"), ("state", "succeeded"),
                    ("task", "add")))  # fmt: skip
        assert first[finished] == 5
        count = ("pgqueue_job_latency_seconds_count", (("queue", "default"),))
        assert first[count] == 6
        app.retry(dead)  # dead -> queued -> dead again: counted twice, never taken off
        with pytest.raises(pgqueue.JobFailed):
            app.wait(dead, timeout=30)
    compact(dsn)
    assert jobs.app.store.job_purge("succeeded", datetime.now(UTC) + timedelta(seconds=1)) == 5  # type: ignore[attr-defined]
    # The hour passes: every minute's figures move back by two hours, out of its window.
    db.execute("UPDATE pgqueue.stats_minutes SET minute = minute - interval '2 hours'")
    later = scrape()
    assert later[count] == 7
    dead_total = ("pgqueue_jobs_finished_total", (("queue", "default"), ("state", "dead"),
                  ("task", "always_fails")))  # fmt: skip
    assert later[dead_total] == 2
    gone = {k: (v, later.get(k)) for k, v in first.items() if later.get(k, 0) < v}
    assert not gone, gone
