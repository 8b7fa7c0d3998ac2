"""pgqueue demo: enqueue a few hundred jobs of several kinds, run a worker, show the outcome.

Uses PGQUEUE_DSN (or DATABASE_URL) when set; otherwise starts an embedded PostgreSQL from
the `pgserver` package in .pgqueue-demo/ and leaves it running so you can look around.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO_DIR = ROOT / ".pgqueue-demo"


def database() -> tuple[str, bool]:
    dsn = os.environ.get("PGQUEUE_DSN") or os.environ.get("DATABASE_URL")
    if dsn:
        return dsn, False
    import pgserver  # type: ignore[import-untyped]

    DEMO_DIR.mkdir(exist_ok=True)
    print(f"Starting an embedded PostgreSQL in {DEMO_DIR / 'pgdata'} ...")
    server = pgserver.get_server(DEMO_DIR / "pgdata", cleanup_mode=None)
    return server.get_uri(), True


def stop_embedded() -> None:
    import pgserver  # type: ignore[import-untyped]

    pgserver.get_server(DEMO_DIR / "pgdata", cleanup_mode="stop").cleanup()
    print("embedded PostgreSQL stopped")


def main() -> int:
    if "--stop" in sys.argv:
        stop_embedded()
        return 0
    dsn, embedded = database()
    os.environ["PGQUEUE_DSN"] = dsn
    sys.path.insert(0, str(ROOT))

    from pgqueue import migrate

    migrate.upgrade(dsn)
    print("Schema migrated (pgqueue migrate).")

    from examples.shop import app

    jobs = (
        [{"task": "send_receipt", "args": [i, f"customer{i}@example.com"]} for i in range(200)]
        + [
            {"task": "resize_image", "args": [f"img/{i}.png", [64, 256]], "priority": 5}
            for i in range(60)
        ]
        + [{"task": "charge_card", "args": [i, 1000 + i], "priority": 10} for i in range(30)]
        + [
            {"task": "import_feed", "args": [f"https://feeds.example.com/{i}.xml"]}
            for i in range(5)
        ]
        + [{"task": "wait_for_stock", "args": [f"SKU-{i}"]} for i in range(5)]
        + [{"task": "send_receipt", "args": [999, "late@example.com"], "delay": 2.0}]
        + [{"task": "no_such_task", "args": []}]
        + [{"task": "send_receipt", "args": ["missing the email"]}]
    )
    started = time.monotonic()
    ids = app.enqueue_many(jobs)
    print(
        f"Enqueued {len(ids)} jobs in one statement in {time.monotonic() - started:.3f}s: "
        "receipts (sync), image resizes (async), flaky payments (retried), feed imports "
        "(always fail), stock checks (snooze with Retry), one delayed by 2s, two poison jobs."
    )

    log_path = (DEMO_DIR if embedded else ROOT) / "demo-worker.log"
    DEMO_DIR.mkdir(exist_ok=True)
    print(f"Starting `pgqueue work examples.shop:app --concurrency 20` (log: {log_path}) ...")
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pgqueue.cli",
                "work",
                "examples.shop:app",
                "--concurrency",
                "20",
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            finished = wait_final(app, ids, timeout=120)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(60)
    elapsed = time.monotonic() - started
    report(app, ids, elapsed, finished, dsn, embedded, log_path)
    app.close()
    return 0


def wait_final(app: object, ids: list[int], timeout: float) -> bool:
    from sqlalchemy import create_engine, func, select

    from pgqueue.migrate import sqlalchemy_url
    from pgqueue.schema import jobs as t

    engine = create_engine(sqlalchemy_url(os.environ["PGQUEUE_DSN"]))
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                left = conn.execute(
                    select(func.count())
                    .select_from(t)
                    .where(t.c.id.in_(ids), t.c.state.in_(["queued", "running"]))
                ).scalar_one()
            print(f"\r  {len(ids) - left}/{len(ids)} jobs final", end="", flush=True)
            if left == 0:
                print()
                return True
            time.sleep(0.25)
    finally:
        engine.dispose()
    print()
    return False


def report(app, ids, elapsed, finished, dsn, embedded, log_path) -> None:  # type: ignore[no-untyped-def]
    import psycopg

    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT task, state, count(*), max(attempts) FROM pgqueue.jobs "
            "WHERE id = ANY(%s) GROUP BY 1, 2 ORDER BY 1, 2",
            (ids,),
        ).fetchall()
        dead_id = conn.execute(
            "SELECT id FROM pgqueue.jobs WHERE id = ANY(%s) AND task = 'import_feed' LIMIT 1",
            (ids,),
        ).fetchone()[0]
    print(f"\nWhat happened ({elapsed:.1f}s{'' if finished else ', not all finished'}):")
    print(f"  {'task':<16}{'state':<11}{'jobs':>6}{'max attempts':>14}")
    for task, state, count, attempts in rows:
        print(f"  {task:<16}{state:<11}{count:>6}{attempts:>14}")
    job = app.get_job(dead_id)
    print(f"\nA dead job, {job.id} ({job.task}), kept its error history:")
    for err in job.errors:
        print(f"  attempt {err['attempt']}: {err['error']}")
    print("\nWhere to look:")
    print(f"  export PGQUEUE_DSN='{dsn}'")
    print("  .venv/bin/pgqueue stats")
    print(f"  .venv/bin/pgqueue jobs show {dead_id}")
    print("  psql \"$PGQUEUE_DSN\" -c 'SELECT state, count(*) FROM pgqueue.jobs GROUP BY 1'")
    print(f"  worker log: {log_path}")
    if embedded:
        print("The embedded PostgreSQL keeps running; `scripts/demo --stop` stops it.")


if __name__ == "__main__":
    raise SystemExit(main())
