"""What it costs to watch a backlog drain: a count(*) poll against the bench's own probes.

Usage: .venv/bin/python bench/probe_cost.py [--dsn DSN] [--systems ...] [--jobs 1000000]
For each system: a fresh database with N queued no-op jobs (as the backlog scenario fills
it, then VACUUM ANALYZE); then every job marked finished as its worker would, and then
vacuumed. In each of the three states, the median time of
- `done_sql`, the `count(*)` the standard processing scenario polls every 50 ms;
- `pending_sql`, the partial-index check the backlog scenario makes once every handler ran;
- reading the handlers' counter files (apps/progress_counter.py), what it polls meanwhile.
No worker runs: this isolates the probes. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from benchlib import db
from benchlib.backlog import BacklogResult, fill, handlers_run, tail_window, vacuum
from benchlib.scenarios import Config, prepare
from benchlib.systems import ALL, System

BENCH_DIR = Path(__file__).resolve().parent

# Every job marked finished the way the system's worker records it, without running a worker.
FINISH_SQL = {
    "pgqueue": (
        "UPDATE pgqueue.jobs SET state = 'succeeded', attempts = 1, "
        "started_at = now(), finished_at = now()"
    ),
    "procrastinate": "UPDATE procrastinate_jobs SET status = 'succeeded', attempts = 1",
    "pgqueuer": (
        "WITH done AS (DELETE FROM pgqueuer RETURNING id, priority, entrypoint) "
        "INSERT INTO pgqueuer_log (job_id, status, priority, entrypoint) "
        "SELECT id, 'successful', priority, entrypoint FROM done"
    ),
}


def query_ms(
    conn: psycopg.Connection[Any], query: str, repeat: int, params: dict[str, int] | None = None
) -> float:
    return timed(lambda: conn.execute(query, params).fetchone(), repeat)


def timed(call: Callable[[], object], repeat: int) -> float:
    """Median milliseconds of `repeat` calls, after one warm-up call."""
    call()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(times)


def report(
    label: str,
    state: str,
    conn: psycopg.Connection[Any],
    system: System,
    counters: Path,
    jobs: int,
    repeat: int,
) -> None:
    count_ms = query_ms(conn, system.done_sql, repeat)
    conn.execute("SET enable_seqscan = off")
    tail = {"low": max(0, jobs - tail_window(50))}  # the default concurrency
    first = time.perf_counter()
    conn.execute(system.pending_sql, tail).fetchone()
    first_ms = (time.perf_counter() - first) * 1000.0
    pending_ms = query_ms(conn, system.pending_sql, repeat, tail)
    conn.execute("RESET enable_seqscan")
    files_us = timed(lambda: handlers_run(counters), repeat * 10) * 1000.0
    print(
        f"  {label}, all {state}: count(*) {count_ms:.1f} ms "
        f"(busy {count_ms / (count_ms + 50) * 100:.0f}% of the time at a poll per 50 ms); "
        f"pending check {pending_ms:.2f} ms (first {first_ms:.1f} ms); "
        f"counter files {files_us:.0f} µs",
        flush=True,
    )


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dsn", default=os.environ.get("PGQUEUE_BENCH_DSN", db_default()))
    p.add_argument("--systems", default=",".join(s.name for s in ALL))
    p.add_argument("--jobs", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=20)
    args = p.parse_args(argv)
    cfg = Config(args.dsn, 0, 0, 50, 0, 0.0, 0, 600.0, False, BENCH_DIR)
    wanted = set(args.systems.split(","))
    counters = Path(tempfile.mkdtemp(prefix="bench-probe-"))
    (counters / "1.count").write_bytes((12345).to_bytes(8, "little"))
    print(f"{args.jobs:,} queued jobs; median of {args.repeat} calls")
    for system in (s for s in ALL if s.name in wanted):
        target, _ = prepare(system, cfg)
        try:
            fill(system, target, args.jobs, 100_000, BacklogResult(system.name, "", args.jobs))
            vacuum(target, BacklogResult(system.name, "", args.jobs))
            with psycopg.connect(target.dsn, autocommit=True) as conn:
                probe = (conn, system, counters, args.jobs, args.repeat)
                report(system.label, "queued", *probe)
                conn.execute(FINISH_SQL[system.name])
                report(system.label, "finished", *probe)
                conn.execute("VACUUM (ANALYZE)")
                report(system.label, "finished, vacuumed", *probe)
        finally:
            db.drop_database(cfg.server_dsn, system.database)
    return 0


def db_default() -> str:
    return "postgresql://postgres@127.0.0.1:5432/postgres"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
