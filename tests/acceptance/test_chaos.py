"""Chaos: workers SIGKILLed at random and PostgreSQL restarted under load. Nothing is lost,
nothing is stuck, every job succeeds exactly once, and no (job, attempt) runs twice."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import psycopg
import pytest

from tests.acceptance.chaos import kill_and_restart, own_server, query
from tests.acceptance.conftest import ROOT

JOBS = 5000
WORKER_ARGS = [
    "--concurrency",
    "8",
    "--lease",
    "3",
    "--heartbeat-interval",
    "0.5",
    "--shutdown-grace",
    "10",
    "--poll-interval",
    "1",
]


def start(dsn: str, log, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pgqueue.cli", "work", "tests.jobs:app", *WORKER_ARGS, *extra],
        cwd=ROOT,
        env={**os.environ, "PGQUEUE_DSN": dsn, "PYTHONUNBUFFERED": "1"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )


@pytest.mark.slow
def test_chaos_kills_and_restart_lose_nothing(tmp_path):
    rng = random.Random(int(os.environ.get("PGQUEUE_CHAOS_SEED", "7")))
    with own_server() as server:
        dsn = server.dsn
        with psycopg.connect(dsn, autocommit=True) as conn:
            values = ",".join(f"('chaos_item', '[{i}]')" for i in range(JOBS))
            conn.execute(f"INSERT INTO pgqueue.jobs (task, args) VALUES {values}")
        run = kill_and_restart(
            server,
            start,
            tmp_path / "workers.log",
            JOBS,
            kill_at=[0.05, 0.15, 0.25, 0.35, 0.5, 0.6, 0.7, 0.8],
            restart_at=0.4,
            rng=rng,
        )
        kills, restarts, took, codes, output = (
            run.kills, run.restarts, run.took, run.codes, run.output
        )  # fmt: skip
        (ROOT / "tests" / "artifacts").mkdir(exist_ok=True)
        (ROOT / "tests" / "artifacts" / "chaos-workers.log").write_text(output)
        assert codes == [0, 0, 0], output[-3000:]

        states = dict(query(dsn, "SELECT state, count(*) FROM pgqueue.jobs GROUP BY state"))
        assert states == {"succeeded": JOBS}
        twice = query(
            dsn, "SELECT job_id, attempt FROM public.effects GROUP BY 1, 2 HAVING count(*) > 1"
        )
        assert twice == [], "an attempt ran twice"
        missing = query(
            dsn,
            "SELECT count(*) FROM pgqueue.jobs j WHERE NOT EXISTS "
            "(SELECT 1 FROM public.effects e WHERE e.job_id = j.id)",
        )
        assert missing == [(0,)]
        reran = query(
            dsn,
            "SELECT count(*) FROM (SELECT job_id FROM public.effects "
            "GROUP BY 1 HAVING count(*) > 1) AS r",
        )[0][0]
        rescued = query(
            dsn, "SELECT count(*) FROM pgqueue.jobs WHERE errors::text LIKE '%%WorkerLost%%'"
        )[0][0]
        assert kills >= 6 and restarts == 1
        assert "Traceback" not in output, output[output.index("Traceback") - 500 :][:3000]
        print(
            f"\nchaos: {JOBS} jobs, {kills} SIGKILLs, {restarts} PostgreSQL restart, "
            f"{reran} jobs ran more than once, {rescued} rescued, {took:.1f}s"
        )
