"""Exactly-once database effects under chaos: handlers write one row per job through
ctx.transaction() while workers are SIGKILLed and PostgreSQL restarts. Every job ends
`succeeded` with its row there exactly once; attempts that died or failed left nothing."""

from __future__ import annotations

import os
import random

import psycopg
import pytest

from tests.acceptance.chaos import kill_and_restart, own_server, query
from tests.acceptance.conftest import ROOT
from tests.acceptance.test_chaos import start

JOBS = 2000


@pytest.mark.slow
def test_each_job_writes_its_row_exactly_once_through_kills_and_a_restart(tmp_path):
    rng = random.Random(int(os.environ.get("PGQUEUE_CHAOS_SEED", "11")))
    with own_server() as server:
        dsn = server.dsn
        with psycopg.connect(dsn, autocommit=True) as conn:
            values = ",".join(f"('tx_chaos', '[{i}]')" for i in range(JOBS))
            conn.execute(f"INSERT INTO pgqueue.jobs (task, args) VALUES {values}")
        run = kill_and_restart(
            server,
            start,
            tmp_path / "workers.log",
            JOBS,
            kill_at=[0.1, 0.25, 0.45, 0.6, 0.75, 0.85],
            restart_at=0.35,
            rng=rng,
        )
        kills, restarts, took, codes, output = (
            run.kills, run.restarts, run.took, run.codes, run.output
        )  # fmt: skip
        (ROOT / "tests" / "artifacts").mkdir(exist_ok=True)
        (ROOT / "tests" / "artifacts" / "chaos-transactions-workers.log").write_text(output)
        assert codes == [0, 0, 0], output[-3000:]

        states = dict(query(dsn, "SELECT state, count(*) FROM pgqueue.jobs GROUP BY state"))
        assert states == {"succeeded": JOBS}
        not_once = query(
            dsn,
            "SELECT j.id, count(e.job_id) FROM pgqueue.jobs AS j "
            "LEFT JOIN public.effects AS e ON e.job_id = j.id AND e.note = 'tx' "
            "GROUP BY j.id HAVING count(e.job_id) <> 1",
        )
        assert not_once == [], f"jobs whose row is missing or doubled: {not_once[:10]}"
        retried = query(dsn, "SELECT count(*) FROM pgqueue.jobs WHERE attempts > 1")[0][0]
        assert kills >= 5 and restarts == 1
        assert "Traceback" not in output, output[output.index("Traceback") - 500 :][:3000]
        print(
            f"\nexactly-once chaos: {JOBS} jobs, {kills} SIGKILLs, {restarts} PostgreSQL "
            f"restart, {retried} jobs took more than one attempt, every row once, {took:.1f}s"
        )
