"""Idle latency against what the machine allows: how much of enqueue-to-start is pgqueue's.

Usage: .venv/bin/python bench/latency_floor.py [--dsn postgresql://postgres@127.0.0.1:5432/postgres]
       [--samples 300]

On a fresh database `bench_fairness`, one idle `pgqueue work` process (concurrency 50) waits
for jobs. Then, --samples times, in turn and 20 ms apart (as bench/run.py's idle-latency
scenario sends its jobs), on the same server at the same moment:
- `SELECT 1` on a connection of its own: one round trip, the least any step can cost;
- an INSERT of one row into a table of one column, committed (autocommit): the least a
  durable enqueue can cost (a commit waits for the WAL to reach the disk);
- `stamp.enqueue(time.time())` through an App: the enqueue alone, as a producer sees it;
- and that job's enqueue-to-start latency, which the handler records (bench/run.py's figure);
- the bare notified chain: that durable INSERT with a NOTIFY in the same statement, received
  by a process that does nothing but LISTEN and then one `SELECT 1` round trip
  (bench/apps/bare_listener.py), timed from before the insert to the end of that round trip.
  A notification may carry no job (anyone may send one, see DESIGN.md), so a worker must
  read the table once after the producer's durable commit: this chain is the least any such
  design pays, measured rather than added up.
Prints p50 and p90 of each, and the latency less the enqueue (what the worker adds: the
wake-up, its claim and the start). Results in bench/results/latency_floor.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from benchlib.scenarios import percentile
from fairness import APPS, BENCH, DB, fresh_database, stop_worker

STEPS = ("round_trip", "durable_insert", "enqueue", "latency", "notified_chain")
BARE = "WITH i AS (INSERT INTO public.floor VALUES (1)) SELECT pg_notify('pgqueue_bench_bare', %s)"


def percentiles(values: list[float]) -> dict[str, float]:
    """p50 and p90, nearest rank, as bench/run.py computes its latency figures."""
    return {"p50": round(percentile(values, 50), 2), "p90": round(percentile(values, 90), 2)}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--samples", type=int, default=300)
    args = p.parse_args(argv)
    dsn = fresh_database(args.dsn)
    (BENCH / "results").mkdir(exist_ok=True)
    stamps = Path(tempfile.mkstemp(prefix="pgqueue-latency-")[1])
    chains = Path(tempfile.mkstemp(prefix="pgqueue-chain-")[1])
    os.environ.update(PGQUEUE_DSN=dsn, BENCH_LATENCY_FILE=str(stamps))
    sys.path.insert(0, str(APPS))
    import bench_tasks  # the App of bench/run.py's pgqueue side (reads PGQUEUE_DSN)

    env = {**os.environ, "PYTHONPATH": str(APPS)}
    with (BENCH / "results" / "latency_floor-worker.log").open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "pgqueue.cli", "work", "bench_tasks:app",
             "--concurrency", "50", "--log-level", "WARNING"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        bare = subprocess.Popen(
            [sys.executable, str(APPS / "bare_listener.py"), dsn, str(chains)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    taken: dict[str, list[float]] = {step: [] for step in STEPS[:3]}
    try:
        with (
            psycopg.connect(dsn, autocommit=True) as conn,
            psycopg.connect(dsn, autocommit=True) as other,
        ):
            conn.execute("CREATE TABLE IF NOT EXISTS public.floor (v int)")
            while conn.execute("SELECT count(*) FROM pgqueue.workers").fetchone() != (1,) or (
                conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN pgqueue_bench%'"
                ).fetchone()
                != (1,)
            ):
                if worker.poll() is not None or bare.poll() is not None:
                    raise SystemExit("a listener exited: see latency_floor-worker.log")
                time.sleep(0.05)
            for i in range(20):  # the worker's first claims, the App's pool
                bench_tasks.noop.enqueue(i)
                time.sleep(0.02)
            stamps.write_text("")
            chains.write_text("")
            for _ in range(args.samples):
                started = time.perf_counter()
                other.execute("SELECT 1").fetchone()
                taken["round_trip"].append((time.perf_counter() - started) * 1000)
                time.sleep(0.02)
                started = time.perf_counter()
                other.execute("INSERT INTO public.floor VALUES (1)")
                taken["durable_insert"].append((time.perf_counter() - started) * 1000)
                time.sleep(0.02)
                started = time.perf_counter()
                bench_tasks.stamp.enqueue(time.time())
                taken["enqueue"].append((time.perf_counter() - started) * 1000)
                time.sleep(0.02)
                other.execute(BARE, (repr(time.time()),), prepare=True)
                time.sleep(0.02)
            deadline = time.monotonic() + 30
            while (
                time.monotonic() < deadline
                and min(len(stamps.read_text().split()), len(chains.read_text().split()))
                < args.samples
            ):
                time.sleep(0.1)
    finally:
        stop_worker(worker)
        stop_worker(bare)
        bench_tasks.app.close()
    latency = [float(v) for v in stamps.read_text().split()]
    chain = [float(v) for v in chains.read_text().split()]
    stamps.unlink()
    chains.unlink()
    if len(latency) < args.samples or len(chain) < args.samples:
        raise SystemExit(f"only {len(latency)} jobs and {len(chain)} chains of {args.samples}")
    results: dict[str, object] = {step: percentiles(v) for step, v in taken.items()}
    results["latency"] = percentiles(latency)
    results["notified_chain"] = percentiles(chain)
    p50 = {step: results[step]["p50"] for step in STEPS}  # type: ignore[index]
    results["worker_p50"] = round(p50["latency"] - p50["enqueue"], 2)
    results["floor_p50"] = p50["notified_chain"]
    results["samples"] = args.samples
    (BENCH / "results" / "latency_floor.json").write_text(json.dumps(results, indent=2) + "\n")
    for step in STEPS:
        print(f"{step:15} p50 {results[step]['p50']:6.2f} ms  p90 {results[step]['p90']:6.2f} ms")  # type: ignore[index]
    print(
        f"the worker adds {results['worker_p50']} ms (latency less enqueue, p50); the bare "
        f"notified chain (a durable insert, its notification, one round trip): "
        f"{results['floor_p50']} ms"
    )
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
