"""A claim whose answer never came back: the database took the jobs for this worker, the
worker never received them, and no rescue takes them while it lives."""

from __future__ import annotations

import psycopg

from tests.waiting import wait_for


def break_claim_in_flight(db: psycopg.Connection, dsn: str) -> None:
    """Terminate the worker's claimer while a lock on the table holds its claim up."""

    def claimer_pid() -> int | None:
        row = db.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND (query LIKE %s OR query LIKE %s)",
            # The claim of every queue, or the look at when the next job is due: the
            # claimer's, whichever of the two the lock held up.
            ("WITH RECURSIVE known_queues%", "%min(run_at) - coalesce%"),
        ).fetchone()
        return row[0] if row else None

    with psycopg.connect(dsn) as locker:
        locker.execute("LOCK TABLE pgqueue.jobs IN ACCESS EXCLUSIVE MODE")
        db.execute("SELECT pg_terminate_backend(%s)", (wait_for(claimer_pid),))
        locker.rollback()


def test_jobs_of_a_claim_whose_answer_was_lost_are_given_back(worker, db, dsn):
    with worker(poll_interval=0.5) as w:
        # As a claim that committed just before its connection broke leaves it: running for
        # this worker, its attempt counted, known to nobody in the process.
        (job_id,) = db.execute(
            "INSERT INTO pgqueue.jobs (task, args, state, worker_id, attempts, started_at) "
            "VALUES ('add', '[20, 22]', 'running', %s, 1, now()) RETURNING id",
            (w.id,),
        ).fetchone()

        # Then the claimer's connection breaks while a claim is in flight (held up here by
        # a lock on the table): the claim fails, so one may have been lost. (The tests' own
        # connections are left alone.) A connection closed while idle would not do: it is
        # seen closed before its next use and replaced, and nothing was in flight.
        break_claim_in_flight(db, dsn)

        def finished() -> bool:
            row = db.execute(
                "SELECT state, attempts, result FROM pgqueue.jobs WHERE id = %s", (job_id,)
            ).fetchone()
            return row[0] == "succeeded" and row

        # (Without the release, the job stays running as long as this worker lives.)
        state, attempts, result = wait_for(finished, timeout=20)
        assert (state, attempts, result) == ("succeeded", 1, 42), "its lost attempt is not counted"


def test_a_claim_that_commits_after_its_connection_broke_is_given_back(worker, db, dsn):
    # The claim's backend, cut off from the worker (a network partition) while a lock held
    # it up, carries on and commits later: after the worker reconnected and looked for
    # strays once. Its jobs stayed running for this worker, which never received them.
    import time

    with worker(poll_interval=0.5) as w:
        break_claim_in_flight(db, dsn)
        time.sleep(2.0)  # the worker claims again, finds nothing astray
        # Then the cut-off claim commits: running here, its attempt counted.
        (job_id,) = db.execute(
            "INSERT INTO pgqueue.jobs (task, args, state, worker_id, attempts, started_at) "
            "VALUES ('add', '[20, 22]', 'running', %s, 1, now()) RETURNING id",
            (w.id,),
        ).fetchone()

        def finished() -> tuple[str, int, int] | None:
            row = db.execute(
                "SELECT state, attempts, result FROM pgqueue.jobs WHERE id = %s", (job_id,)
            ).fetchone()
            return row if row[0] == "succeeded" else None

        assert wait_for(finished, timeout=20) == ("succeeded", 1, 42)


def test_a_connection_the_server_closed_while_idle_is_replaced_before_its_next_use(db, dsn):
    """The claimer's and the completer's connections: one whose server process went while
    it sat idle (a restart, a terminated backend) would fail its next statement, and the
    worker would report an outage that is already over. It is replaced first."""
    import asyncio

    from pgqueue.store.single import SingleConnection

    async def scenario() -> tuple[int, int, int]:
        single = SingleConnection(dsn)
        try:
            async with single.connection() as conn:
                first = (await (await conn.execute("SELECT pg_backend_pid()")).fetchone())[0]
            db.execute("SELECT pg_terminate_backend(%s)", (first,))
            wait_for(
                lambda: (
                    not db.execute(
                        "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (first,)
                    ).fetchone()
                )
            )
            async with single.connection() as conn:
                second = (await (await conn.execute("SELECT pg_backend_pid()")).fetchone())[0]
                answer = (await (await conn.execute("SELECT 42")).fetchone())[0]
            return first, second, answer
        finally:
            await single.close()

    first, second, answer = asyncio.run(scenario())
    assert answer == 42 and second != first
