"""Claim cost with jobs that are not due: a table crowded with future and waiting jobs
against a fresh one.

Usage: .venv/bin/python bench/claim_cost.py [--dsn postgresql://postgres@127.0.0.1:5432/postgres]

On a fresh database `bench_fairness` (the helpers of bench/fairness.py), one `pgqueue work`
process drains N due no-op jobs (priority 0), twice:
1. fresh: nothing else in the table;
2. crowded: beside them, --future jobs due tomorrow at a better priority (10) and --waiting
   jobs waiting on another job (run_at 9999-12-31), with the statistics taken (ANALYZE)
   while no job was due, as a quiet night leaves them.
Prints jobs/s for each and the ratio; results in bench/results/claim_cost.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import psycopg
from fairness import BENCH, DB, drain, fresh_database


def crowd(dsn: str, future: int, waiting: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO pgqueue.jobs (task, args, queue, priority, max_attempts, run_at) "
            "SELECT 'fair.noop', jsonb_build_array(i), 'plain', 10, 3, now() + interval '1 day' "
            "FROM generate_series(1, %s) AS i",
            (future,),
        )
        parent = conn.execute("SELECT min(id) FROM pgqueue.jobs").fetchone()[0]  # type: ignore[index]
        conn.execute(
            "INSERT INTO pgqueue.jobs (task, args, queue, priority, max_attempts, run_at, "
            "depends_on) SELECT 'fair.noop', jsonb_build_array(i), 'plain', 0, 3, "
            "'9999-12-31 00:00:00+00', ARRAY[%s::bigint] FROM generate_series(1, %s) AS i",
            (parent, waiting),
        )
        # Statistics taken while nothing is due.
        conn.execute("VACUUM ANALYZE pgqueue.jobs")


def due(dsn: str, n: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO pgqueue.jobs (task, args, queue, priority, max_attempts) "
            "SELECT 'fair.noop', jsonb_build_array(i), 'plain', 0, 3 "
            "FROM generate_series(1, %s) AS i",
            (n,),
        )


def drained(dsn: str, n: int, concurrency: int, log: Path) -> dict[str, object]:
    """Drain the due jobs; the crowd stays (drain() stops when no due job is left)."""
    started = time.perf_counter()
    result = drain(dsn, n, "plain", None, concurrency, log, due_only=True)
    result["wall_s"] = round(time.perf_counter() - started, 2)
    return result


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--jobs", type=int, default=50_000)
    p.add_argument("--future", type=int, default=1_000_000)
    p.add_argument("--waiting", type=int, default=1_000_000)
    p.add_argument("--concurrency", type=int, default=50)
    args = p.parse_args(argv)
    logs = BENCH / "results"
    logs.mkdir(exist_ok=True)
    results: dict[str, object] = {"jobs": args.jobs, "future": args.future,
                                  "waiting": args.waiting}  # fmt: skip

    dsn = fresh_database(args.dsn)
    due(dsn, args.jobs)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE pgqueue.jobs")
    results["fresh"] = drained(dsn, args.jobs, args.concurrency, logs / "claim-cost-fresh.log")

    dsn = fresh_database(args.dsn)
    crowd(dsn, args.future, args.waiting)
    due(dsn, args.jobs)
    results["crowded"] = drained(dsn, args.jobs, args.concurrency, logs / "claim-cost.log")

    fresh = results["fresh"]["jobs_per_s"]  # type: ignore[index]
    results["crowded_vs_fresh"] = round(results["crowded"]["jobs_per_s"] / fresh, 2)  # type: ignore[index]
    (logs / "claim_cost.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
