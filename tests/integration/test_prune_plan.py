"""Pruning reads only what it deletes: dead jobs kept for their two weeks are not walked
over at every batch that prunes the successes past their day (with a million of them, a
batch of 1,000 took 0.8 s and pruning fell behind a busy queue)."""

from __future__ import annotations

import asyncio
from typing import Any

from pgqueue.maintenance.prune import Pruner
from pgqueue.settings import WorkerSettings
from pgqueue.sql import QUERIES
from pgqueue.worker.queue_settings import QueueSettings
from tests.stores import with_store

KEPT = 20_000


def removed_by_filter(plan: dict[str, Any]) -> int:
    """Rows that plan nodes read and threw away, over the whole plan."""
    own = int(plan.get("Rows Removed by Filter", 0))
    return own + sum(removed_by_filter(p) for p in plan.get("Plans", []))


def test_pruning_successes_does_not_walk_the_dead_jobs_kept(dsn, db):
    db.execute(
        "INSERT INTO pgqueue.jobs (task, state, attempts, started_at, finished_at)"
        " SELECT 'add', 'dead', 3, now() - interval '3 days', now() - interval '3 days'"
        "   + make_interval(secs => i) FROM generate_series(1, %s) AS i",
        (KEPT,),
    )
    db.execute(
        "INSERT INTO pgqueue.jobs (task, state, attempts, started_at, finished_at)"
        " SELECT 'add', 'succeeded', 1, now() - interval '2 days', now() - interval '2 days'"
        " FROM generate_series(1, 300)"
    )
    db.execute("ANALYZE pgqueue.jobs")
    retention = {"succeeded": 86400.0, "dead": 14 * 86400.0, "cancelled": 7 * 86400.0}
    params = {**retention, "state": "succeeded", "horizon": 86400.0, "batch": 100}
    with db.transaction(force_rollback=True):
        (plan,) = db.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + QUERIES["job_prune"], params
        ).fetchone()[0]
    assert removed_by_filter(plan["Plan"]) < 100, plan

    async def prune(store: Any) -> int:
        settings = QueueSettings(
            WorkerSettings(
                retain_succeeded=86400, retain_dead=14 * 86400, retain_cancelled=7 * 86400
            )
        )
        return int(await Pruner(store, settings, 100).run_once())

    assert asyncio.run(with_store(dsn, prune)) == 300
    counts = dict(db.execute("SELECT state, count(*) FROM pgqueue.jobs GROUP BY 1").fetchall())
    assert counts == {"dead": KEPT}


def test_the_dashboards_window_reads_only_the_window(dsn, db):
    # Keyed (state, finished_at), the index is read for the window's range of each state;
    # `state IN` the three final states alone matched the index's predicate, and the plan
    # read the whole table.
    db.execute(
        "INSERT INTO pgqueue.jobs (task, state, attempts, started_at, finished_at)"
        " SELECT 'add', (ARRAY['succeeded', 'dead', 'cancelled'])[1 + i %% 3], 1,"
        "        now() - interval '2 days', now() - interval '2 days'"
        " FROM generate_series(1, %s) AS i",
        (KEPT,),
    )
    db.execute("ANALYZE pgqueue.jobs")
    series = {"window": 3600, "step": 60, "by": "queue", "queue": None, "task": None}
    for name, params in (("web_breakdown", {"window": 3600}), ("web_series", series)):
        (plan,) = db.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + QUERIES[name], params).fetchone()[
            0
        ]
        assert "Seq Scan" not in str(plan), (name, plan)
        assert removed_by_filter(plan["Plan"]) < 100, (name, plan)
