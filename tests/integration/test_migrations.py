"""Migrations go up, down to nothing, and up again; --sql prints the DDL offline."""

from __future__ import annotations

import time

import psycopg

from pgqueue import migrate
from tests.acceptance.conftest import run_cli
from tests.server import scratch_database


def pgqueue_tables(conn) -> set[str]:
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'pgqueue'"
    ).fetchall()
    return {r[0] for r in rows}


def test_up_down_up(server_dsn):
    with (
        scratch_database(server_dsn, "pgqueue_test_migrations") as dsn,
        psycopg.connect(dsn, autocommit=True) as conn,
    ):
        conn.execute("CREATE TABLE public.alembic_version (version_num text)")
        conn.execute("INSERT INTO public.alembic_version VALUES ('the_apps_own')")
        up = run_cli("migrate", "--dsn", dsn)
        assert up.returncode == 0, up.stderr
        assert {"jobs", "workers", "queues", "alembic_version"} <= pgqueue_tables(conn)
        down = run_cli("migrate", "downgrade", "base", "--dsn", dsn)
        assert down.returncode == 0, down.stderr
        assert pgqueue_tables(conn) <= {"alembic_version"}
        functions = conn.execute(
            "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'pgqueue'"
        ).fetchone()[0]
        assert functions == 0
        migrate.upgrade(dsn)
        assert {"jobs", "workers", "queues"} <= pgqueue_tables(conn)
        # The application's own alembic history is untouched.
        assert (
            conn.execute("SELECT version_num FROM public.alembic_version").fetchone()[0]
            == "the_apps_own"
        )
        conn.execute("INSERT INTO pgqueue.jobs (task) VALUES ('x')")


def test_sql_is_printed_offline():
    result = run_cli("migrate", "--sql", env={"PGQUEUE_DSN": "postgresql://nowhere:1/x"})
    assert result.returncode == 0, result.stderr
    assert "CREATE TABLE pgqueue.jobs" in result.stdout
    assert "CREATE TRIGGER jobs_notify_insert" in result.stdout


def test_a_worker_on_the_oldest_schema_it_accepts_records_every_outcome(server_dsn):
    """NEEDS_REVISION is a promise: a worker starts on that schema only if everything it
    does works there. (It said 0015 while outcomes wrote 0027's cancel_reason: on 0026 a
    worker started, claimed, and left every job `running` for as long as it lived.)"""
    import pgqueue
    from pgqueue.worker import NEEDS_REVISION
    from tests.conftest import running_worker
    from tests.waiting import wait_for

    with scratch_database(server_dsn, "pgqueue_test_oldest_schema") as dsn:
        migrate.upgrade(dsn)
        migrate.downgrade(dsn, NEEDS_REVISION)
        with pgqueue.App(dsn) as app, running_worker(dsn, poll_interval=0.2):
            expected = {
                app.enqueue("add", args=[1, 2]): "succeeded",
                app.enqueue("flaky", args=[1]): "succeeded",  # after one failure
                app.enqueue("snooze", args=[1]): "succeeded",
                app.enqueue("always_fails"): "dead",
                app.enqueue("discard"): "dead",
            }
            running = app.enqueue("async_sleep", args=[60])
            wait_for(lambda: app.get_job(running).state == "running")
            assert app.cancel(running)
            expected[running] = "cancelled"

            def states() -> dict[int, str]:
                return {job_id: app.get_job(job_id).state for job_id in expected}

            wait_for(lambda: states() == expected, timeout=30)


def test_a_schema_taken_back_under_a_running_worker_loses_no_outcome(server_dsn):
    """A downgrade (or a restore) under a running worker: its outcomes failed on a missing
    column, were dropped as if refused, and the jobs stayed `running` for as long as the
    worker lived while it claimed the rest of the queue. They are kept until the schema is
    back, and claims stop at the backlog's bound meanwhile."""
    import pgqueue
    from tests.conftest import running_worker
    from tests.waiting import wait_for

    with scratch_database(server_dsn, "pgqueue_test_schema_back") as dsn:
        migrate.upgrade(dsn)
        with pgqueue.App(dsn) as app, running_worker(dsn, poll_interval=0.2, concurrency=2):
            assert app.wait(app.enqueue("add", args=[1, 2]), timeout=10) == 3
            migrate.downgrade(dsn, "0026")  # outcomes write 0027's cancel_reason
            ids = [app.enqueue("add", args=[n, n]) for n in range(20)]
            with psycopg.connect(dsn) as conn:
                # The worker stops claiming once four times its concurrency wait.
                wait_for(lambda: conn.execute(
                    "SELECT count(*) FROM pgqueue.jobs WHERE state = 'running'"
                ).fetchone()[0] == 8, timeout=15)  # fmt: skip
                time.sleep(1.0)
                running = "SELECT count(*) FROM pgqueue.jobs WHERE state = 'running'"
                assert conn.execute(running).fetchone()[0] == 8
            migrate.upgrade(dsn)
            wait_for(lambda: all(app.get_job(i).state == "succeeded" for i in ids), timeout=30)
            assert [app.get_job(i).attempts for i in ids] == [1] * 20


def test_a_worker_refuses_a_schema_its_statements_do_not_fit(server_dsn):
    """The revision says 0028 but a column the outcomes write is missing (a build whose
    migration differed, a hand edit): the worker started, ran every job, and recorded none.
    It refuses to start, naming what is missing."""
    with scratch_database(server_dsn, "pgqueue_test_schema_misfit") as dsn:
        migrate.upgrade(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("ALTER TABLE pgqueue.jobs DROP COLUMN cancel_reason")
        result = run_cli("work", "tests.jobs:app", env={"PGQUEUE_DSN": dsn}, timeout=60)
        assert result.returncode != 0
        assert "Traceback" not in result.stderr
        assert "cancel_reason" in result.stderr and "pgqueue migrate" in result.stderr
