"""Statistics at scale: `pgqueue stats`, /api/stats, /api/throughput and /metrics with
millions of finished jobs kept in pgqueue.jobs and a backlog waiting.

Usage: .venv/bin/python bench/stats_scale.py [--dsn postgresql://postgres@127.0.0.1:5432/postgres]
       [--finished 10000000] [--queued 100000] [--running 50] [--runs 9] [--no-before]

On a fresh database `bench_stats` (dropped at the end unless --keep-db):
1. `pgqueue migrate`, then the finished jobs inserted by plain SQL (generate_series, a million
   rows per statement, through the statistics triggers like any insert): 96% succeeded, 3%
   dead (a fifth of them rescued), 1% cancelled (half never started); 3 queues, 10 tasks;
   finished_at spread evenly over the last 24 hours; latency 2 ms to 6 s and run time 1 ms to
   8 s, log-uniform. Then the backlog: `--queued` jobs, 95% due (over the last 10 minutes),
   5% scheduled (the next hour), and `--running` jobs running.
2. VACUUM ANALYZE pgqueue.jobs (what autovacuum would have done; the bench server may have it
   off), and one fold of the statistics changes (what a worker's maintenance does every few
   seconds).
3. Each surface `--runs` times, after one call to warm up: its SQL alone, on one
   connection (the server's time plus local round trips), and the whole call in process:
   the store calls of `pgqueue stats` (the command's time beyond Python start-up),
   GET /api/stats, /api/throughput (the default 60 minutes and the largest, 1440) and
   /metrics through the ASGI app (FastAPI's TestClient). Median and slowest, in ms.
4. Unless --no-before: once each, the queries these surfaces ran before the rollups (scans of
   pgqueue.jobs), on the same data, rows fetched as the old code did.

Prints a markdown table and writes bench/results/stats_scale.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from fastapi.testclient import TestClient

import pgqueue
from pgqueue import migrate
from pgqueue.sql import QUERIES, _parse
from pgqueue.web.server import create_app

BENCH = Path(__file__).resolve().parent
DB = "bench_stats"
CHUNK = 1_000_000

FINISHED_SQL = """
INSERT INTO pgqueue.jobs
    (queue, task, args, state, priority, max_attempts, attempts, run_at, started_at,
     finished_at, created_at, last_error, worker_id)
SELECT (ARRAY['default', 'emails', 'reports'])[(i %% 10) %% 3 + 1],
       'task_' || (i %% 10), jsonb_build_array(i), s.state, 0, 3,
       CASE s.state WHEN 'dead' THEN 3 WHEN 'cancelled' THEN (i %% 2)
                    ELSE 1 + (i %% 17 = 0)::int END,
       t.finished - t.duration - t.latency,
       CASE WHEN s.state = 'cancelled' AND i %% 2 = 0 THEN NULL
            ELSE t.finished - t.duration END,
       t.finished, t.finished - t.duration - t.latency,
       CASE WHEN s.state = 'dead' AND i %% 5 = 0
                THEN 'WorkerLost: the worker running this attempt stopped heartbeating'
            WHEN s.state = 'dead' THEN 'ValueError: it never works'
            WHEN s.state = 'cancelled' THEN 'cancelled' END,
       gen_random_uuid()
FROM generate_series(%(low)s::bigint, %(high)s::bigint) AS i
CROSS JOIN LATERAL (
    SELECT CASE WHEN i %% 100 < 96 THEN 'succeeded' WHEN i %% 100 < 99 THEN 'dead'
                ELSE 'cancelled' END AS state
) AS s
CROSS JOIN LATERAL (
    SELECT now() - (i::float8 / %(total)s::float8) * interval '24 hours' AS finished,
           make_interval(secs => 0.002 * exp(random() * 8)) AS latency,
           make_interval(secs => 0.001 * exp(random() * 9)) AS duration
) AS t
"""

BACKLOG_SQL = """
INSERT INTO pgqueue.jobs (queue, task, args, priority, max_attempts, run_at, created_at)
SELECT (ARRAY['default', 'emails', 'reports'])[(i %% 10) %% 3 + 1], 'task_' || (i %% 10),
       jsonb_build_array(i), 0, 3,
       CASE WHEN i %% 20 = 0 THEN now() + random() * interval '1 hour'
            ELSE now() - random() * interval '10 minutes' END,
       now() - interval '10 minutes'
FROM generate_series(1, %(n)s::int) AS i
"""

RUNNING_SQL = """
INSERT INTO pgqueue.jobs
    (queue, task, args, state, priority, max_attempts, attempts, run_at, started_at, worker_id)
SELECT (ARRAY['default', 'emails', 'reports'])[(i %% 10) %% 3 + 1], 'task_' || (i %% 10),
       '[]', 'running', 0, 3, 1, now() - interval '3 s', now() - random() * interval '2 s',
       gen_random_uuid()
FROM generate_series(1, %(n)s::int) AS i
"""

# The queries each surface runs now.
SURFACE_QUERIES: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "pgqueue stats": [("queue_stats", {}), ("task_unserved", {})],
    "GET /api/stats": [("queue_stats", {})],
    "GET /api/throughput": [("throughput", {"minutes": 60})],
    "GET /api/throughput?minutes=1440": [("throughput", {"minutes": 1440})],
    "GET /metrics": [
        ("metrics_jobs", {}),
        ("metrics_recent", {}),
        ("worker_list", {}),
        ("task_unserved", {}),
        ("server_health", {}),
    ],
}

# The queries of these surfaces before the rollups (commit b4298f1), for the comparison.
BEFORE = _parse(
    """
-- name: queue_stats
-- Per queue: jobs by state (`queued` only those due, `scheduled` those with a later run_at),
-- throughput (jobs succeeded per second) and enqueue-to-start latency over the last five
-- minutes, and the oldest due job's age in seconds. One name per figure, everywhere.
SELECT queue,
       count(*) FILTER (WHERE state = 'queued' AND run_at <= now()) AS queued,
       count(*) FILTER (WHERE state = 'queued' AND run_at > now()) AS scheduled,
       count(*) FILTER (WHERE state = 'running') AS running,
       count(*) FILTER (WHERE state = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE state = 'dead') AS dead,
       count(*) FILTER (WHERE state = 'cancelled') AS cancelled,
       count(*) FILTER (WHERE state = 'succeeded' AND finished_at > now() - interval '5 minutes')
           AS succeeded_5m,
       round(count(*) FILTER (WHERE state = 'succeeded'
                                AND finished_at > now() - interval '5 minutes') / 300.0, 2)::float8
           AS throughput,
       extract(epoch FROM now() - min(run_at) FILTER (WHERE state = 'queued' AND run_at <= now()))
           ::float8 AS oldest_waiting_age,
       -- A queued job's started_at is its previous run's, and a retry or a snooze moved its
       -- run_at later: only jobs in their current run count, or latency turns negative.
       percentile_cont(0.5)
           WITHIN GROUP (ORDER BY greatest(extract(epoch FROM started_at - run_at), 0))
           FILTER (WHERE state <> 'queued' AND started_at > now() - interval '5 minutes')
           AS latency_p50,
       percentile_cont(0.95)
           WITHIN GROUP (ORDER BY greatest(extract(epoch FROM started_at - run_at), 0))
           FILTER (WHERE state <> 'queued' AND started_at > now() - interval '5 minutes')
           AS latency_p95
FROM pgqueue.jobs
GROUP BY queue
ORDER BY queue;

-- name: throughput
-- Per minute over the last `minutes`: jobs finished by state, and p50 enqueue-to-start
-- latency of the jobs started, for the dashboard's chart.
SELECT m.minute,
       count(j.id) FILTER (WHERE j.state = 'succeeded') AS succeeded,
       count(j.id) FILTER (WHERE j.state = 'dead') AS dead,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM j.started_at - j.run_at))
           AS latency_p50
FROM generate_series(date_trunc('minute', now()) - make_interval(mins => %(minutes)s::int - 1),
                     date_trunc('minute', now()), interval '1 minute') AS m(minute)
LEFT JOIN pgqueue.jobs AS j
  ON j.finished_at >= m.minute AND j.finished_at < m.minute + interval '1 minute'
 AND j.state IN ('succeeded', 'dead')
GROUP BY m.minute
ORDER BY m.minute;

-- name: metrics_jobs
-- Gauges for /metrics: jobs by queue and state, with `scheduled` (queued, run_at later) apart
-- from `queued` (due) as in queue_stats, and the oldest due job's age per queue.
SELECT queue,
       CASE WHEN state = 'queued' AND run_at > now() THEN 'scheduled' ELSE state END AS state,
       count(*) AS n,
       extract(epoch FROM now() - min(run_at) FILTER (WHERE state = 'queued' AND run_at <= now()))
           ::float8 AS oldest_waiting_age
FROM pgqueue.jobs
GROUP BY 1, 2;

-- name: metrics_recent
-- Jobs finished in the last hour, for the latency and duration histograms and outcomes.
SELECT queue, task, state, attempts,
       extract(epoch FROM started_at - run_at)::float8 AS latency,
       extract(epoch FROM finished_at - started_at)::float8 AS duration,
       last_error LIKE 'WorkerLost%%' AS rescued
FROM pgqueue.jobs
WHERE state IN ('succeeded', 'dead', 'cancelled')
  AND finished_at > now() - interval '1 hour'
  AND started_at IS NOT NULL;

-- name: task_list
-- Every task declared by a worker or waiting in the queue: its defaults, the live workers
-- that serve it, and its due and running jobs. A task with due jobs and no live worker is
-- waiting for a worker that has it.
WITH live AS (
    SELECT w.tasks FROM pgqueue.workers AS w
    WHERE w.heartbeat_at > now() - make_interval(secs => w.lease)
), waiting AS (
    SELECT j.task,
           count(*) FILTER (WHERE j.state = 'queued' AND j.run_at <= now()) AS due,
           count(*) FILTER (WHERE j.state = 'running') AS running
    FROM pgqueue.jobs AS j
    WHERE j.state IN ('queued', 'running')
    GROUP BY j.task
)
SELECT coalesce(t.name, w.task) AS name, t.queue, t.priority, t.max_attempts, t.timeout,
       (SELECT count(*) FROM live WHERE live.tasks IS NULL
                                     OR coalesce(t.name, w.task) = ANY(live.tasks)) AS workers,
       coalesce(w.due, 0) AS due, coalesce(w.running, 0) AS running
FROM pgqueue.tasks AS t
FULL JOIN waiting AS w ON w.task = t.name
ORDER BY 1;
"""
)


def timed(fn: Callable[[], Any], runs: int) -> dict[str, float]:
    fn()  # warm up: connections, plans, caches
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1)}


def once(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return round((time.perf_counter() - start) * 1000, 1)


def fresh_database(server: str) -> str:
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    dsn = psycopg.conninfo.make_conninfo(server, dbname=DB)
    migrate.upgrade(dsn)
    return dsn


def load(dsn: str, finished: int, queued: int, running: int) -> dict[str, float]:
    took: dict[str, float] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        start = time.perf_counter()
        for low in range(1, finished + 1, CHUNK):
            high = min(low + CHUNK - 1, finished)
            conn.execute(FINISHED_SQL, {"low": low, "high": high, "total": finished})
            print(f"  {high:,} finished jobs", file=sys.stderr)
        took["insert_finished_s"] = round(time.perf_counter() - start, 1)
        conn.execute(BACKLOG_SQL, {"n": queued})
        conn.execute(RUNNING_SQL, {"n": running})
        start = time.perf_counter()
        conn.execute("VACUUM ANALYZE pgqueue.jobs")
        took["vacuum_analyze_s"] = round(time.perf_counter() - start, 1)
        row = conn.execute("SELECT count(*) FROM pgqueue.stats_changes").fetchone()
        took["changes_to_fold"] = row[0] if row else 0
    return took


def before_figures(dsn: str) -> dict[str, float]:
    def run(name: str, params: dict[str, Any] | None = None) -> Callable[[], Any]:
        def go() -> Any:
            with psycopg.connect(dsn) as conn:
                return conn.execute(BEFORE[name], params or {}).fetchall()

        return go

    stats_q, tasks, jobs_q, recent = (
        run("queue_stats"),
        run("task_list"),
        run("metrics_jobs"),
        run("metrics_recent"),
    )
    return {
        "pgqueue stats": once(lambda: (stats_q(), tasks())),
        "GET /api/stats": once(stats_q),
        "GET /api/throughput": once(run("throughput", {"minutes": 60})),
        "GET /api/throughput?minutes=1440": once(run("throughput", {"minutes": 1440})),
        "GET /metrics": once(lambda: (jobs_q(), recent(), tasks())),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--finished", type=int, default=10_000_000)
    p.add_argument("--queued", type=int, default=100_000)
    p.add_argument("--running", type=int, default=50)
    p.add_argument("--runs", type=int, default=9)
    p.add_argument("--no-before", action="store_true", help="skip the pre-rollup scans")
    p.add_argument("--keep-db", action="store_true")
    p.add_argument("--output", type=Path, default=BENCH / "results" / "stats_scale.json")
    args = p.parse_args()

    dsn = fresh_database(args.dsn)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        setup = load(dsn, args.finished, args.queued, args.running)
        with pgqueue.App(dsn) as app:
            setup["fold_ms"] = once(app.store.stats_compact)
            client = TestClient(create_app(app, token=None, allowed_hosts=("testserver",)))

            def get(path: str) -> Callable[[], Any]:
                def go() -> Any:
                    response = client.get(path)
                    assert response.status_code == 200, response.text
                    return response

                return go

            after = {
                "pgqueue stats": timed(
                    lambda: (app.store.queue_stats(), app.store.task_unserved()), args.runs
                ),
                "GET /api/stats": timed(get("/api/stats"), args.runs),
                "GET /api/throughput": timed(get("/api/throughput"), args.runs),
                "GET /api/throughput?minutes=1440": timed(
                    get("/api/throughput?minutes=1440"), args.runs
                ),
                "GET /metrics": timed(get("/metrics"), args.runs),
            }
            shown = {r["queue"]: r for r in app.store.queue_stats()}
        with psycopg.connect(dsn, autocommit=True) as conn:

            def sql(queries: list[tuple[str, dict[str, Any]]]) -> Callable[[], Any]:
                return lambda: [conn.execute(QUERIES[n], p).fetchall() for n, p in queries]

            queries = {name: timed(sql(q), args.runs) for name, q in SURFACE_QUERIES.items()}
        before = {} if args.no_before else before_figures(dsn)
        with psycopg.connect(dsn) as conn:
            counts = dict(conn.execute("SELECT state, count(*) FROM pgqueue.jobs GROUP BY 1"))
            version = conn.execute("SHOW server_version").fetchone()
    finally:
        if not args.keep_db:
            with psycopg.connect(args.dsn, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")

    lines = [
        f"{args.finished:,} finished jobs, {args.queued:,} queued, {args.running} running; "
        f"median (slowest) of {args.runs} calls",
        "",
        "| surface | its queries (ms) | whole call (ms) | before: scans (ms, one call) |",
        "|---|---|---|---|",
    ]
    for name, figure in after.items():
        old = before.get(name)
        q = queries[name]
        lines.append(
            f"| {name} | {q['median_ms']} ({q['max_ms']}) | "
            f"{figure['median_ms']} ({figure['max_ms']}) | {'-' if old is None else old} |"
        )
    print("\n".join(lines))
    print(f"\nsetup: {setup}")
    result = {
        "meta": {
            "started": started,
            "server_version": version[0] if version else None,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "finished": args.finished,
            "queued": args.queued,
            "running": args.running,
            "runs": args.runs,
        },
        "setup": setup,
        "rows_by_state": counts,
        "queries_ms": queries,
        "after_ms": after,
        "before_ms": before,
        "stats_shown": shown,
        "table": lines,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
