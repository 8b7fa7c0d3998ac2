"""`pgqueue migrate` as operators run it: several at once at deploy time, and a downgrade that
would delete jobs, which asks first."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest

from pgqueue import migrate
from tests.acceptance.conftest import ROOT, WorkerProcess, run_cli
from tests.acceptance.test_cli import assert_clean_error
from tests.server import scratch_database


@pytest.mark.timeout(240)
def test_four_concurrent_migrations_on_an_empty_database(server_dsn):
    head = migrate.head_revision()
    for round_ in range(2):
        with scratch_database(server_dsn, f"pgqueue_test_migrate_race_{round_}") as empty:
            procs = [
                subprocess.Popen(
                    [sys.executable, "-m", "pgqueue.cli", "migrate"],
                    cwd=ROOT,
                    env={**os.environ, "PGQUEUE_DSN": empty},
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for _ in range(4)
            ]
            results = [(p.wait(120), *p.communicate()) for p in procs]
            for code, out, err in results:
                assert code == 0, err
                assert f"revision {head}" in out
            with psycopg.connect(empty) as conn:
                assert conn.execute(
                    "SELECT version_num FROM pgqueue.alembic_version"
                ).fetchall() == [(head,)]
                conn.execute("INSERT INTO pgqueue.jobs (task) VALUES ('t')")


def test_downgrade_that_deletes_jobs_asks_for_yes(server_dsn):
    with scratch_database(server_dsn, "pgqueue_test_downgrade_yes") as scratch:
        env = {"PGQUEUE_DSN": scratch}
        assert run_cli("migrate", env=env).returncode == 0
        with psycopg.connect(scratch, autocommit=True) as conn:
            conn.execute("INSERT INTO pgqueue.jobs (task) SELECT 't' FROM generate_series(1, 1000)")
        refused = run_cli("migrate", "downgrade", "base", env=env)
        assert_clean_error(refused, "downgrade to base deletes the 1000 job(s) in pgqueue.jobs")
        assert "--yes" in refused.stderr
        with psycopg.connect(scratch, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM pgqueue.jobs").fetchone()[0] == 1000
        # A downgrade that keeps the jobs table needs no --yes.
        one_step = run_cli("migrate", "downgrade", "--", "-1", env=env)
        assert one_step.returncode == 0, one_step.stderr
        assert run_cli("migrate", env=env).returncode == 0
        done = run_cli("migrate", "downgrade", "base", "--yes", env=env)
        assert done.returncode == 0, done.stderr
        with psycopg.connect(scratch, autocommit=True) as conn:
            assert conn.execute("SELECT to_regclass('pgqueue.jobs')").fetchone()[0] is None
        # Nothing left: nothing to ask about.
        assert run_cli("migrate", "downgrade", "base", env=env).returncode == 0


def test_downgrade_under_a_live_worker_asks_for_yes(server_dsn):
    with scratch_database(server_dsn, "pgqueue_test_downgrade_live") as scratch:
        env = {"PGQUEUE_DSN": scratch}
        assert run_cli("migrate", env=env).returncode == 0
        with psycopg.connect(scratch, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO pgqueue.workers (id, host, pid, queues, concurrency, lease, "
                "started_at, heartbeat_at) VALUES (gen_random_uuid(), 'h', 1, '{}', 1, 30, "
                "now(), now())"
            )
        refused = run_cli("migrate", "downgrade", "--", "-1", env=env)
        assert_clean_error(refused, "1 worker(s) are running on this schema")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["migrate", "downgrade", "nosuchrev"], "No such revision or branch 'nosuchrev'"),
        (["migrate", "downgrade", ""], "REVISION must not be empty"),
        (["migrate", "downgrade", "x" * 200], "REVISION is longer"),
        (["migrate", "roles", "--dsn", "foo=bar"], 'invalid connection option "foo"'),
    ],
)
def test_migrate_bad_input(dsn, args, fragment):
    assert_clean_error(run_cli(*args), fragment)


def test_migrate_sql_takes_the_lock():
    sql = migrate.upgrade_sql()
    assert sql.index("pg_advisory_xact_lock") < sql.index("CREATE TABLE")


@pytest.mark.timeout(120)
def test_worker_whose_schema_is_dropped_exits_with_one_line(server_dsn, tmp_path):
    with scratch_database(server_dsn, "pgqueue_test_schema_dropped") as scratch:
        env = {"PGQUEUE_DSN": scratch}
        assert run_cli("migrate", env=env).returncode == 0
        with psycopg.connect(scratch, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE public.effects (job_id bigint, attempt int, pid int, "
                "at timestamptz DEFAULT clock_timestamp(), note text)"
            )
        worker = WorkerProcess(scratch, "--poll-interval", "0.5", log=tmp_path / "w.log")
        try:
            worker.wait_started()
            dropped = run_cli("migrate", "downgrade", "base", "--yes", env=env)
            assert dropped.returncode == 0, dropped.stderr
            code = worker.wait(60)
        finally:
            worker.stop()
        output = worker.output()
        assert code != 0, output
        assert "Traceback" not in output, output
        assert output.strip().splitlines()[-1].startswith("pgqueue: error:"), output
        assert "migrate" in output.strip().splitlines()[-1], output


def test_downgrade_with_sql_prints_it_and_changes_nothing(server_dsn):
    # `--sql` prints, whether it comes before the subcommand or after it (it once ran the
    # downgrade when given before).
    head = migrate.head_revision()
    previous = f"{int(head) - 1:04d}"
    with scratch_database(server_dsn, "pgqueue_test_downgrade_sql") as scratch:
        env = {"PGQUEUE_DSN": scratch}
        assert run_cli("migrate", env=env).returncode == 0
        with psycopg.connect(scratch, autocommit=True) as conn:
            conn.execute("INSERT INTO pgqueue.jobs (task) VALUES ('t')")
        for args in (("--sql", "downgrade", previous), ("downgrade", previous, "--sql")):
            printed = run_cli("migrate", *args, env=env)
            assert printed.returncode == 0, printed.stderr
            assert (
                f"SET version_num='{previous}' WHERE pgqueue.alembic_version.version_num = "
                f"'{head}'" in printed.stdout
            )
            with psycopg.connect(scratch, autocommit=True) as conn:
                assert conn.execute(
                    "SELECT version_num FROM pgqueue.alembic_version"
                ).fetchall() == [(head,)]
                assert conn.execute("SELECT count(*) FROM pgqueue.jobs").fetchone()[0] == 1


def test_upgrade_sql_starts_from_the_database_revision(server_dsn):
    # docs/how-to/upgrading.md: review `pgqueue migrate --sql`, then apply it. It printed
    # every migration from an empty database, whose first statement failed on the version
    # table already there.
    with scratch_database(server_dsn, "pgqueue_test_upgrade_sql") as scratch:
        migrate.upgrade(scratch, "0013")
        printed = run_cli("migrate", "--sql", env={"PGQUEUE_DSN": scratch})
        assert printed.returncode == 0, printed.stderr
        assert "Running upgrade 0013 -> 0014" in printed.stdout
        assert "Running upgrade  -> 0001" not in printed.stdout
        with psycopg.connect(scratch, autocommit=True) as conn:
            conn.execute(printed.stdout)  # type: ignore[arg-type]
            assert conn.execute("SELECT version_num FROM pgqueue.alembic_version").fetchall() == [
                (migrate.head_revision(),)
            ]
