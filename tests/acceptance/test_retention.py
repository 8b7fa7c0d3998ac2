"""Retention: under sustained load the jobs table stays bounded, in rows and in size."""

from __future__ import annotations

import signal
import time

import pytest

from tests.acceptance.conftest import run_cli

TOTAL = 100_000  # ten times the backlog the feed keeps queued: kept rows would show at once
CHUNK = 5_000


def pump(app, db, worker) -> tuple[int, int]:
    """Feed TOTAL no-op jobs, keeping the backlog under 2 chunks; return (max rows seen,
    table size in bytes after VACUUM)."""
    peak = 0
    for start in range(0, TOTAL, CHUNK):
        deadline = time.monotonic() + 120
        while (
            db.execute("SELECT count(*) FROM pgqueue.jobs WHERE state = 'queued'").fetchone()[0]
            > CHUNK
        ):
            assert time.monotonic() < deadline, worker.output()[-2000:]
            peak = max(peak, db.execute("SELECT count(*) FROM pgqueue.jobs").fetchone()[0])
            time.sleep(0.1)
        app.enqueue_many(
            [{"task": "tick", "args": [i], "queue": "bulk"} for i in range(start, start + CHUNK)]
        )
        peak = max(peak, db.execute("SELECT count(*) FROM pgqueue.jobs").fetchone()[0])
    deadline = time.monotonic() + 120
    while db.execute("SELECT count(*) FROM pgqueue.jobs WHERE state <> 'succeeded'").fetchone()[0]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(2.0)  # a few pruning rounds
    db.execute("VACUUM pgqueue.jobs")
    size = db.execute("SELECT pg_relation_size('pgqueue.jobs')").fetchone()[0]
    return peak, size


@pytest.mark.slow
@pytest.mark.timeout(300)  # about a minute alone; tests run beside it share the CPUs
@pytest.mark.parametrize("retain", ["0", "1s"])
def test_table_stays_bounded_under_load(app, db, spawn_worker, retain):
    worker = spawn_worker(
        "--concurrency", "50", "--retain-succeeded", retain, "--heartbeat-interval", "0.5"
    )
    worker.wait_started()
    peak, size = pump(app, db, worker)
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    left = db.execute("SELECT count(*) FROM pgqueue.jobs").fetchone()[0]
    print(
        f"\nretention {retain}: {TOTAL} jobs, peak {peak} rows, {left} left, "
        f"{size / 1e6:.1f} MB after VACUUM"
    )
    assert peak < 40_000, "finished jobs piled up"  # kept, they would be 100,000
    assert left < 10_000
    if not autovacuum_visits_often(db):
        # A server the run does not own (PGQUEUE_TEST_DSN) with autovacuum off or visiting
        # once a minute: the rows are bounded (above), reusing their space is vacuum's part.
        return
    # 100,000 rows of these jobs take about 20 MB: the table reused its space instead.
    assert size < 8e6


def autovacuum_visits_often(db) -> bool:
    """True when autovacuum runs and visits a database at least every 10 s."""
    on = db.execute("SELECT current_setting('autovacuum')").fetchone()[0] == "on"
    nap = db.execute(
        "SELECT setting::int FROM pg_settings WHERE name = 'autovacuum_naptime'"
    ).fetchone()[0]
    return on and nap <= 10


def test_cli_list_retry_purge_on_real_data(app, db, worker):
    ok = app.enqueue_many([{"task": "add", "args": [i, i]} for i in range(30)])
    bad = [app.enqueue("always_fails", max_attempts=1) for _ in range(5)]
    with worker(concurrency=8):
        app.wait(ok[-1], timeout=20)
        for job_id in bad:
            with pytest.raises(Exception):  # noqa: B017 - JobFailed
                app.wait(job_id, timeout=20)
    import json

    listed = json.loads(run_cli("jobs", "list", "--state", "dead", "--json").stdout)
    assert sorted(j["id"] for j in listed) == sorted(bad)
    page = json.loads(run_cli("jobs", "list", "--limit", "10", "--json").stdout)
    assert len(page) == 10 and page[0]["id"] > page[-1]["id"]
    nxt = json.loads(
        run_cli(
            "jobs", "list", "--limit", "10", "--before-id", str(page[-1]["id"]), "--json"
        ).stdout
    )
    assert nxt[0]["id"] < page[-1]["id"]
    shown = json.loads(run_cli("jobs", "show", str(bad[0]), "--json").stdout)
    assert shown["state"] == "dead" and shown["errors"][0]["error"] == "ValueError: it never works"
    stats = {r["queue"]: r for r in json.loads(run_cli("stats", "--json").stdout)}
    assert stats["default"]["succeeded"] == 30 and stats["default"]["dead"] == 5
    assert stats["default"]["latency_p50"] is not None
    retried = json.loads(run_cli("jobs", "retry", "--all-dead", "--json").stdout)
    assert retried == {"retried": 5}
    assert db.execute("SELECT count(*) FROM pgqueue.jobs WHERE state = 'queued'").fetchone()[0] == 5
    purged = json.loads(
        run_cli("jobs", "purge", "--state", "succeeded", "--older-than", "0s", "--json").stdout
    )
    assert purged == {"purged": 30}
    bad_state = run_cli("jobs", "list", "--state", "nope")
    assert bad_state.returncode != 0 and "unknown state" in bad_state.stderr
    workers = run_cli("workers", "--json")
    assert workers.returncode == 0 and json.loads(workers.stdout) == []
