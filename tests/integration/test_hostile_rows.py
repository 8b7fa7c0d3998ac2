"""Rows a producer may insert but a worker cannot read back: refused by the table, or ended
dead without taking the rest of a claim down with them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest

import pgqueue
from tests import jobs


@pytest.mark.parametrize(
    ("columns", "values"),
    [
        ("run_at", "'-infinity'"),
        ("run_at", "'infinity'"),
        ("run_at", "'0001-01-01 00:00:00+00 BC'"),
        ("created_at", "'infinity'"),
        ("started_at", "'10000-01-01 00:00:00+00'"),
        ("finished_at", "'-infinity'"),
        ("attempts", "2147483647"),
    ],
)
def test_the_table_refuses_rows_a_worker_could_not_read(db, columns, values):
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute(f"INSERT INTO pgqueue.jobs (task, {columns}) VALUES ('add', {values})")


def test_the_dependency_sentinel_and_ordinary_times_are_allowed(db):
    db.execute(
        "INSERT INTO pgqueue.jobs (task, run_at, created_at) "
        "VALUES ('add', '9999-12-31 00:00:00+00', now()), ('add', '0002-01-01 00:00:00+00', now())"
    )


@pytest.mark.parametrize(
    "run_at",
    [
        datetime(1, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))),  # 1 BC in UTC
        datetime.max.replace(tzinfo=timezone(timedelta(hours=-14))),  # year 10000 in UTC
    ],
)
def test_enqueue_refuses_a_run_at_the_table_would_refuse(app, run_at):
    with pytest.raises(pgqueue.ConfigurationError, match="run_at must be between"):
        jobs.add.options(run_at=run_at).enqueue(1, 2)
    jobs.add.options(run_at=datetime(2, 1, 1, tzinfo=UTC)).enqueue(1, 2)  # long due: fine


def test_arguments_python_cannot_read_end_their_job_dead_and_the_claim_goes_on(app, worker, db):
    # Valid jsonb, deeper than Python's parsers go: claimed in the same batch as good jobs.
    deep = "[" * 2000 + "]" * 2000
    (poison,) = db.execute(
        "INSERT INTO pgqueue.jobs (task, args) VALUES ('add', %s::jsonb) RETURNING id", (deep,)
    ).fetchone()
    good = [jobs.add.enqueue(i, i) for i in range(3)]
    with worker(concurrency=4):
        assert [app.wait(job_id, timeout=10) for job_id in good] == [0, 2, 4, 6][:3]
        with pytest.raises(pgqueue.JobFailed, match="cannot be read"):
            app.wait(poison, timeout=10)
    row = db.execute(
        "SELECT state, attempts, last_error FROM pgqueue.jobs WHERE id = %s", (poison,)
    ).fetchone()
    assert row[0] == "dead" and row[1] == 1
    assert row[2].startswith("BadArguments: the stored arguments cannot be read")


def test_an_id_taken_ahead_of_the_sequence_is_reported_as_such(app, db):
    # A row inserted with an id of its own, where the sequence goes next.
    (taken,) = db.execute(
        "SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END "
        "FROM pgqueue.jobs_id_seq"
    ).fetchone()
    db.execute("INSERT INTO pgqueue.jobs (id, task) VALUES (%s, 'add')", (taken,))
    with pytest.raises(pgqueue.PgQueueError, match="already has the id") as caught:
        jobs.add.enqueue(1, 2)
    assert "unique key" not in str(caught.value)
    assert jobs.add.enqueue(1, 2) > taken  # the sequence moved on


def test_a_trace_context_python_cannot_read_is_dropped_and_the_claim_goes_on(app, worker, db):
    # trace_context came back as jsonb in the claim, parsed for the whole claim at once: one
    # such row failed every claim that took it, and the worker exited.
    deep = "[" * 1100 + "]" * 1100
    (poison,) = db.execute(
        "INSERT INTO pgqueue.jobs (task, args, trace_context)"
        " VALUES ('add', '[1, 1]', %s::jsonb) RETURNING id",
        (deep,),
    ).fetchone()
    good = [jobs.add.enqueue(i, i) for i in range(3)]
    with worker(concurrency=4):
        assert [app.wait(job_id, timeout=10) for job_id in [poison, *good]] == [2, 0, 2, 4]


def test_values_python_cannot_read_are_shown_as_such(app, db):
    deep = "[" * 3000 + "]" * 3000
    (job_id,) = db.execute(
        "INSERT INTO pgqueue.jobs (task, args, errors, run_at) VALUES"
        ' (\'add\', %s::jsonb, \'[1, "x", {"at": 5, "attempt": "one"}]\', now() + interval \'1 h\')'
        " RETURNING id",
        (deep,),
    ).fetchone()
    job = app.get_job(job_id)  # RecursionError before
    assert str(job.args).startswith("<unreadable JSON: ")
    assert [e["error"] for e in job.errors[:2]] == ["1", "x"] and job.errors[2]["at"] == "5"
    (scalar,) = db.execute(
        "INSERT INTO pgqueue.jobs (task, errors) VALUES ('add', '\"scalar\"') RETURNING id"
    ).fetchone()
    assert app.get_job(scalar).errors == [{"error": "<errors is not a list: 'scalar'>"}]
    from fastapi.testclient import TestClient

    from pgqueue.web import create_app

    web = TestClient(create_app(app, token=None, allowed_hosts=["testserver"]))
    for path in (f"/api/jobs/{job_id}", f"/api/jobs/{job_id}/detail", f"/api/jobs/{scalar}/detail"):
        assert web.get(path).status_code == 200, path  # 500 before


def test_a_row_at_the_bounds_stops_no_worker(app, worker, db):
    # Infinity as unique_for failed every outcome batch holding it, and the worker stopped;
    # attempts at their bound failed every claim of the queue.
    (endless,) = db.execute(
        "INSERT INTO pgqueue.jobs (task, args, unique_key, unique_for)"
        " VALUES ('add', '[1, 2]', 'forever', 'Infinity') RETURNING id"
    ).fetchone()
    (counted,) = db.execute(
        "INSERT INTO pgqueue.jobs (task, args, attempts, max_attempts)"
        " VALUES ('add', '[2, 2]', 2147483646, 2147483647) RETURNING id"
    ).fetchone()
    good = [jobs.add.enqueue(i, i) for i in range(3)]
    with worker(concurrency=4):
        assert [app.wait(i, timeout=10) for i in [endless, counted, *good]] == [3, 4, 0, 2, 4]
    job = app.get_job(endless)
    assert job.unique_until > datetime.now(UTC) + timedelta(days=365 * 99)
    assert app.get_job(counted).attempts == 2147483646


def test_a_job_inserted_by_sql_with_depends_on_waits_for_its_parents(app, worker, db):
    parent = jobs.sleep.enqueue(0.5)
    (child,) = db.execute(
        "INSERT INTO pgqueue.jobs (task, args, depends_on) VALUES ('add', '[5, 5]', ARRAY[%s])"
        " RETURNING id",
        (parent,),
    ).fetchone()
    with worker(concurrency=4):
        assert app.wait(child, timeout=20) == 10
    parent_end, child_start = db.execute(
        "SELECT (SELECT finished_at FROM pgqueue.jobs WHERE id = %s),"
        " (SELECT started_at FROM pgqueue.jobs WHERE id = %s)",
        (parent, child),
    ).fetchone()
    assert child_start >= parent_end  # it ran at once, beside its parent, before
