"""Statistics from rollups kept as jobs finish, not from scans of pgqueue.jobs.

`pgqueue stats`, `/api/stats`, `/api/throughput` and `/metrics` counted jobs by reading
them, which took seconds with millions of finished ones kept. Now three statement-level
triggers on pgqueue.jobs (insert, update, delete) see every change of a row, whatever made
it (an enqueue, a claim, a worker's outcomes, the rescuer, a cancel, a retry, pruning, plain
SQL), and append what it changed to `pgqueue.stats_changes`: a row counts in its state
while it is in it, and a finished one (succeeded, dead, cancelled) in the figures of the
minute it finished, so the figures always equal what the table holds. One aggregate per
statement, and only an insert: workers never wait on each other's row locks. Maintenance
folds the changes into

- `stats_totals`: jobs in the table, per queue and state (all of them);
- `stats_minutes`: per minute of finished_at, queue, task and state, the jobs, their extra
  attempts, the rescued ones, and histograms of enqueue-to-start latency and run time (the
  last hour or so: the 5-minute and 1-hour figures);
- `stats_series`: per minute, the jobs that succeeded and went dead and their latency
  histogram (as arrays: one row a minute), for the last day (the throughput chart);
- `stats_queued`: queued jobs due later, per queue and minute of their run_at (the minutes
  still to come), so that `scheduled` is not counted from the table.

Readers add the changes not yet folded in, so a figure never waits for maintenance.

The histogram buckets (`le`, an upper bound in seconds, as Prometheus has it) include every
bucket of /metrics; percentiles are estimated from them. Rows that are not histogram buckets
(`jobs`, `retries`, `rescued`) have `le` 0.

The migration reads the finished jobs once to start the rollups, while it holds the lock
that creating the triggers takes (writes to pgqueue.jobs wait for it).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# Upper bounds (seconds) of the latency and run-time histogram buckets, then Infinity. Also
# in pgqueue/stats.py (BUCKETS); a test checks that they agree.
BOUNDS = (
    "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5",
    "5", "10", "30", "60", "120", "300", "600", "1800", "3600", "21600", "86400",
)  # fmt: skip

# What rows of pgqueue.jobs add to the figures (sign 1) or take away (sign -1), grouped:
# one row per minute, queue, task, state, measure and bucket. `source` gives the rows. Queued
# and running jobs count in the totals only (minute -infinity, no task); a finished job also
# in its minute, with its extra attempts, whether it was rescued, and its latency and run
# time (those of a job that started). A few small aggregates rather than a row per measure
# and job: this runs in the statements of the workers' hot path.
FINISHED = "('succeeded', 'dead', 'cancelled')"
# A queued job due later counts in the minute of its run_at (stats_queued keeps the minutes
# still to come, so that `scheduled` is read without the table); any other live job, and a
# queued one due already, in no minute. Judged at the time of the change: a job counted in a
# minute that has come and gone is due, and that minute is no longer read.
WAITING = (
    "CASE WHEN state = 'queued' AND run_at > now() THEN date_trunc('minute', run_at)"
    " ELSE '-infinity'::timestamptz END"
)
CHANGES = f"""
INSERT INTO pgqueue.stats_changes (minute, queue, task, state, measure, le, n, total)
WITH r AS (
    {{source}}
), done AS (
    SELECT r.sign, r.queue, r.task, r.state, r.attempts, r.last_error,
           coalesce(date_trunc('minute', r.finished_at), '-infinity') AS minute,
           CASE WHEN r.started_at IS NOT NULL
                THEN greatest(extract(epoch FROM r.started_at - r.run_at), 0)::float8
           END AS latency,
           CASE WHEN r.started_at IS NOT NULL AND r.finished_at IS NOT NULL
                THEN greatest(extract(epoch FROM r.finished_at - r.started_at), 0)::float8
           END AS duration
    FROM r WHERE r.state IN {FINISHED}
)
SELECT {WAITING}, queue, '', state, 'jobs', 0::float8, sum(sign), 0::float8
FROM r WHERE state NOT IN {FINISHED}
GROUP BY 1, queue, state HAVING sum(sign) <> 0
UNION ALL
SELECT minute, queue, task, state, 'jobs', 0, sum(sign), 0
FROM done GROUP BY minute, queue, task, state HAVING sum(sign) <> 0
UNION ALL
SELECT minute, queue, '', state, 'retries', 0, sum(sign * (attempts - 1)), 0
FROM done WHERE attempts > 1
GROUP BY minute, queue, state HAVING sum(sign * (attempts - 1)) <> 0
UNION ALL
SELECT minute, queue, '', state, 'rescued', 0, sum(sign), 0
FROM done WHERE last_error LIKE 'WorkerLost%'
GROUP BY minute, queue, state HAVING sum(sign) <> 0
UNION ALL
SELECT minute, queue, '', state, 'latency', pgqueue.stats_le(latency), sum(sign),
       sum(sign * latency)
FROM done WHERE latency IS NOT NULL
GROUP BY minute, queue, state, 6
-- An update that changes nothing counted (a progress report, say) adds nothing.
HAVING sum(sign) <> 0 OR abs(sum(sign * latency)) > 1e-9
UNION ALL
SELECT minute, queue, '', state, 'duration', pgqueue.stats_le(duration), sum(sign),
       sum(sign * duration)
FROM done WHERE duration IS NOT NULL
GROUP BY minute, queue, state, 6
HAVING sum(sign) <> 0 OR abs(sum(sign * duration)) > 1e-9
"""

# When no finished job is among the rows (an enqueue, a claim): the totals only.
LIVE = f"""
INSERT INTO pgqueue.stats_changes (minute, queue, task, state, measure, le, n, total)
SELECT {WAITING}, queue, '', state, 'jobs', 0, sum(sign), 0
FROM ({{source}}) AS r
GROUP BY 1, queue, state HAVING sum(sign) <> 0
"""

ROW = "queue, task, state, finished_at, started_at, run_at, attempts, last_error"
ADDED = f"SELECT 1 AS sign, {ROW} FROM new_rows"
REMOVED = f"SELECT -1 AS sign, {ROW} FROM old_rows"
ADDED_LIVE = "SELECT 1 AS sign, queue, state, run_at FROM new_rows"
REMOVED_LIVE = "SELECT -1 AS sign, queue, state, run_at FROM old_rows"
NEW_DONE = f"EXISTS (SELECT 1 FROM new_rows WHERE state IN {FINISHED})"
OLD_DONE = f"EXISTS (SELECT 1 FROM old_rows WHERE state IN {FINISHED})"

COUNT_CHANGES = f"""
CREATE FUNCTION pgqueue.jobs_count_changes() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- SECURITY DEFINER, so that a producer (INSERT on pgqueue.jobs, nothing more) needs no
    -- grant on the rollups. It trusts nothing it is given: it runs on pgqueue.jobs only, and
    -- nobody but its owner may call it or attach it.
    IF TG_TABLE_SCHEMA <> 'pgqueue' OR TG_TABLE_NAME <> 'jobs' THEN
        RAISE EXCEPTION 'pgqueue.jobs_count_changes only runs on pgqueue.jobs';
    END IF;
    IF TG_OP = 'INSERT' THEN
        IF {NEW_DONE} THEN
            {CHANGES.format(source=ADDED)};
        ELSE
            {LIVE.format(source=ADDED_LIVE)};
        END IF;
    ELSIF TG_OP = 'UPDATE' THEN
        IF {NEW_DONE} OR {OLD_DONE} THEN
            {CHANGES.format(source=REMOVED + " UNION ALL " + ADDED)};
        ELSE
            {LIVE.format(source=REMOVED_LIVE + " UNION ALL " + ADDED_LIVE)};
        END IF;
    ELSIF TG_OP = 'DELETE' THEN
        IF {OLD_DONE} THEN
            {CHANGES.format(source=REMOVED)};
        ELSE
            {LIVE.format(source=REMOVED_LIVE)};
        END IF;
    END IF;
    RETURN NULL;
END
$$
"""

# One stats_series row per minute from changes: the outcomes, and the latency buckets of
# both (bounds in increasing order, counts, sums).
SERIES = """
SELECT b.minute,
       coalesce(sum(b.n) FILTER (WHERE b.measure = 'succeeded'), 0),
       coalesce(sum(b.n) FILTER (WHERE b.measure = 'dead'), 0),
       coalesce(array_agg(b.le ORDER BY b.le) FILTER (WHERE b.measure = 'latency'), '{}'),
       coalesce(array_agg(b.n ORDER BY b.le) FILTER (WHERE b.measure = 'latency'), '{}'),
       coalesce(array_agg(b.total ORDER BY b.le) FILTER (WHERE b.measure = 'latency'), '{}')
FROM (SELECT minute, CASE WHEN measure = 'jobs' THEN state ELSE measure END AS measure, le,
             sum(n)::bigint AS n, sum(total) AS total
      FROM pgqueue.stats_changes
      WHERE minute >= date_trunc('minute', now()) - interval '1450 minutes'
        AND state IN ('succeeded', 'dead') AND measure IN ('jobs', 'latency')
      GROUP BY 1, 2, 3) AS b
GROUP BY b.minute
"""

# Folding the changes into the rollups, as maintenance does (pgqueue/sql/stats.sql,
# stats_compact): here once, for the rows already in the table.
FOLD = [
    """
    INSERT INTO pgqueue.stats_totals (queue, state, jobs)
    SELECT queue, state, sum(n) FROM pgqueue.stats_changes WHERE measure = 'jobs'
    GROUP BY queue, state
    """,
    """
    INSERT INTO pgqueue.stats_minutes (minute, queue, task, state, measure, le, n, total)
    SELECT minute, queue, task, state, measure, le, sum(n), sum(total)
    FROM pgqueue.stats_changes
    WHERE minute >= date_trunc('minute', now()) - interval '70 minutes'
      AND state IN ('succeeded', 'dead', 'cancelled')
    GROUP BY 1, 2, 3, 4, 5, 6
    """,
    f"""
    INSERT INTO pgqueue.stats_series (minute, succeeded, dead, le, n, total)
    {SERIES}
    """,
    """
    INSERT INTO pgqueue.stats_queued (queue, minute, n)
    SELECT queue, minute, sum(n) FROM pgqueue.stats_changes
    WHERE measure = 'jobs' AND state = 'queued' AND minute > date_trunc('minute', now())
    GROUP BY 1, 2
    """,
    "DELETE FROM pgqueue.stats_changes",
]


def upgrade() -> None:
    bounds = ",".join(BOUNDS)
    negated = ",".join("-" + b for b in reversed(BOUNDS))
    # The bucket of a value: the first bound at or above it (Prometheus' `le`). width_bucket
    # counts bounds at or below its operand, so it is given the negated bounds.
    op.execute(
        f"""
        CREATE FUNCTION pgqueue.stats_le(seconds float8) RETURNS float8
        LANGUAGE sql IMMUTABLE PARALLEL SAFE
        AS $$
            SELECT ('{{{bounds},Infinity}}'::float8[])
                [{len(BOUNDS) + 1} - width_bucket(-seconds, '{{{negated}}}'::float8[])]
        $$
        """
    )
    op.execute(
        """
        CREATE TABLE pgqueue.stats_changes (
            minute   timestamptz NOT NULL,
            queue    text NOT NULL,
            task     text NOT NULL,
            state    text NOT NULL,
            measure  text NOT NULL,
            le       float8 NOT NULL,
            n        bigint NOT NULL,
            total    float8 NOT NULL
        )
        """
    )
    # Rows come and go all the time, a few per statement: vacuum it early. Readers scan it
    # whole; never with parallel workers, whose start costs more than the scan (and than
    # the 50 ms a reader has).
    op.execute(
        """
        ALTER TABLE pgqueue.stats_changes SET (
            autovacuum_vacuum_scale_factor = 0,
            autovacuum_vacuum_threshold = 5000,
            autovacuum_vacuum_insert_scale_factor = 0,
            autovacuum_vacuum_insert_threshold = 5000,
            parallel_workers = 0
        )
        """
    )
    op.execute(
        """
        CREATE TABLE pgqueue.stats_totals (
            queue  text NOT NULL,
            state  text NOT NULL,
            jobs   bigint NOT NULL,
            PRIMARY KEY (queue, state)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE pgqueue.stats_minutes (
            minute   timestamptz NOT NULL,
            queue    text NOT NULL,
            task     text NOT NULL,
            state    text NOT NULL,
            measure  text NOT NULL,
            le       float8 NOT NULL,
            n        bigint NOT NULL,
            total    float8 NOT NULL,
            PRIMARY KEY (minute, queue, task, state, measure, le)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE pgqueue.stats_series (
            minute     timestamptz PRIMARY KEY,
            succeeded  bigint NOT NULL,
            dead       bigint NOT NULL,
            le         float8[] NOT NULL,
            n          bigint[] NOT NULL,
            total      float8[] NOT NULL
        )
        """
    )
    op.execute(
        """
        CREATE TABLE pgqueue.stats_queued (
            queue   text NOT NULL,
            minute  timestamptz NOT NULL,
            n       bigint NOT NULL,
            PRIMARY KEY (queue, minute)
        )
        """
    )
    op.execute(COUNT_CHANGES)
    op.execute(
        """
        CREATE FUNCTION pgqueue.jobs_reset_stats() RETURNS trigger
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
        AS $$
        BEGIN
            IF TG_TABLE_SCHEMA <> 'pgqueue' OR TG_TABLE_NAME <> 'jobs' THEN
                RAISE EXCEPTION 'pgqueue.jobs_reset_stats only runs on pgqueue.jobs';
            END IF;
            DELETE FROM pgqueue.stats_changes;
            DELETE FROM pgqueue.stats_totals;
            DELETE FROM pgqueue.stats_minutes;
            DELETE FROM pgqueue.stats_series;
            DELETE FROM pgqueue.stats_queued;
            RETURN NULL;
        END
        $$
        """
    )
    for fn in ("stats_le(float8)", "jobs_count_changes()", "jobs_reset_stats()"):
        op.execute(f"REVOKE EXECUTE ON FUNCTION pgqueue.{fn} FROM PUBLIC")
    # A trigger with transition tables fires for one event only: one each.
    op.execute(
        """
        CREATE TRIGGER jobs_stats_insert
        AFTER INSERT ON pgqueue.jobs
        REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION pgqueue.jobs_count_changes()
        """
    )
    op.execute(
        """
        CREATE TRIGGER jobs_stats_update
        AFTER UPDATE ON pgqueue.jobs
        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION pgqueue.jobs_count_changes()
        """
    )
    op.execute(
        """
        CREATE TRIGGER jobs_stats_delete
        AFTER DELETE ON pgqueue.jobs
        REFERENCING OLD TABLE AS old_rows
        FOR EACH STATEMENT EXECUTE FUNCTION pgqueue.jobs_count_changes()
        """
    )
    # TRUNCATE fires no delete trigger: it empties the figures with the table.
    op.execute(
        """
        CREATE TRIGGER jobs_stats_truncate
        AFTER TRUNCATE ON pgqueue.jobs
        FOR EACH STATEMENT EXECUTE FUNCTION pgqueue.jobs_reset_stats()
        """
    )
    # The jobs already there. The triggers were created in this transaction, which holds a
    # lock that keeps writers out until it commits: nothing is counted twice or missed.
    source = f"SELECT 1 AS sign, {ROW} FROM pgqueue.jobs"
    op.execute(CHANGES.format(source=source))
    for statement in FOLD:
        op.execute(statement)


def downgrade() -> None:
    for trigger in ("insert", "update", "delete", "truncate"):
        op.execute(f"DROP TRIGGER IF EXISTS jobs_stats_{trigger} ON pgqueue.jobs")
    op.execute("DROP FUNCTION IF EXISTS pgqueue.jobs_count_changes()")
    op.execute("DROP FUNCTION IF EXISTS pgqueue.jobs_reset_stats()")
    for table in ("changes", "totals", "minutes", "series", "queued"):
        op.execute(f"DROP TABLE IF EXISTS pgqueue.stats_{table}")
    op.execute("DROP FUNCTION IF EXISTS pgqueue.stats_le(float8)")
