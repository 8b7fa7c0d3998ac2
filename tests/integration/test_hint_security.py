"""Nobody gets in through notifications or functions: a role that can LISTEN/NOTIFY but has
no grants cannot read a job or make a worker do anything, and a producer cannot misuse the
schema's functions."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from tests import jobs
from tests.waiting import wait_for


@pytest.fixture
def make_role(dsn: str) -> Iterator[object]:
    """Create a login role for this test (dropped afterwards); returns its DSN."""
    made: list[str] = []

    def make(*grants: str) -> str:
        name = f"pgq_role_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
            for grant in grants:
                conn.execute(sql.SQL(grant).format(role=sql.Identifier(name)))  # type: ignore[arg-type]
        made.append(name)
        return psycopg.conninfo.make_conninfo(dsn, user=name)

    yield make
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name in made:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


PRODUCER = (
    "GRANT USAGE ON SCHEMA pgqueue TO {role}",
    "GRANT INSERT ON pgqueue.jobs TO {role}",
    "GRANT USAGE ON SEQUENCE pgqueue.jobs_id_seq TO {role}",
)


def test_a_role_without_grants_cannot_read_jobs_or_steer_a_worker(app, worker, db, make_role):
    intruder = make_role()
    long_job = jobs.cooperative.enqueue(30)
    with worker(concurrency=2, heartbeat_interval=0.2, lease=2.0) as w:
        wait_for(lambda: app.get_job(long_job).state == "running")
        with psycopg.connect(intruder, autocommit=True) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT args FROM pgqueue.jobs")
            conn.rollback()
            # What the hand-over at insert used to accept: a job row for this worker.
            row = [999999, "default", "echo", ["forged"], {}, 0, "2026-01-01T00:00:00+00:00", 1]
            conn.execute("SELECT pg_notify('pgqueue_push', %s)", (f"{w.id} 0 {json.dumps(row)}",))
            # A cancel for the running job, in the old shape and the new one.
            conn.execute("SELECT pg_notify('pgqueue_cancel', %s)", (str(long_job),))
            conn.execute("SELECT pg_notify('pgqueue_cancel', '')")
            conn.execute("SELECT pg_notify('pgqueue_jobs', 'default')")
        time.sleep(1.0)  # several heartbeats: cancel requests are read from the table
        job = app.get_job(long_job)
        assert job.state == "running", "a forged cancel was obeyed"
        assert jobs.calls == [], "a forged job ran"
        assert app.get_job(999999) is None
        # A real cancel still works.
        assert app.cancel(long_job)
        wait_for(lambda: app.get_job(long_job).state == "cancelled", timeout=10)


def test_schema_functions_are_not_executable_by_public(db, make_role):
    nobody = make_role()
    rows = db.execute(
        """
        SELECT p.proname, p.prosecdef,
               has_function_privilege(%s, p.oid, 'EXECUTE') AS executable
        FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace
        WHERE n.nspname = 'pgqueue'
        """,
        (psycopg.conninfo.conninfo_to_dict(nobody)["user"],),
    ).fetchall()
    assert rows, "the schema has its trigger functions"
    assert [r for r in rows if r[2]] == [], "executable by a role with no grants"
    # The SECURITY DEFINER functions (task defaults, the statistics counted as jobs change,
    # and the wake-up that reads whether a worker waits, so producers need only INSERT)
    # check the table they fire on; see the next test for attaching them elsewhere. The
    # release of lapsed unique keys and the settling of children whose parents finished are
    # run by the roles granted them, and do only that.
    assert sorted(r[0] for r in rows if r[1]) == [
        "jobs_count_changes",
        "jobs_fill_defaults",
        "jobs_notify_insert",
        "jobs_reset_stats",
        "release_unique_keys",
        "settle_children",
    ]


def test_a_producer_cannot_attach_the_trigger_to_start_a_delayed_job(app, db, make_role):
    producer = make_role(*PRODUCER)
    delayed = jobs.add.options(delay=86400).enqueue(1, 2)
    with psycopg.connect(producer, autocommit=True) as conn:
        conn.execute(
            "CREATE TEMP TABLE fake (id bigint, queue text, state text, run_at timestamptz, "
            "priority int, depends_on bigint[])"
        )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "CREATE TRIGGER t AFTER INSERT ON fake REFERENCING NEW TABLE AS new_rows "
                "FOR EACH STATEMENT EXECUTE FUNCTION pgqueue.jobs_notify_insert()"
            )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "CREATE TRIGGER d BEFORE INSERT ON fake "
                "FOR EACH ROW EXECUTE FUNCTION pgqueue.jobs_fill_defaults()"
            )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "CREATE TRIGGER s AFTER INSERT ON fake REFERENCING NEW TABLE AS new_rows "
                "FOR EACH STATEMENT EXECUTE FUNCTION pgqueue.jobs_count_changes()"
            )
        # What it may do: insert a job by plain SQL, which a worker picks up.
        conn.execute("INSERT INTO pgqueue.jobs (task, args) VALUES ('add', '[2, 3]')")
    job = app.get_job(delayed)
    assert job.state == "queued" and job.attempts == 0
    assert db.execute("SELECT count(*) FROM pgqueue.jobs WHERE task = 'add'").fetchone()[0] == 2


def test_a_producer_insert_wakes_the_worker_with_a_hint_only(app, worker, db, make_role):
    producer = make_role(*PRODUCER)
    with worker(), psycopg.connect(producer, autocommit=True) as conn:
        conn.execute("INSERT INTO pgqueue.jobs (task, args) VALUES ('add', '[20, 22]')")
        job_id = db.execute("SELECT max(id) FROM pgqueue.jobs").fetchone()[0]
        assert app.wait(job_id, timeout=10) == 42


def test_a_queue_name_too_long_for_a_notification_is_still_enqueued(app, worker, db):
    name = "q" * 9000  # over pg_notify's 8000-byte payload limit (the API refuses it; SQL may)
    with worker(queues=(name,)):
        (job_id,) = db.execute(
            "INSERT INTO pgqueue.jobs (task, args, queue) VALUES ('add', '[1, 1]', %s) "
            "RETURNING id",
            (name,),
        ).fetchone()
        assert app.wait(job_id, timeout=10) == 2
