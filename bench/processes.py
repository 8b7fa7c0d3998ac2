"""Many worker processes on one database: total throughput as processes are added.

Usage: .venv/bin/python bench/processes.py [--dsn postgresql://postgres@127.0.0.1:5432/postgres]
       [--processes 1,2,4,8] [--jobs 100000]

For each number of processes, on a fresh database `bench_fairness` (the helpers of
bench/fairness.py), --jobs no-op jobs are inserted, then `pgqueue work --processes N` (one
supervisor, N worker processes, --concurrency each) drains them; the clock starts when all N
workers are registered. The numbers are run --rounds times, in increasing order and then in
decreasing order by turns, so that the machine's swings reach every number alike. Prints
jobs/s per N (the median of its rounds) and each against the one before, with the CPU each
job cost during the drain in the worker processes and in the server (read from /proc, when
the server runs on this machine): on a machine with fewer cores than processes, jobs/s is
the cores' time over that cost, and the cost says whether a change in jobs/s came from the
code or from the machine. Results in bench/results/processes.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from statistics import median
from typing import Any

import psycopg
from benchlib.cpu import postmaster_pid, server_cpu, tree_cpu
from fairness import APPS, BENCH, DB, drained, fresh_database, insert_backlog

import pgqueue


def run(dsn: str, jobs: int, processes: int, concurrency: int) -> dict[str, object]:
    insert_backlog(dsn, jobs, "plain", None)
    server = postmaster_pid(dsn)
    env = {**os.environ, "PGQUEUE_DSN": dsn, "PYTHONPATH": str(APPS)}
    log = (BENCH / "results" / f"processes-{processes}.log").open("wb")
    app = pgqueue.App(dsn)
    app.pause_queue("plain")
    with psycopg.connect(dsn, autocommit=True) as conn:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pgqueue.cli", "work", "fairness_tasks:app",
             "--processes", str(processes), "--concurrency", str(concurrency),
             "--log-level", "WARNING"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        # Every worker registered before the queue opens: start-up is not throughput.
        while conn.execute("SELECT count(*) FROM pgqueue.workers").fetchone()[0] < processes:  # type: ignore[index]
            time.sleep(0.05)
        cpu = tree_cpu(proc.pid), server_cpu(server) if server else 0.0
        app.resume_queue("plain")  # which tells the workers
        started = time.perf_counter()
        while not drained(conn, "plain", None):
            if proc.poll() is not None:
                raise SystemExit(f"pgqueue work --processes {processes} exited: see {log.name}")
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        workers_us = (tree_cpu(proc.pid) - cpu[0]) / jobs * 1e6
        server_us = (server_cpu(server) - cpu[1]) / jobs * 1e6 if server else None
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        conn.execute("DELETE FROM pgqueue.workers")
        conn.execute("DELETE FROM pgqueue.jobs")
    app.close()
    return {
        "processes": processes,
        "seconds": round(elapsed, 2),
        "jobs_per_s": round(jobs / elapsed),
        # CPU a job cost: the worker processes', and the server's (None if not on this machine)
        "worker_cpu_us": round(workers_us),
        "server_cpu_us": None if server_us is None else round(server_us),
    }


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--processes", default="1,2,4,8")
    p.add_argument("--jobs", type=int, default=100_000)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--rounds", type=int, default=3, help="passes over --processes, alternating")
    args = p.parse_args(argv)
    (BENCH / "results").mkdir(exist_ok=True)
    dsn = fresh_database(args.dsn)
    numbers = [int(n) for n in args.processes.split(",")]
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in numbers}
    for r in range(args.rounds):
        for n in numbers if r % 2 == 0 else numbers[::-1]:
            one = run(dsn, args.jobs, n, args.concurrency)
            print(
                f"round {r + 1}: {n} process(es): {one['jobs_per_s']} jobs/s, CPU a job "
                f"{one['worker_cpu_us']} us in workers, {one['server_cpu_us']} us in the server",
                flush=True,
            )
            runs[n].append(one)
    curve: list[dict[str, Any]] = []
    for n in numbers:
        server = [r["server_cpu_us"] for r in runs[n] if r["server_cpu_us"] is not None]
        curve.append({
            "processes": n,
            "jobs_per_s": round(median(r["jobs_per_s"] for r in runs[n])),
            "rounds": [r["jobs_per_s"] for r in runs[n]],
            "worker_cpu_us": round(median(r["worker_cpu_us"] for r in runs[n])),
            "server_cpu_us": round(median(server)) if server else None,
        })  # fmt: skip
    for before, after in itertools.pairwise(curve):
        after["vs_fewer"] = round(after["jobs_per_s"] / before["jobs_per_s"], 2)
    results = {"jobs": args.jobs, "concurrency": args.concurrency, "curve": curve,
               "cpus": os.cpu_count()}  # fmt: skip
    (BENCH / "results" / "processes.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
