"""Chaos: workers SIGKILLed at random and PostgreSQL restarted under load. Nothing is lost,
nothing is stuck, every job succeeds exactly once, and no (job, attempt) runs twice."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import psycopg
import pytest

from tests.acceptance.chaos import children_of, own_server
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


def query(dsn: str, sql: str):
    # A fresh connection each time: the server restarts under our feet.
    for _ in range(100):
        try:
            with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
                return conn.execute(sql).fetchall()
        except psycopg.OperationalError:
            time.sleep(0.2)
    raise AssertionError("database did not come back")


@pytest.mark.slow
def test_chaos_kills_and_restart_lose_nothing(tmp_path):
    rng = random.Random(int(os.environ.get("PGQUEUE_CHAOS_SEED", "7")))
    with own_server() as server:
        dsn = server.dsn
        with psycopg.connect(dsn, autocommit=True) as conn:
            values = ",".join(f"('chaos_item', '[{i}]')" for i in range(JOBS))
            conn.execute(f"INSERT INTO pgqueue.jobs (task, args) VALUES {values}")
        log = open(tmp_path / "workers.log", "wb")  # noqa: SIM115
        supervisor = start(dsn, log, "--processes", "2")
        singles = [start(dsn, log), start(dsn, log)]
        kills = restarts = 0
        t0 = time.monotonic()
        # Kills are paced by progress, not by the clock, so a fast machine gets as many.
        kill_at = [int(JOBS * f) for f in (0.05, 0.15, 0.25, 0.35, 0.5, 0.6, 0.7, 0.8)]
        restarted = False
        try:
            while True:
                done = query(dsn, "SELECT count(*) FROM pgqueue.jobs WHERE state = 'succeeded'")
                if done[0][0] == JOBS:
                    break
                elapsed = time.monotonic() - t0
                assert elapsed < 240, f"stuck at {done[0][0]}/{JOBS}"
                if not restarted and done[0][0] >= JOBS * 0.4:
                    server.restart()
                    restarted, restarts = True, restarts + 1
                if kill_at and done[0][0] >= kill_at[0]:
                    kill_at.pop(0)
                    victims = [("child", pid) for pid in children_of(supervisor.pid)]
                    victims += [("single", i) for i in range(len(singles))]
                    kind, which = rng.choice(victims)
                    if kind == "child":
                        os.kill(which, signal.SIGKILL)
                    else:
                        singles[which].send_signal(signal.SIGKILL)
                        singles[which].wait(10)
                        singles[which] = start(dsn, log)
                    kills += 1
                time.sleep(0.1)
            took = time.monotonic() - t0
            for proc in [supervisor, *singles]:
                proc.send_signal(signal.SIGTERM)
            codes = [proc.wait(60) for proc in [supervisor, *singles]]
        finally:
            for proc in [supervisor, *singles]:
                if proc.poll() is None:
                    proc.kill()
            for pid in children_of(supervisor.pid):
                os.kill(pid, signal.SIGKILL)
            log.close()
        output = (tmp_path / "workers.log").read_text(errors="replace")
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
