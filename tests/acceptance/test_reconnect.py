"""A database that is down when the worker starts, or restarts under it: the worker waits,
reconnects and carries on, with one log line per event."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from tests.acceptance.chaos import own_server
from tests.acceptance.conftest import ROOT


def run_one_job(dsn: str, log_path: Path) -> None:
    """A job inserted by SQL runs (its worker's log is shown if it does not)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO pgqueue.jobs (task, args) VALUES ('add', '[2, 2]')")
        deadline = time.monotonic() + 30
        while conn.execute("SELECT state FROM pgqueue.jobs").fetchone()[0] != "succeeded":
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)


def test_worker_waits_for_database_then_works(tmp_path):
    with own_server() as server:
        server.stop()
        log_path = tmp_path / "worker.log"
        with open(log_path, "wb") as log:
            worker = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pgqueue.cli",
                    "work",
                    "tests.jobs:app",
                    "--poll-interval",
                    "1",
                ],
                cwd=ROOT,
                env={**os.environ, "PGQUEUE_DSN": server.dsn},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                # The server comes back once the worker has tried twice (one line each), not
                # after a fixed time: a busy machine may start the worker late.
                deadline = time.monotonic() + 60
                while log_path.read_text().count("retrying in") < 2:
                    assert worker.poll() is None, log_path.read_text()
                    assert time.monotonic() < deadline, log_path.read_text()
                    time.sleep(0.05)
                server.restart_stopped()
                run_one_job(server.dsn, log_path)
                worker.send_signal(signal.SIGTERM)
                assert worker.wait(20) == 0
            finally:
                if worker.poll() is None:
                    worker.kill()
        output = log_path.read_text()
        assert "Traceback" not in output
        retries = [line for line in output.splitlines() if "retrying in" in line]
        assert len(retries) >= 2
        assert all(line.startswith("20") for line in output.splitlines()), output


def test_the_dashboard_answers_503_soon_while_the_database_is_down(tmp_path):
    """Each request waited the pool's 30 s for a connection (past Prometheus' 10 s scrape
    timeout), and requests piled up behind one another after the database came back."""
    import urllib.error
    import urllib.request

    import pgqueue

    with own_server() as server:
        log_path = tmp_path / "serve.log"
        with open(log_path, "wb") as log:
            serve = subprocess.Popen(
                [sys.executable, "-m", "pgqueue.cli", "serve", "--port", "0"],
                cwd=ROOT,
                env={**os.environ, "PGQUEUE_DSN": server.dsn},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                deadline = time.monotonic() + 30
                while "dashboard on" not in log_path.read_text():
                    assert serve.poll() is None, log_path.read_text()
                    assert time.monotonic() < deadline, log_path.read_text()
                    time.sleep(0.05)
                address = log_path.read_text().split(" on ", 1)[1].split()[0]
                for path in ("api/stats", "healthz"):
                    with urllib.request.urlopen(address + path, timeout=10) as answer:
                        assert answer.status == 200
                server.stop()
                # The first request finds its connection broken; the next ones wait for a
                # new connection, which cannot be had.
                for path in ("api/stats", "api/stats", "healthz"):
                    started = time.monotonic()
                    try:
                        urllib.request.urlopen(address + path, timeout=60)
                        raise AssertionError("answered while the database is down")
                    except urllib.error.HTTPError as refused:
                        assert refused.code == 503
                    assert time.monotonic() - started < 9, "within a scrape's 10 s"
            finally:
                serve.send_signal(signal.SIGTERM)
                serve.wait(20)
    # The App's own setting, for producers that would rather fail fast too.
    assert pgqueue.App("postgresql://h/db", pool_timeout=2).pool_timeout == 2.0
    try:
        pgqueue.App("postgresql://h/db", pool_timeout=0)
        raise AssertionError("a pool_timeout of 0 was taken")
    except pgqueue.ConfigurationError:
        pass


def test_an_outage_is_told_once_with_a_line_per_claim_try(tmp_path):
    """Stopped under a running worker, the database's absence is told by the first part to
    meet it, then one line per claim try, then when it is back: not once per part per try
    (the pool, the heartbeat, the listener, maintenance each said so: ~25 lines in 10 s)."""
    with own_server() as server:
        log_path = tmp_path / "worker.log"
        with open(log_path, "wb") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "pgqueue.cli", "work", "tests.jobs:app",
                 "--heartbeat-interval", "0.5", "--poll-interval", "1"],
                cwd=ROOT, env={**os.environ, "PGQUEUE_DSN": server.dsn},
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
            try:
                deadline = time.monotonic() + 60
                while "started" not in log_path.read_text():
                    assert worker.poll() is None, log_path.read_text()
                    assert time.monotonic() < deadline, log_path.read_text()
                    time.sleep(0.05)
                server.stop()
                stopped_at = len(log_path.read_text().splitlines())
                # Long enough for every part to try several times (heartbeat and
                # maintenance every 0.5 s, the pool's reconnections, the listener's).
                time.sleep(8)
                server.restart_stopped()
                run_one_job(server.dsn, log_path)
                time.sleep(3)  # parts whose waits ran into the return have had their say
                worker.send_signal(signal.SIGTERM)
                assert worker.wait(20) == 0
            finally:
                if worker.poll() is None:
                    worker.kill()
        lines = log_path.read_text().splitlines()[stopped_at:]
        output = "\n".join(lines)
        assert "Traceback" not in output
        warnings = [line for line in lines if " WARNING " in line]
        tries = [line for line in warnings if "claiming again in" in line]
        assert tries, output
        # The claimer's tries, plus the news told by whichever parts met the outage first
        # (the listener's lost connection, and the first failure of another part).
        assert len(warnings) - len(tries) <= 3, output
        assert "psycopg.pool" not in output, output
        assert "heartbeat failed" not in output.split("database back after")[-1], output
        assert output.count("database back after") == 1, output


def test_an_app_rides_through_a_restart(tmp_path):
    """After a restart, every connection in an App's pool is dead: each failed one call
    although the database was back. And `app.wait` raised at the first failure instead of
    waiting the outage out within its timeout."""
    import threading

    import pgqueue

    with own_server() as server, pgqueue.App(server.dsn) as app:
        done = [app.enqueue("add", args=[i, i]) for i in range(8)]  # warms the pool
        threads = [threading.Thread(target=app.get_job, args=(i,)) for i in done]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        server.restart()
        for i in range(8):  # as many calls as the pool has connections, and more
            assert app.get_job(done[i]).state == "queued"
        app.enqueue("add", args=[1, 1])

        waiting = app.enqueue("add", args=[2, 3])
        answer: list[object] = []
        waiter = threading.Thread(target=lambda: answer.append(app.wait(waiting, timeout=60)))
        server.stop()
        waiter.start()
        time.sleep(2)  # waiting, while the database is away
        server.restart_stopped()
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(
                "UPDATE pgqueue.jobs SET state = 'succeeded', result = '5', attempts = 1, "
                "started_at = now(), finished_at = now() WHERE id = %s",
                (waiting,),
            )
        waiter.join(60)
        assert answer == [5]

        server.stop()
        started = time.monotonic()
        try:
            app.wait(waiting + 1000, timeout=2)
            raise AssertionError("waited without a database")
        except TimeoutError as exc:
            assert "database" in str(exc)
        assert time.monotonic() - started < 30
        server.restart_stopped()


def test_a_stop_while_the_database_is_down_stays_within_the_grace_and_a_margin(tmp_path):
    """SIGTERM with the database away: the last outcomes cannot be written, and waiting for
    them (as long as the grace, 10 s at least) then for the worker's row to go (the pool's
    5 s) took a 3 s grace to 15-18 s, past the margin an orchestrator gives before SIGKILL."""
    with own_server() as server:
        log_path = tmp_path / "worker.log"
        with open(log_path, "wb") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "pgqueue.cli", "work", "tests.jobs:app",
                 "--shutdown-grace", "2"],
                cwd=ROOT, env={**os.environ, "PGQUEUE_DSN": server.dsn},
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
            try:
                with psycopg.connect(server.dsn, autocommit=True) as conn:
                    conn.execute("INSERT INTO pgqueue.jobs (task, args) VALUES ('sleep', '[60]')")
                    deadline = time.monotonic() + 30
                    while conn.execute("SELECT state FROM pgqueue.jobs").fetchone()[0] != "running":
                        assert time.monotonic() < deadline, log_path.read_text()
                        time.sleep(0.05)
                server.stop()
                time.sleep(1)
                stopped = time.monotonic()
                worker.send_signal(signal.SIGTERM)
                assert worker.wait(60) == 0, log_path.read_text()
                took = time.monotonic() - stopped
            finally:
                if worker.poll() is None:
                    worker.kill()
        # The grace (2 s), the release, a short try at the outcomes, the thread's 2 s.
        assert took < 2 + 8, (took, log_path.read_text())
        assert "Traceback" not in log_path.read_text()
