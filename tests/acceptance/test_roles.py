"""The group roles of `pgqueue migrate roles`: each can do its job and nothing more, and a role
with no grants can neither read a job nor make a worker do anything (notifications are hints
that a worker checks against the table)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import errors

import pgqueue
from pgqueue.store.copyin import COPY_MIN_JOBS
from tests.acceptance.conftest import WorkerProcess, run_cli
from tests.server import cluster_lock, scratch_database

SUFFIX = uuid.uuid4().hex[:8]
LOGINS = {
    "producer": f"pgq_producer_{SUFFIX}",
    "worker": f"pgq_worker_{SUFFIX}",
    "observer": f"pgq_observer_{SUFFIX}",
    "nobody": f"pgq_nobody_{SUFFIX}",
    "insert_only": f"pgq_insert_only_{SUFFIX}",
}


def as_role(dsn: str, role: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    info["user"] = role
    info.pop("password", None)
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items()})


@pytest.fixture(scope="module")
def roles_db(server_dsn: str) -> Iterator[tuple[str, dict[str, str]]]:
    """A migrated database with the group roles, and a login role in each (and one in none)."""
    with scratch_database(server_dsn, f"pgqueue_test_roles_{SUFFIX}") as dsn:
        assert run_cli("migrate", env={"PGQUEUE_DSN": dsn}).returncode == 0
        with cluster_lock(server_dsn):  # the group roles are the server's
            granted = run_cli("migrate", "roles", env={"PGQUEUE_DSN": dsn})
        assert granted.returncode == 0, granted.stderr
        with psycopg.connect(dsn, autocommit=True) as conn:
            for kind, login in LOGINS.items():
                conn.execute(f"CREATE ROLE {login} LOGIN")
                if kind == "insert_only":  # what plain SQL producers need, and no more
                    conn.execute(f"GRANT USAGE ON SCHEMA pgqueue TO {login}")
                    conn.execute(f"GRANT INSERT ON pgqueue.jobs TO {login}")
                elif kind != "nobody":
                    conn.execute(f"GRANT pgqueue_{kind} TO {login}")
            # The tests' tasks write here: the application's own table, its own grant.
            conn.execute(
                "CREATE TABLE public.effects (job_id bigint, attempt int, pid int, "
                "at timestamptz DEFAULT clock_timestamp(), note text)"
            )
            conn.execute(f"GRANT INSERT ON public.effects TO {LOGINS['worker']}")
        try:
            yield dsn, {kind: as_role(dsn, login) for kind, login in LOGINS.items()}
        finally:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE usename = ANY(%s)",
                    (list(LOGINS.values()),),
                )
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        for login in LOGINS.values():
            conn.execute(f"DROP ROLE IF EXISTS {login}")


def denied(dsn: str, sql: str) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        try:
            conn.execute(sql)  # type: ignore[arg-type]
        except errors.InsufficientPrivilege:
            return True
    return False


def test_roles_sql_is_printable_and_idempotent(roles_db):
    dsn, _ = roles_db
    printed = run_cli("migrate", "roles", "--sql", env={"PGQUEUE_DSN": dsn})
    assert "ON pgqueue.jobs TO pgqueue_producer" in printed.stdout
    assert run_cli("migrate", "roles", env={"PGQUEUE_DSN": dsn}).returncode == 0


def test_producer_inserts_and_reads_nothing_else(roles_db):
    _, logins = roles_db
    producer = logins["producer"]
    with psycopg.connect(producer, autocommit=True) as conn:
        conn.execute("INSERT INTO pgqueue.jobs (task, args) VALUES ('add', '[1, 2]')")
    with pgqueue.App(producer) as app:
        first = app.enqueue("add", args=[3, 4], unique_key=f"k-{SUFFIX}")
        assert app.enqueue("add", args=[3, 4], unique_key=f"k-{SUFFIX}") == first
        assert len(app.enqueue_many([{"task": "add", "args": [i, i]} for i in range(3)])) == 3
        # A large batch goes in by COPY, with ids drawn from the sequence beforehand.
        big = [{"task": "add", "args": [i, i], "delay": i % 2} for i in range(COPY_MIN_JOBS)]
        assert len(app.enqueue_many(big)) == COPY_MIN_JOBS
    for sql in (
        "SELECT args FROM pgqueue.jobs",
        "SELECT result, last_error, errors, kwargs FROM pgqueue.jobs",
        "UPDATE pgqueue.jobs SET state = 'dead'",
        # A new job only: not one already running, finished or with attempts spent.
        "INSERT INTO pgqueue.jobs (task, state) VALUES ('add', 'succeeded')",
        "INSERT INTO pgqueue.jobs (task, worker_id) VALUES ('add', gen_random_uuid())",
        "INSERT INTO pgqueue.jobs (task, attempts) VALUES ('add', 2)",
        "INSERT INTO pgqueue.jobs (task, result) VALUES ('add', '1')",
        # Neither a job's unique key window nor a row lock (which an UPDATE right allows).
        "UPDATE pgqueue.jobs SET unique_until = NULL",
        "SELECT id FROM pgqueue.jobs FOR UPDATE",
        "SELECT id FROM pgqueue.jobs FOR KEY SHARE",
        "SELECT pgqueue.claim_limited(gen_random_uuid(), NULL, 1)",
        "DELETE FROM pgqueue.jobs",
        "TRUNCATE pgqueue.jobs",
        "SELECT * FROM pgqueue.workers",
        "SELECT * FROM pgqueue.queues",
        "INSERT INTO pgqueue.queues (name, paused) VALUES ('q', true)",
        "CREATE TABLE pgqueue.mine (x int)",
        "DROP TABLE pgqueue.jobs",
    ):
        assert denied(producer, sql), sql


def test_producer_frees_a_lapsed_unique_key_without_an_update_right(roles_db):
    dsn, logins = roles_db
    key = f"lapsed-{SUFFIX}"
    with pgqueue.App(logins["producer"]) as app:
        first = app.enqueue("add", args=[1, 1], unique_key=key, unique_for=60)
        with psycopg.connect(dsn, autocommit=True) as conn:  # as if it finished long ago
            conn.execute(
                "UPDATE pgqueue.jobs SET state = 'succeeded', finished_at = now(), "
                "unique_until = now() - interval '1 second' WHERE id = %s",
                (first,),
            )
        second = app.enqueue("add", args=[1, 1], unique_key=key, unique_for=60)
    assert second != first


def test_producer_enqueues_children_of_running_and_finished_parents(roles_db):
    # Settling a child whose parents finished needed an UPDATE right: refused, and the
    # message said to grant the role it had.
    dsn, logins = roles_db
    with pgqueue.App(logins["producer"]) as app:
        done, failed, pending = (app.enqueue("add", args=[i, i]) for i in range(3))
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "UPDATE pgqueue.jobs SET state = CASE id WHEN %s THEN 'succeeded' ELSE 'dead'"
                " END, finished_at = now() WHERE id IN (%s, %s)",
                (done, done, failed),
            )
        free = app.enqueue("add", args=[1, 1], depends_on=[done])
        waits = app.enqueue("add", args=[2, 2], depends_on=[done, pending])
        doomed, *_ = app.enqueue_many(
            [{"task": "add", "args": [3, 3], "depends_on": [failed]}, {"task": "add"}]
        )
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = dict(
            conn.execute(
                "SELECT id, state || CASE WHEN state = 'queued'"
                " AND run_at > now() + interval '1 year' THEN ' waiting' ELSE '' END"
                " FROM pgqueue.jobs WHERE id = ANY(%s)",
                ([free, waits, doomed],),
            ).fetchall()
        )
    assert rows == {free: "queued", waits: "queued waiting", doomed: "cancelled"}


def test_observer_reads_everything_and_changes_nothing(roles_db):
    _, logins = roles_db
    observer = logins["observer"]
    with psycopg.connect(observer, autocommit=True) as conn:
        for table in ("jobs", "workers", "queues", "schedules", "alembic_version"):
            conn.execute(f"SELECT * FROM pgqueue.{table} LIMIT 1")
    with pgqueue.App(observer) as app:
        assert isinstance(app.store.queue_stats(), list)
    result = run_cli("stats", "--json", env={"PGQUEUE_DSN": observer})
    assert result.returncode == 0, result.stderr
    for sql in (
        "INSERT INTO pgqueue.jobs (task) VALUES ('add')",
        "UPDATE pgqueue.jobs SET state = 'dead'",
        "DELETE FROM pgqueue.jobs",
        "UPDATE pgqueue.queues SET paused = true",
        "CREATE TABLE pgqueue.mine (x int)",
    ):
        assert denied(observer, sql), sql


def test_nobody_can_do_nothing(roles_db):
    dsn, logins = roles_db
    nobody = logins["nobody"]
    for sql in (
        "SELECT id FROM pgqueue.jobs",
        "SELECT count(*) FROM pgqueue.jobs",
        "INSERT INTO pgqueue.jobs (task) VALUES ('add')",
        "UPDATE pgqueue.jobs SET state = 'queued'",
        "SELECT * FROM pgqueue.workers",
        "SELECT * FROM pgqueue.queues",
    ):
        assert denied(nobody, sql), sql
    with psycopg.connect(dsn, autocommit=True) as conn:
        functions = conn.execute(
            "SELECT p.oid::regprocedure::text, has_function_privilege(%s, p.oid, 'EXECUTE') "
            "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'pgqueue'",
            (LOGINS["nobody"],),
        ).fetchall()
        definers = conn.execute(
            "SELECT p.oid::regprocedure::text FROM pg_proc p "
            "JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'pgqueue' AND p.prosecdef"
        ).fetchall()
    assert not [name for name, can in functions if can], functions
    # Only the task-defaults, statistics and wake-up triggers run as their owner (so
    # producers need nothing but INSERT); they check the table they fire on and nobody else
    # may execute them (above). So do the release of lapsed unique keys and the settling of
    # children whose parents finished, which only roles granted them may run (producers and
    # workers), and which do that one thing each.
    assert sorted(definers) == [
        ("pgqueue.jobs_count_changes()",),
        ("pgqueue.jobs_fill_defaults()",),
        ("pgqueue.jobs_notify_insert()",),
        ("pgqueue.jobs_reset_stats()",),
        ("pgqueue.release_unique_keys(text[])",),
        ("pgqueue.settle_children(bigint[])",),
    ], definers


@pytest.mark.timeout(120)
def test_worker_role_runs_jobs_and_nobody_can_steer_it(roles_db, tmp_path):
    dsn, logins = roles_db
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE pgqueue.jobs")
        running = conn.execute(
            "INSERT INTO pgqueue.jobs (task, args) VALUES ('sleep', '[1.5]') RETURNING id"
        ).fetchone()[0]
        later = conn.execute(
            "INSERT INTO pgqueue.jobs (task, args, run_at) "
            "VALUES ('add', '[1, 2]', now() + interval '1 hour') RETURNING id"
        ).fetchone()[0]
    worker = WorkerProcess(logins["worker"], "--poll-interval", "0.5", log=tmp_path / "w.log")
    try:
        worker.wait_started()
        deadline = time.monotonic() + 20
        with psycopg.connect(dsn, autocommit=True) as conn:
            while (
                conn.execute("SELECT state FROM pgqueue.jobs WHERE id = %s", (running,)).fetchone()[
                    0
                ]
                != "running"
            ):
                assert time.monotonic() < deadline, worker.output()
                time.sleep(0.05)
        # Someone with no grants shouts on every channel, with job ids and fake job rows.
        with psycopg.connect(logins["nobody"], autocommit=True) as conn:
            for channel in ("pgqueue_cancel", "pgqueue_jobs", "pgqueue_queues", "pgqueue_push"):
                for payload in (
                    str(running),
                    str(later),
                    "default",
                    "*",
                    f'{{"id": {later}, "task": "add", "args": [1, 2], "cancel": {running}}}',
                ):
                    conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))
        deadline = time.monotonic() + 30
        with psycopg.connect(dsn, autocommit=True) as conn:
            while (
                state := conn.execute(
                    "SELECT state FROM pgqueue.jobs WHERE id = %s", (running,)
                ).fetchone()[0]
            ) in ("queued", "running"):
                assert time.monotonic() < deadline, worker.output()
                time.sleep(0.1)
            assert state == "succeeded", worker.output()
            assert conn.execute(
                "SELECT state, attempts FROM pgqueue.jobs WHERE id = %s", (later,)
            ).fetchone() == ("queued", 0)
            assert conn.execute("SELECT count(*) FROM pgqueue.queues").fetchone()[0] == 0
        assert worker.proc.poll() is None, "the worker is still up"
    finally:
        worker.stop()
    assert "Traceback" not in worker.output()


def test_a_role_that_may_only_insert_enqueues(roles_db):
    # DESIGN.md: producers need INSERT on pgqueue.jobs and nothing more. The ids come back
    # from the insert trigger in a notice to the inserting session (migration 0025), even
    # where that session hides notices.
    dsn, logins = roles_db
    insert_only = logins["insert_only"]
    with psycopg.connect(dsn, autocommit=True) as conn:
        before = conn.execute("SELECT max(id) FROM pgqueue.jobs").fetchone()[0] or 0
    with psycopg.connect(insert_only, autocommit=True) as conn:
        heard: list[str] = []
        conn.add_notice_handler(lambda diag: heard.append(diag.message_primary))
        conn.execute("INSERT INTO pgqueue.jobs (task, args) VALUES ('add', '[1, 2]')")
        assert heard == [], "a plain INSERT (psql, other languages) is told nothing"
    ids: list[int] = []
    with pgqueue.App(insert_only) as app:
        ids.append(app.enqueue("add", args=[1, 2]))
        ids.append(app.enqueue("add", args=[1, 2], delay=60, priority=5))
        bulk = app.enqueue_many([{"task": "add", "args": [i, i]} for i in range(COPY_MIN_JOBS)])
        assert bulk == sorted(bulk) and len(bulk) == COPY_MIN_JOBS
        ids += bulk
        with psycopg.connect(insert_only) as conn:  # in the caller's transaction
            conn.execute("SET client_min_messages = error")
            rolled_back = app.enqueue("add", args=[7, 7], conn=conn)
            conn.execute("INSERT INTO pgqueue.jobs (task) VALUES ('add')")  # reports nothing
            conn.rollback()
            ids.append(app.enqueue("add", args=[8, 8], conn=conn))
            conn.commit()

        async def from_asyncio() -> list[int]:
            one = await app.enqueue_async("add", args=[3, 3])
            return [one, *await app.enqueue_many_async([{"task": "add", "args": [4, 4]}] * 3)]

        ids += asyncio.run(from_asyncio())
        # A unique key or dependencies mean reading the table: refused, with what to grant.
        with pytest.raises(pgqueue.PermissionDenied, match="pgqueue_producer"):
            app.enqueue("add", args=[1, 2], unique_key="once")
        with pytest.raises(pgqueue.PermissionDenied, match="pgqueue_producer"):
            app.enqueue("add", args=[1, 2], depends_on=[ids[0]])
    result = run_cli("enqueue", "add", "--args", "[5, 5]", env={"PGQUEUE_DSN": insert_only})
    assert result.returncode == 0, result.stderr
    ids.append(int(result.stdout))
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT id, args FROM pgqueue.jobs WHERE id > %s ORDER BY id", (before,)
        ).fetchall()
    stored = {job_id: args for job_id, args in rows}
    assert rolled_back not in stored
    assert all(job_id in stored for job_id in ids), "every id returned is the job's own"
    assert stored[ids[0]] == [1, 2] and stored[ids[-1]] == [5, 5]
    assert [stored[i] for i in bulk] == [[i, i] for i in range(COPY_MIN_JOBS)]
    assert len(stored) == len(ids) + 1  # and the plain INSERT; nothing of what was refused
    # Granted more meanwhile: the rights are asked again rather than refused from memory.
    login = LOGINS["insert_only"]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"GRANT pgqueue_producer TO {login}")
    try:
        with pgqueue.App(insert_only) as app:
            first = app.enqueue("add", args=[1, 2], unique_key="granted")
            assert app.enqueue("add", args=[1, 2], unique_key="granted") == first
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"REVOKE pgqueue_producer FROM {login}")
