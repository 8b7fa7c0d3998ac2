"""A claim whose answer never came back: the database took the jobs for this worker, the
worker never received them, and no rescue takes them while it lives."""

from __future__ import annotations

from tests.waiting import wait_for


def test_jobs_of_a_claim_whose_answer_was_lost_are_given_back(worker, db):
    with worker(poll_interval=0.5) as w:
        # As a claim that committed just before its connection broke leaves it: running for
        # this worker, its attempt counted, known to nobody in the process.
        (job_id,) = db.execute(
            "INSERT INTO pgqueue.jobs (task, args, state, worker_id, attempts, started_at) "
            "VALUES ('add', '[20, 22]', 'running', %s, 1, now()) RETURNING id",
            (w.id,),
        ).fetchone()

        # Then the claimer's connection breaks (the one whose last statement asked when the
        # next job is due, as an idle claimer does): its next claim fails, so one may have
        # been lost. (The tests' own connections are left alone.)
        def claimer_pid() -> int | None:
            row = db.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND query LIKE %s",
                ("%min(run_at) - coalesce%",),
            ).fetchone()
            return row[0] if row else None

        db.execute("SELECT pg_terminate_backend(%s)", (wait_for(claimer_pid),))

        def finished() -> bool:
            row = db.execute(
                "SELECT state, attempts, result FROM pgqueue.jobs WHERE id = %s", (job_id,)
            ).fetchone()
            return row[0] == "succeeded" and row

        # (Without the release, the job stays running as long as this worker lives.)
        state, attempts, result = wait_for(finished, timeout=20)
        assert (state, attempts, result) == ("succeeded", 1, 42), "its lost attempt is not counted"
