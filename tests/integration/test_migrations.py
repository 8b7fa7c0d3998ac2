"""Migrations go up, down to nothing, and up again; --sql prints the DDL offline."""

from __future__ import annotations

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
