"""Totals since the schema was made, for the counters and histograms of /metrics.

/metrics typed its latency and run-time series as Prometheus histograms but gave the jobs
finished in the last hour: the counts went down as minutes left the window, which
Prometheus reads as a counter reset, so `rate()` and `histogram_quantile(rate(...))` gave
nonsense. `pgqueue.stats_lifetime` keeps, per queue, task, final state, measure and bucket,
what ever finished: the maintenance round that folds `stats_changes` into the other rollups
adds the increases to it (a job taken back out of a final state, by a retry, is not taken
off: a counter never goes down). Filled here from the minutes still kept (the last 70).
TRUNCATE of pgqueue.jobs empties it with the other figures.

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None


def _reset_stats(lifetime: bool) -> str:
    """pgqueue.jobs_reset_stats (migration 0014), with or without emptying stats_lifetime."""
    also = "DELETE FROM pgqueue.stats_lifetime;" if lifetime else ""
    return f"""
        CREATE OR REPLACE FUNCTION pgqueue.jobs_reset_stats() RETURNS trigger
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
            {also}
            RETURN NULL;
        END
        $$
        """


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE pgqueue.stats_lifetime (
            queue    text NOT NULL,
            task     text NOT NULL,
            state    text NOT NULL,
            measure  text NOT NULL,
            le       float8 NOT NULL,
            n        bigint NOT NULL,
            total    float8 NOT NULL,
            PRIMARY KEY (queue, task, state, measure, le)
        )
        """
    )
    op.execute(
        """
        INSERT INTO pgqueue.stats_lifetime (queue, task, state, measure, le, n, total)
        SELECT queue, task, state, measure, le, sum(n), sum(total)
        FROM pgqueue.stats_minutes
        WHERE n > 0 AND state IN ('succeeded', 'dead', 'cancelled')
        GROUP BY queue, task, state, measure, le
        """
    )
    op.execute(_reset_stats(lifetime=True))


def downgrade() -> None:
    op.execute(_reset_stats(lifetime=False))
    op.execute("DROP TABLE IF EXISTS pgqueue.stats_lifetime")
