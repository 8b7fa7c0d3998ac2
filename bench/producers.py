"""Many producers, one job per transaction: what the insert trigger's wake-up costs them.

Usage: .venv/bin/python bench/producers.py [--dsn postgresql://postgres@127.0.0.1:5432/postgres]

pgbench runs --clients producers for --seconds each, every transaction one INSERT of one job
into pgqueue.jobs (the columns pgqueue's enqueue writes), on a fresh database
`bench_producers`, in three setups, side by side:
1. trigger off: the wake-up trigger disabled (the ceiling);
2. nobody waits: the trigger on, every registered worker busy (`waiting` false);
3. a worker waits: the trigger on and one registered worker waiting, so that every insert
   notifies, as every insert did before workers said when they wait.
Prints transactions per second and the ratios to the first; results in
bench/results/producers.json. Needs pgbench (PostgreSQL's client tools).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import psycopg

BENCH = Path(__file__).resolve().parent
DB = "bench_producers"
INSERT = (
    "INSERT INTO pgqueue.jobs (task, args, kwargs, queue, priority, max_attempts) "
    "VALUES ('bench.noop', '[1]', '{}', 'default', 0, 3);\n"
)


def fresh_database(server: str) -> str:
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    dsn = psycopg.conninfo.make_conninfo(server, dbname=DB)
    subprocess.run([sys.executable, "-m", "pgqueue.cli", "migrate", "--dsn", dsn],
                   check=True, capture_output=True)  # fmt: skip
    return dsn


def pgbench(dsn: str, clients: int, seconds: int, script: Path) -> float:
    out = subprocess.run(
        ["pgbench", "-n", "-c", str(clients), "-j", str(min(clients, 4)), "-T", str(seconds),
         "-f", str(script), dsn],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    match = re.search(r"tps = ([0-9.]+)", out)
    assert match, out
    return float(match.group(1))


def setup(dsn: str, trigger: bool, waiting: bool | None) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE pgqueue.jobs")
        conn.execute("DELETE FROM pgqueue.workers")
        state = "ENABLE" if trigger else "DISABLE"
        conn.execute(f"ALTER TABLE pgqueue.jobs {state} TRIGGER jobs_notify_insert")
        if waiting is not None:
            conn.execute(
                "INSERT INTO pgqueue.workers (id, host, pid, queues, concurrency, lease, "
                "waiting) VALUES (%s, 'bench', 1, '{*}', 10, 3600, %s)",
                (uuid.uuid4(), waiting),
            )
        conn.execute("CHECKPOINT")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--rounds", type=int, default=2, help="each setup this many times, alternated")
    args = p.parse_args(argv)
    if shutil.which("pgbench") is None:
        print("pgbench not found (PostgreSQL's client tools)", file=sys.stderr)
        return 2
    dsn = fresh_database(args.dsn)
    setups = {"trigger_off": (False, None), "nobody_waits": (True, False),
              "a_worker_waits": (True, True)}  # fmt: skip
    tps: dict[str, list[float]] = {name: [] for name in setups}
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "insert.sql"
        script.write_text(INSERT)
        for _ in range(args.rounds):
            for name, (trigger, waiting) in setups.items():
                setup(dsn, trigger, waiting)
                tps[name].append(pgbench(dsn, args.clients, args.seconds, script))
    best = {name: max(values) for name, values in tps.items()}
    results = {
        "clients": args.clients,
        "seconds": args.seconds,
        "tps": tps,
        "nobody_waits_vs_trigger_off": round(best["nobody_waits"] / best["trigger_off"], 2),
        "a_worker_waits_vs_trigger_off": round(best["a_worker_waits"] / best["trigger_off"], 2),
    }
    (BENCH / "results").mkdir(exist_ok=True)
    (BENCH / "results" / "producers.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
