"""Chaos for the lifecycle: a worker SIGSTOPped past its lease, a database outage longer than
the lease with jobs running through it, cancels sent as the database comes back (when no
worker is listening yet), SIGKILLs, and jobs with large results. Nothing is lost, nothing
succeeds twice, nothing is cancelled that nobody asked to cancel, and no process ever runs
two attempts of one job at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psycopg
import pytest

import pgqueue
from tests.acceptance.chaos import own_server, wait_registered
from tests.acceptance.conftest import ROOT

LEASE = 3.0
WORKER_ARGS = ["--concurrency", "8", "--lease", str(LEASE), "--heartbeat-interval", "0.5",
               "--shutdown-grace", "10", "--poll-interval", "1"]  # fmt: skip
QUICK, NAPS, BIG, DOOMED = 2000, 24, 40, 12


def start(dsn: str, log) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pgqueue.cli", "work", "tests.jobs:app", *WORKER_ARGS],
        cwd=ROOT,
        env={**os.environ, "PGQUEUE_DSN": dsn, "PYTHONUNBUFFERED": "1"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def query(dsn: str, sql: str, params: tuple = ()) -> list[tuple]:
    for _ in range(150):  # the server stops and starts under our feet
        try:
            with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
                return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]
        except psycopg.OperationalError:
            time.sleep(0.2)
    raise AssertionError("database did not come back")


def wait_until(dsn: str, sql: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not query(dsn, sql)[0][0]:
        assert time.monotonic() < deadline, f"timed out waiting for: {sql}"
        time.sleep(0.1)


@pytest.mark.slow
def test_chaos_pause_outage_cancels_and_large_results(tmp_path):
    with own_server() as server:
        dsn = server.dsn
        with psycopg.connect(dsn, autocommit=True) as conn:
            # Long jobs first (priority), so that they run through the pause and the outage.
            conn.execute(
                "INSERT INTO pgqueue.jobs (task, args, priority) "
                "SELECT 'nap_logged', '[4]', 10 FROM generate_series(1, %s)",
                (NAPS,),
            )
            conn.execute(
                "INSERT INTO pgqueue.jobs (task, args, priority) "
                "SELECT 'cooperative', '[120]', 5 FROM generate_series(1, %s)",
                (DOOMED,),
            )
            conn.execute(
                "INSERT INTO pgqueue.jobs (task, args) "
                "SELECT 'big_result', %s::jsonb FROM generate_series(1, %s)",
                (f"[{2 * 2**20}]", BIG),
            )
            conn.execute(
                "INSERT INTO pgqueue.jobs (task, args) "
                "SELECT 'chaos_item', jsonb_build_array(i) FROM generate_series(1, %s) AS i",
                (QUICK,),
            )
        total = NAPS + DOOMED + BIG + QUICK
        log = open(tmp_path / "workers.log", "wb")  # noqa: SIM115
        workers = [start(dsn, log) for _ in range(4)]
        t0 = time.monotonic()
        try:
            # 1. Pause one worker past its lease while it runs long jobs; others rescue them.
            wait_until(dsn, "SELECT count(*) >= 8 FROM public.effects WHERE note = 'start'", 60)
            workers[0].send_signal(signal.SIGSTOP)
            time.sleep(2.5 * LEASE)
            workers[0].send_signal(signal.SIGCONT)
            # 2. A database outage longer than the lease, with long jobs running through it.
            wait_until(
                dsn, "SELECT count(*) >= 4 FROM pgqueue.jobs "
                "WHERE state = 'running' AND task = 'cooperative'", 60,
            )  # fmt: skip
            server.stop()
            time.sleep(2 * LEASE)
            server.restart_stopped()
            # 3. Cancels sent the moment it is back, before the workers listen again.
            doomed = [r[0] for r in query(dsn, "SELECT id FROM pgqueue.jobs "
                                               "WHERE task = 'cooperative'")]  # fmt: skip
            with pgqueue.App(dsn) as admin:
                assert all(admin.cancel(job_id) for job_id in doomed)
            # 4. A SIGKILL for good measure; its replacement joins.
            workers[1].send_signal(signal.SIGKILL)
            workers[1].wait(10)
            workers[1] = start(dsn, log)
            wait_until(
                dsn, f"SELECT count(*) = {total} FROM pgqueue.jobs "
                "WHERE state IN ('succeeded', 'dead', 'cancelled')", 240,
            )  # fmt: skip
            took = time.monotonic() - t0
            wait_registered(dsn, workers)  # the replacement may still be starting up
            for proc in workers:
                proc.send_signal(signal.SIGTERM)
            codes = [proc.wait(60) for proc in workers]
        finally:
            for proc in workers:
                if proc.poll() is None:
                    proc.kill()
            log.close()
        output = (tmp_path / "workers.log").read_text(errors="replace")
        (ROOT / "tests" / "artifacts").mkdir(exist_ok=True)
        (ROOT / "tests" / "artifacts" / "chaos-lifecycle-workers.log").write_text(output)
        assert codes == [0, 0, 0, 0], output[-3000:]
        states = dict(query(dsn, "SELECT task || ':' || state, count(*) FROM pgqueue.jobs "
                                 "GROUP BY 1"))  # fmt: skip
        assert states == {
            "nap_logged:succeeded": NAPS,
            "cooperative:cancelled": DOOMED,
            "big_result:succeeded": BIG,
            "chaos_item:succeeded": QUICK,
        }, states
        sizes = query(dsn, "SELECT min(octet_length(result::text)) FROM pgqueue.jobs "
                           "WHERE task = 'big_result'")  # fmt: skip
        assert sizes == [(2 * 2**20 + 2,)]
        twice = query(dsn, "SELECT job_id, attempt, note FROM public.effects "
                           "WHERE note <> 'end' GROUP BY 1, 2, 3 HAVING count(*) > 1")  # fmt: skip
        assert twice == [], "an attempt ran twice"
        overlap = query(
            dsn,
            """
            WITH spans AS (
                SELECT job_id, attempt, pid,
                       min(at) FILTER (WHERE note = 'start') AS started,
                       coalesce(max(at) FILTER (WHERE note = 'end'), 'infinity') AS ended
                FROM public.effects WHERE note IN ('start', 'end')
                GROUP BY job_id, attempt, pid
            )
            SELECT a.job_id, a.pid, a.attempt, a.started, a.ended, b.attempt, b.started
            FROM spans AS a JOIN spans AS b
              ON a.job_id = b.job_id AND a.pid = b.pid AND a.attempt < b.attempt
             AND b.started < a.ended
            """,
        )
        assert overlap == [], f"two attempts of a job at once in one process: {overlap}"
        reran = query(dsn, "SELECT count(*) FROM (SELECT job_id FROM public.effects "
                           "GROUP BY 1 HAVING count(DISTINCT attempt) > 1) AS r")[0][0]  # fmt: skip
        rescued = query(dsn, "SELECT count(*) FROM pgqueue.jobs "
                             "WHERE errors::text LIKE '%%WorkerLost%%'")[0][0]  # fmt: skip
        assert "Traceback" not in output, output[output.index("Traceback") - 500 :][:3000]
        print(
            f"\nchaos (lifecycle): {total} jobs, 1 SIGSTOP of {2.5 * LEASE:g}s, "
            f"1 outage of {2 * LEASE:g}s (lease {LEASE:g}s), {DOOMED} cancels sent unheard, "
            f"1 SIGKILL, {BIG} results of 2 MB; {reran} jobs ran more than one attempt, "
            f"{rescued} rescued, 0 lost, 0 succeeded twice, 0 spurious cancels, 0 overlaps; "
            f"{took:.1f}s"
        )
