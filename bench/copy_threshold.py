"""Where bulk enqueue by COPY starts to pay: `app.enqueue_many` of N no-op jobs through the
INSERT and through COPY, alternately, on a fresh database; the median time of each.

    .venv/bin/python bench/copy_threshold.py --dsn postgresql://postgres@127.0.0.1:5432/postgres

The path is forced by setting pgqueue.store.copyin.COPY_MIN_JOBS (1: always COPY; very
large: never) for each call. Both ways write the same rows, on one pooled connection
(autocommit: each call is its own transaction), as the standard bench's producer does.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg
from benchlib import db

import pgqueue
from pgqueue import migrate
from pgqueue.store import copyin

DATABASE = "bench_copy_threshold"


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--sizes", default="10,25,50,100,200,500,1000,5000")
    p.add_argument("--reps", type=int, default=40, help="calls per size and path")
    args = p.parse_args(argv)
    dsn = db.recreate_database(args.dsn, DATABASE)
    try:
        migrate.upgrade(dsn)
        run(dsn, [int(n) for n in args.sizes.split(",")], args.reps)
    finally:
        db.drop_database(args.dsn, DATABASE)


def run(dsn: str, sizes: list[int], reps: int) -> None:
    with pgqueue.App(dsn) as app, psycopg.connect(dsn, autocommit=True) as conn:

        @app.task(name="noop")
        def noop(i: int) -> None: ...

        app.get_job(0)  # open the pool before the clock starts
        print(f"{'jobs':>6} {'INSERT ms':>10} {'COPY ms':>10} {'COPY/INSERT':>12}")
        for n in sizes:
            times: dict[str, list[float]] = {"insert": [], "copy": []}
            for rep in range(reps):
                # Alternate which goes first, so a change in the machine's load hits both.
                for way in ("insert", "copy") if rep % 2 else ("copy", "insert"):
                    copyin.COPY_MIN_JOBS = 1 if way == "copy" else sys.maxsize
                    jobs = [{"task": "noop", "args": [i]} for i in range(n)]
                    started = time.perf_counter()
                    app.enqueue_many(jobs)
                    times[way].append(time.perf_counter() - started)
            insert, copy = (statistics.median(times[w]) for w in ("insert", "copy"))
            print(f"{n:>6} {insert * 1e3:>10.2f} {copy * 1e3:>10.2f} {copy / insert:>12.2f}")
            conn.execute("TRUNCATE pgqueue.jobs")


if __name__ == "__main__":
    main(sys.argv[1:])
