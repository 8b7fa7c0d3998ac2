"""What the statistics triggers cost the workers' hot path: claims and outcome writes of
batches of jobs on one connection, alternating between two databases migrated to head, one
of them with the statistics triggers dropped.

Usage: .venv/bin/python bench/stats_trigger_cost.py [--dsn postgresql://postgres@127.0.0.1:5432/postgres]
       [--jobs 20000] [--batch 50]

Each round claims `--batch` jobs with the store's job_claim and writes their successes with
job_finish_many, as a worker does, timed in the client (round trips included). The two
databases (`bench_stats_with`, `bench_stats_without`) are dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import psycopg
from psycopg_pool import AsyncConnectionPool

from pgqueue import migrate
from pgqueue.store import AsyncJobStore, OutcomeRow

TRIGGERS = ("jobs_stats_insert", "jobs_stats_update", "jobs_stats_delete")


def fresh(server: str, name: str, jobs: int, triggers: bool) -> str:
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    dsn = psycopg.conninfo.make_conninfo(server, dbname=name)
    migrate.upgrade(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for trigger in () if triggers else TRIGGERS:
            conn.execute(f"DROP TRIGGER {trigger} ON pgqueue.jobs")
        conn.execute(
            "INSERT INTO pgqueue.jobs (task, queue, priority, max_attempts, args)"
            " SELECT 'add', 'default', 0, 3, jsonb_build_array(i, i)"
            " FROM generate_series(1, %s) AS i",
            (jobs,),
        )
        conn.execute("VACUUM ANALYZE pgqueue.jobs")
    return dsn


async def run(server: str, jobs: int, batch: int) -> dict[str, float]:
    dsns = {
        "with": fresh(server, "bench_stats_with", jobs, triggers=True),
        "without": fresh(server, "bench_stats_without", jobs, triggers=False),
    }
    stores: dict[str, AsyncJobStore] = {}
    workers: dict[str, uuid.UUID] = {}
    spent = dict.fromkeys(dsns, 0.0)
    for kind, dsn in dsns.items():
        pool = AsyncConnectionPool(
            dsn, min_size=1, max_size=1, open=False, kwargs={"autocommit": True}
        )
        await pool.open()
        stores[kind] = AsyncJobStore(pool)
        workers[kind] = uuid.uuid4()
        await stores[kind].worker_register(workers[kind], "bench", 1, None, batch, 30.0)
    try:
        for done in range(0, jobs, batch):
            order = ("with", "without") if (done // batch) % 2 else ("without", "with")
            for kind in order:
                start = time.perf_counter()
                claimed = await stores[kind].job_claim(workers[kind], None, batch)
                outcomes = [
                    OutcomeRow(j.id, j.attempts, "succeeded", result_json="1") for j in claimed
                ]
                await stores[kind].job_finish_many(workers[kind], outcomes)
                spent[kind] += time.perf_counter() - start
    finally:
        for store in stores.values():
            await store.pool.close()
        with psycopg.connect(server, autocommit=True) as conn:
            for name in ("bench_stats_with", "bench_stats_without"):
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    return {kind: seconds / jobs * 1e6 for kind, seconds in spent.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--jobs", type=int, default=20_000)
    p.add_argument("--batch", type=int, default=50)
    args = p.parse_args()
    per_job = asyncio.run(run(args.dsn, args.jobs, args.batch))
    for kind, us in per_job.items():
        print(
            f"{kind} the triggers: {us:.1f} us per job (claim + outcome, batches of {args.batch})"
        )
    print(f"ratio with / without: {per_job['with'] / per_job['without']:.3f}")


if __name__ == "__main__":
    main()
