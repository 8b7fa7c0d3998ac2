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
