"""The claim keeps its plan whatever the statistics say: after an ANALYZE taken while no job
was due, a burst of due jobs is still claimed through the claim index in order, never by
reading every due job through the run_at index and sorting them at each claim."""

from __future__ import annotations

import time

import pytest

from tests.waiting import wait_for

BURST = 20_000


def run_at_index_reads(db) -> int:
    db.execute("SELECT pg_stat_clear_snapshot()")
    row = db.execute(
        "SELECT idx_tup_read FROM pg_stat_user_indexes WHERE indexrelname = 'jobs_run_at_idx'"
    ).fetchone()
    return int(row[0])


# Through a transaction pooler (`pooler`), nothing is prepared and each claim is a transaction
# that asks for the generic plan itself: the same plan, with no session state.
@pytest.mark.parametrize("pooler", [False, True], ids=["direct", "pooler"])
def test_statistics_taken_while_nothing_was_due_do_not_change_the_claim(app, worker, db, pooler):
    db.execute(
        "INSERT INTO pgqueue.jobs (task, args, queue, priority, max_attempts, run_at) "
        "SELECT 'quick', jsonb_build_array(i), 'default', 0, 3, now() + interval '1 day' "
        "FROM generate_series(1, %s) AS i",
        (BURST,),
    )
    db.execute("ANALYZE pgqueue.jobs")  # nothing is due: the statistics say so
    db.execute(
        "INSERT INTO pgqueue.jobs (task, args, queue, priority, max_attempts) "
        "SELECT 'quick', jsonb_build_array(i), 'default', 0, 3 "
        "FROM generate_series(1, %s) AS i",
        (BURST,),
    )
    before = run_at_index_reads(db)
    with worker(concurrency=20, pooler=pooler):
        wait_for(
            lambda: (
                db.execute(
                    "SELECT count(*) FROM pgqueue.jobs WHERE state = 'succeeded'"
                ).fetchone()[0]
                == BURST
            ),
            timeout=120,
            interval=0.5,
        )
    time.sleep(1.5)  # the worker's backends have flushed their statistics
    reads = run_at_index_reads(db) - before
    # Claims that read the due jobs through the run_at index would read all that are left at
    # each claim: hundreds of thousands of entries. The claim index in order reads none.
    assert reads < BURST, f"{reads} entries read through jobs_run_at_idx"
