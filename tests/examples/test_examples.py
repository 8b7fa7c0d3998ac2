"""Every example runs: the FastAPI shop's own test suite, the psycopg script and the
--processes example against real worker processes, the workflow with drain()."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from pgqueue.testing import drain, use_database

ROOT = Path(__file__).absolute().parents[2]
EXAMPLES = ROOT / "examples"

pytestmark = pytest.mark.timeout(180)


def env(dsn: str, **extra: str) -> dict[str, str]:
    values = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PGQUEUE_DSN")}
    return {**values, "PGQUEUE_DSN": dsn, **extra}


@contextmanager
def worker(dsn: str, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """`pgqueue work ARGS` from the repository root; stopped with SIGTERM, must exit 0."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pgqueue.cli", "work", *args, "--shutdown-grace", "10"],
        cwd=ROOT,
        env=env(dsn),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, out.decode()


def test_fastapi_shop_test_suite(pgqueue_server):
    """The shop's tests use pgqueue.testing's plugin, as a user's project would."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=EXAMPLES / "fastapi_shop",
        env=env("", PGQUEUE_TEST_DSN=pgqueue_server),
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def test_psycopg_script(pgqueue_dsn):
    with worker(pgqueue_dsn, "examples.psycopg_script:app"):
        result = subprocess.run(
            [sys.executable, "-m", "examples.psycopg_script", "ada@example.com", "bo@example.com"],
            cwd=ROOT,
            env=env(pgqueue_dsn),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("rolled back: job ") and lines[0].endswith("exists: False")
    assert lines[1:] == [
        "welcome mail for user 2 sent to ada@example.com",
        "welcome mail for user 3 sent to bo@example.com",
    ]


def test_workflow_fans_out_and_in(pgqueue_dsn):
    from examples import workflow

    with use_database(workflow.app, pgqueue_dsn) as app:
        lines, total = workflow.checkout({"apple": 3, "pear": 2, "plum": 5})
        ran = drain(app)
        assert [j.id for j in ran][-1] == total  # the total runs after every line
        assert app.wait(total, timeout=0) == 280

        lines, total = workflow.checkout({"apple": 1, "durian": 1})
        drain(app)
        assert [app.get_job(i).state for i in lines] == ["succeeded", "dead"]
        assert app.get_job(total).state == "cancelled"  # never ran on partial data


def test_cpu_bound_jobs_on_two_processes(pgqueue_dsn):
    from examples import cpu_bound

    with (
        worker(pgqueue_dsn, "examples.cpu_bound:app", "--processes", "2", "--concurrency", "1"),
        psycopg.connect(pgqueue_dsn, autocommit=True) as conn,
        use_database(cpu_bound.app, pgqueue_dsn) as app,
    ):
        deadline = time.monotonic() + 60
        while conn.execute("SELECT count(*) FROM pgqueue.workers").fetchone()[0] < 2:
            assert time.monotonic() < deadline, "two worker processes did not start"
            time.sleep(0.1)
        ids = [cpu_bound.count_primes.enqueue(60_000) for _ in range(4)]
        results = [app.wait(job_id, timeout=120) for job_id in ids]
    assert {r["primes"] for r in results} == {6057}
    assert len({r["pid"] for r in results}) == 2  # both processes crunched
