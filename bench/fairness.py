"""Per-key fairness: a noisy key's backlog against a quiet key that enqueues now and then.

Usage: .venv/bin/python bench/fairness.py [--dsn postgresql://postgres@127.0.0.1:5432/postgres]
       [--jobs 100000] [--per-key 100] [--rounds 3]

On a fresh database `bench_fairness`, each drain by one `pgqueue work` process at the same
concurrency:
1. plain: N no-op jobs without keys in a queue without limits, drained; jobs/s.
2. per-key: N no-op jobs of key "noisy" in a queue with a per-key limit, while a producer
   enqueues one job of key "quiet" every 100 ms; the noisy drain rate (jobs/s), and the quiet
   jobs' enqueue-to-start latency (p50, p99, max).
3. the same without the per-key limit: what the quiet key gets when nothing is fair (once).
Plain and per-key drains alternate for --rounds rounds, each round in the other order than
the one before, and the table is emptied between drains: the machine's swings reach both
alike, and neither drain runs beside the other's finished jobs. The ratio reported is the
median of the rounds' ratios. Results are printed and written to bench/results/fairness.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from math import inf
from pathlib import Path
from statistics import median
from typing import Any

import psycopg

BENCH = Path(__file__).resolve().parent
APPS = BENCH / "apps"
DB = "bench_fairness"


def with_db(dsn: str, name: str) -> str:
    return psycopg.conninfo.make_conninfo(dsn, dbname=name)


def fresh_database(server: str) -> str:
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    dsn = with_db(server, DB)
    subprocess.run(
        [sys.executable, "-m", "pgqueue.cli", "migrate", "--dsn", dsn],
        check=True,
        capture_output=True,
    )
    return dsn


def insert_backlog(dsn: str, n: int, queue: str, key: str | None) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO pgqueue.jobs (task, args, queue, priority, max_attempts, "
            "concurrency_key) SELECT 'fair.noop', jsonb_build_array(i), %s, 0, 3, %s "
            "FROM generate_series(1, %s) AS i",
            (queue, key, n),
        )
        conn.execute("VACUUM ANALYZE pgqueue.jobs")


def empty_table(dsn: str) -> None:
    """Drop the finished jobs, so that the next drain starts on a table like this one's."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM pgqueue.jobs")
        conn.execute("DELETE FROM pgqueue.claim_floors")
        conn.execute("VACUUM ANALYZE pgqueue.jobs")


def start_worker(dsn: str, concurrency: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PGQUEUE_DSN": dsn, "PYTHONPATH": str(APPS)}
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "pgqueue.cli", "work", "fairness_tasks:app",
             "--concurrency", str(concurrency), "--log-level", "WARNING"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def drained(conn: psycopg.Connection, queue: str, key: str | None, due_only: bool = False) -> bool:
    """No job of the backlog left queued or running (with `due_only`, none due or running):
    an existence probe through the claim and running indexes, never a count over the table."""
    if due_only:
        # Two probes, each one range of an index: the running jobs, and the due jobs of
        # priority 0 (those of bench/claim_cost.py) in the claim index, which ends before
        # the jobs due later and those waiting on others.
        row = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pgqueue.jobs WHERE state = 'running' AND queue = %s) "
            "OR EXISTS (SELECT 1 FROM pgqueue.jobs WHERE state = 'queued' AND queue = %s "
            "AND -priority::bigint = 0 AND run_at <= now())",
            (queue, queue),
        ).fetchone()
        return not (row and row[0])
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pgqueue.jobs WHERE state IN ('queued', 'running') "
        "AND queue = %s AND concurrency_key IS NOT DISTINCT FROM %s)",
        (queue, key),
    ).fetchone()
    return not (row and row[0])


def drain(dsn: str, n: int, queue: str, key: str | None, concurrency: int, log: Path,
          quiet_every: float | None = None, limit: float = 600.0,
          due_only: bool = False) -> dict[str, object]:  # fmt: skip
    samples = BENCH / "results" / f"fairness-{queue}-quiet.txt"
    samples.unlink(missing_ok=True)
    stop = threading.Event()

    def quiet_producer() -> None:
        sys.path.insert(0, str(APPS))
        os.environ["PGQUEUE_DSN"] = dsn
        os.environ["FAIRNESS_SAMPLES"] = str(samples)
        from fairness_tasks import app

        # Open the producer's pool first: the first job's latency is the queue's, not the
        # time this process takes to connect.
        app.get_job(1)
        while not stop.wait(quiet_every):
            app.enqueue("fair.stamp", [time.time()], queue=queue, concurrency_key="quiet")
        app.close()

    os.environ["FAIRNESS_SAMPLES"] = str(samples)
    proc = start_worker(dsn, concurrency, log)
    with psycopg.connect(dsn, autocommit=True) as conn:
        # The clock starts once the worker is registered: its start-up is not the queue's.
        while not conn.execute("SELECT EXISTS (SELECT 1 FROM pgqueue.workers)").fetchone()[0]:
            time.sleep(0.02)
    started = time.perf_counter()
    producer = threading.Thread(target=quiet_producer, daemon=True)
    if quiet_every:
        producer.start()
    with psycopg.connect(dsn, autocommit=True) as conn:
        while not drained(conn, queue, key, due_only):
            # A worker that died, or a drain past its limit, has no rate to report.
            died = proc.poll() is not None
            if died or time.perf_counter() - started > limit:
                stop.set()
                stop_worker(proc)
                what = "exited" if died else f"was not done after {limit:.0f} s"
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
                raise SystemExit(f"the {queue} drain's worker {what}; its log:\n{tail}")
            time.sleep(0.1)
    elapsed = time.perf_counter() - started
    stop.set()
    if quiet_every:
        producer.join(10)
        time.sleep(0.5)  # the last quiet jobs start
    stop_worker(proc)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM pgqueue.workers")
    result: dict[str, object] = {"jobs": n, "seconds": round(elapsed, 2),
                                 "jobs_per_s": round(n / elapsed)}  # fmt: skip
    if quiet_every and samples.exists():
        lat = sorted(float(x) for x in samples.read_text().split())
        if lat:
            result.update(
                quiet_jobs=len(lat),
                quiet_p50_ms=round(lat[len(lat) // 2], 1),
                quiet_p99_ms=round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 1),
                quiet_max_ms=round(lat[-1], 1),
            )
    return result


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--jobs", type=int, default=100_000)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--per-key", type=int, default=100)
    p.add_argument("--rounds", type=int, default=3, help="plain/per-key pairs, alternating")
    args = p.parse_args(argv)
    (BENCH / "results").mkdir(exist_ok=True)
    dsn = fresh_database(args.dsn)
    logs = BENCH / "results"
    results: dict[str, object] = {"jobs": args.jobs, "concurrency": args.concurrency,
                                  "per_key": args.per_key}  # fmt: skip

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO pgqueue.queues (name, per_key_limit, updated_at) VALUES ('fair', %s, "
            "now())",
            (args.per_key,),
        )
    rounds: list[dict[str, Any]] = []
    for r in range(args.rounds):
        order = ["plain", "per_key"] if r % 2 == 0 else ["per_key", "plain"]
        one: dict[str, Any] = {}
        for kind in order:
            if kind == "plain":
                insert_backlog(dsn, args.jobs, "plain", None)
                one["plain"] = drain(dsn, args.jobs, "plain", None, args.concurrency,
                                     logs / "fairness-plain.log")  # fmt: skip
            else:
                insert_backlog(dsn, args.jobs, "fair", "noisy")
                one["per_key"] = drain(dsn, args.jobs, "fair", "noisy", args.concurrency,
                                       logs / "fairness-per-key.log", quiet_every=0.1)  # fmt: skip
            empty_table(dsn)
        one["noisy_vs_plain"] = round(one["per_key"]["jobs_per_s"] / one["plain"]["jobs_per_s"], 2)
        print(f"round {r + 1}: {json.dumps(one)}", flush=True)
        rounds.append(one)

    insert_backlog(dsn, args.jobs, "unfair", "noisy")
    results["no_limit"] = drain(dsn, args.jobs, "unfair", "noisy", args.concurrency,
                                logs / "fairness-no-limit.log", quiet_every=0.1)  # fmt: skip

    results["rounds"] = rounds
    results["plain_jobs_per_s"] = median(x["plain"]["jobs_per_s"] for x in rounds)
    results["per_key_jobs_per_s"] = median(x["per_key"]["jobs_per_s"] for x in rounds)
    results["quiet_p99_ms_worst"] = max(x["per_key"].get("quiet_p99_ms", inf) for x in rounds)
    results["noisy_vs_plain"] = median(x["noisy_vs_plain"] for x in rounds)
    (BENCH / "results" / "fairness.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
