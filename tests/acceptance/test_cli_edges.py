"""The edges a newcomer meets first: where the CLI looks for a database, what `stats` and
/metrics call things, what the queue commands say they did, `pgqueue work MODULE`, and the
address `serve` prints."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from pgqueue.web import create_app
from tests import jobs
from tests.acceptance.conftest import ROOT, run_cli
from tests.acceptance.test_cli import assert_clean_error

LIBPQ = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE", "PGPASSWORD")


def cli(*args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    """`pgqueue ARGS` with no database named anywhere but in `env`."""
    base = {k: v for k, v in os.environ.items() if k not in ("PGQUEUE_DSN", "DATABASE_URL", *LIBPQ)}
    return subprocess.run(
        [sys.executable, "-m", "pgqueue.cli", *args],
        cwd=cwd,
        env={**base, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "args", [["stats"], ["migrate"], ["queues", "list"], ["work", "tests.jobs:app"]]
)
def test_no_database_named_is_one_line_saying_where_it_looked(args):
    result = cli(*args)
    assert_clean_error(result, "no database given")
    assert "--dsn, PGQUEUE_DSN and DATABASE_URL are unset" in result.stderr


def test_libpq_variables_still_count():
    result = cli("stats", PGHOST="127.0.0.1", PGPORT="1", PGDATABASE="shop")
    assert_clean_error(result, "database unavailable")


def test_stats_one_name_per_field_and_no_negative_latency(dsn, db):
    # A job that ran, then snoozed (Retry): queued again, run_at later than its last start.
    db.execute(
        "INSERT INTO pgqueue.jobs (task, state, attempts, started_at, run_at)"
        " VALUES ('add', 'queued', 1, now() - interval '2 s', now() + interval '60 s')"
    )
    # A job that waited half a second before it started.
    db.execute(
        "INSERT INTO pgqueue.jobs (task, state, attempts, run_at, started_at, finished_at)"
        " VALUES ('add', 'succeeded', 1, now() - interval '1.5 s', now() - interval '1 s',"
        " now())"
    )
    result = run_cli("stats", "--json")
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    web = create_app(jobs.app, token=None, allowed_hosts=("testserver",))
    api = TestClient(web).get("/api/stats").json()
    assert set(api[0]) == set(row)
    assert {"throughput", "oldest_waiting_age", "scheduled"} <= set(row)
    assert not {"jobs_per_s", "oldest_queued_age"} & set(row)
    assert row["scheduled"] == 1 and row["queued"] == 0 and row["succeeded"] == 1
    assert row["latency_p50"] == pytest.approx(0.5, abs=0.01)
    assert row["latency_p95"] == pytest.approx(0.5, abs=0.01)
    assert row["throughput"] == round(1 / 300, 2)


def test_queue_commands_say_what_they_did(dsn):
    limit = run_cli("queues", "limit", "emails", "--concurrency", "5")
    assert limit.stdout.strip() == "queue emails: limits set (concurrency 5)", limit.stderr
    cleared = run_cli("queues", "limit", "emails", "--clear")
    assert cleared.stdout.strip() == "queue emails: limits cleared", cleared.stderr
    kept = run_cli("queues", "retention", "emails", "--succeeded", "0", "--dead", "30d")
    assert kept.stdout.strip() == (
        "queue emails: succeeded jobs deleted at completion; dead jobs kept 30d"
    ), kept.stderr
    default = run_cli("queues", "retention", "emails", "--default")
    assert "workers' --retain-succeeded" in default.stdout, default.stderr
    helped = run_cli("queues", "--help")
    for word in ("pause", "limits", "kept"):
        assert word in helped.stdout


TASKS = """
import pgqueue

{names} = pgqueue.App()


@{first}.task
def ping() -> str:
    return "pong"
"""


def test_work_module_without_app_finds_the_one_app(dsn, tmp_path):
    (tmp_path / "one_app.py").write_text(TASKS.format(names="shop", first="shop"))
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pgqueue.cli", "work", "one_app"],
            cwd=tmp_path,
            env={**os.environ, "PGQUEUE_DSN": dsn, "PYTHONPATH": str(ROOT)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while "started" not in log.read_text():
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, log.read_text()


@pytest.mark.parametrize(
    ("source", "spec", "fragment"),
    [
        ("VALUE = 1\n", "no_app", "module 'no_app' holds no pgqueue.App: name one as no_app:"),
        (
            TASKS.format(names="b = a", first="a"),
            "two_apps",
            "module 'two_apps' holds 2 pgqueue.Apps (a, b)",
        ),
        (TASKS.format(names="app", first="app"), "one_app:", "invalid app path 'one_app:'"),
    ],
)
def test_work_module_without_one_app_is_one_line(dsn, tmp_path, source, spec, fragment):
    (tmp_path / f"{spec.rstrip(':')}.py").write_text(source)
    result = cli("work", spec, cwd=tmp_path, PGQUEUE_DSN=dsn)
    assert_clean_error(result, fragment)


@pytest.mark.parametrize("where", [[], ["--host", "0.0.0.0"]], ids=["default", "every-address"])
def test_serve_prints_the_address_with_the_token(dsn, tmp_path, where):
    # Listening on every address, the link is still one this machine's browser may open
    # (http://0.0.0.0:P/ was printed, and its Host was refused).
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pgqueue.cli", "serve", "--port", "0", *where],
            cwd=ROOT,
            # As a secret mounted from a file: with a newline at its end (which locked
            # every client out: they send the token without it).
            env={**os.environ, "PGQUEUE_DSN": dsn, "PGQUEUE_API_TOKEN": "a+b/c\n"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while "dashboard on" not in log.read_text():
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            line = next(s for s in log.read_text().splitlines() if "dashboard on" in s)
            address = line.split(" on ", 1)[1].split("#", 1)[0]
            request = urllib.request.Request(
                address + "api/stats", headers={"Authorization": "Bearer a+b/c"}
            )
            with urllib.request.urlopen(request, timeout=10) as answer:
                assert answer.status == 200
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
    assert line.startswith("pgqueue dashboard on http://127.0.0.1:")
    assert line.endswith("/#token=a%2Bb%2Fc")
    assert ":0/" not in line  # the port picked, not 0


SPLIT_APP = """
import os

import pgqueue

app = pgqueue.App(os.environ["APP_DSN"])  # the DSN written in the code


@app.task(name="parent")
def parent() -> int:
    return child.enqueue()


@app.task(name="child")
def child() -> None:
    pass
"""


def test_the_database_given_on_the_command_line_is_the_one_used(server_dsn, tmp_path):
    """--dsn beats the environment for `migrate` subcommands (it acted on the environment's
    database: a downgrade of the wrong one), a SQLAlchemy URL works in the CLI as in the
    App, and a worker's handlers enqueue into the database the worker serves."""
    import psycopg

    import pgqueue
    from tests.server import scratch_database

    def version(target: str) -> str:
        with psycopg.connect(target) as conn:
            row = conn.execute("SELECT version_num FROM pgqueue.alembic_version").fetchone()
        assert row is not None
        return str(row[0])

    with (
        scratch_database(server_dsn, "pgqueue_test_dsn_a") as a,
        scratch_database(server_dsn, "pgqueue_test_dsn_b") as b,
    ):
        for target in (a, b):
            assert cli("migrate", "--dsn", target).returncode == 0
        head = version(a)
        down = cli("migrate", "--dsn", b, "downgrade", "0020", "--yes", PGQUEUE_DSN=a)
        assert down.returncode == 0, down.stderr
        assert (version(a), version(b)) == (head, "0020")
        assert cli("migrate", "--dsn", b, PGQUEUE_DSN=a).returncode == 0
        assert version(b) == head
        info = psycopg.conninfo.conninfo_to_dict(b)
        host = quote(str(info.get("host", "")), safe="")  # a socket directory too
        url = (
            f"postgresql+psycopg://{info.get('user', '')}@{host}"
            f":{info.get('port', 5432)}/{info['dbname']}"
        )
        stats = cli("stats", "--json", DATABASE_URL=url)
        assert stats.returncode == 0, stats.stderr
        (tmp_path / "split_app.py").write_text(SPLIT_APP)
        env = {"APP_DSN": a, "PYTHONPATH": f"{tmp_path}:{ROOT}"}
        with pgqueue.App(b) as served:
            parent = served.enqueue("parent")
            log = tmp_path / "worker.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "pgqueue.cli", "work", "split_app:app", "--dsn", b],
                    cwd=tmp_path,
                    env={**os.environ, **env},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
                try:
                    child = served.wait(parent, timeout=30)
                    assert served.get_job(child) is not None, "the child went to the App's own"
                    assert served.wait(child, timeout=30) is None
                finally:
                    proc.send_signal(signal.SIGTERM)
                    assert proc.wait(30) == 0, log.read_text()


def test_tables_piped_keep_every_value_whole(dsn, db):
    """Piped to grep or a file, a table is as wide as its widest values: a task name cut
    short ("reports.he…") could not be found or copied."""
    name = "reports.hourly_revenue_by_region_and_currency_for_the_finance_team"
    db.execute(
        "INSERT INTO pgqueue.jobs (task, queue) VALUES (%s, 'a_rather_long_queue_name')", (name,)
    )
    listed = run_cli("jobs", "list")
    assert listed.returncode == 0, listed.stderr
    assert name in listed.stdout and "…" not in listed.stdout
    stats = run_cli("stats")
    assert "a_rather_long_queue_name" in stats.stdout and "…" not in stats.stdout
