"""Wake-ups only when a worker waits: `workers.waiting`, read by the insert trigger.

NOTIFY takes a lock at commit that every notifying transaction of the database queues for:
single-row enqueues from many producers ran at a third of their speed, paying for wake-ups
nobody needed while every worker was busy. A worker now says when it waits for jobs (its
last claim found fewer than it had room for) and when it stops (its slots are full), and
an insert notifies only when a worker of that queue waits.

`waiting` is NULL for workers that do not say (older ones): they are woken as before.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

WAKE_TRIGGER = """
CREATE OR REPLACE FUNCTION pgqueue.jobs_notify_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- SECURITY DEFINER, so that a producer (INSERT on pgqueue.jobs, nothing more) needs no
    -- grant on pgqueue.workers: it reads whether a worker waits, and sends hints (a queue
    -- name; workers claim from the table). It runs on pgqueue.jobs only, and nobody but
    -- its owner may call it or attach it.
    IF TG_TABLE_SCHEMA <> 'pgqueue' OR TG_TABLE_NAME <> 'jobs' THEN
        RAISE EXCEPTION 'pgqueue.jobs_notify_insert only runs on pgqueue.jobs';
    END IF;
    -- One wake-up per statement and queue, and only for a queue some worker waits on.
    PERFORM pg_notify('pgqueue_jobs',
                      CASE WHEN octet_length(q.queue) <= 200 THEN q.queue ELSE '*' END)
    FROM (SELECT DISTINCT n.queue FROM new_rows AS n WHERE n.state = 'queued') AS q
    WHERE EXISTS (SELECT 1 FROM pgqueue.workers AS w
                  WHERE w.waiting IS NOT FALSE
                    AND ('*' = ANY (w.queues) OR q.queue = ANY (w.queues)));
    RETURN NULL;
END
$$;
REVOKE EXECUTE ON FUNCTION pgqueue.jobs_notify_insert() FROM PUBLIC;
"""

PREVIOUS_TRIGGER = """
CREATE OR REPLACE FUNCTION pgqueue.jobs_notify_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- One wake-up per statement and queue; a hint only: workers claim from the table.
    PERFORM pg_notify('pgqueue_jobs',
                      CASE WHEN octet_length(q.queue) <= 200 THEN q.queue ELSE '*' END)
    FROM (SELECT DISTINCT n.queue FROM new_rows AS n WHERE n.state = 'queued') AS q;
    RETURN NULL;
END
$$;
REVOKE EXECUTE ON FUNCTION pgqueue.jobs_notify_insert() FROM PUBLIC;
"""


def upgrade() -> None:
    # Nullable, no default: the catalog changes, the rows are not rewritten.
    op.execute("ALTER TABLE pgqueue.workers ADD COLUMN waiting boolean")
    op.execute(WAKE_TRIGGER)


def downgrade() -> None:
    op.execute(PREVIOUS_TRIGGER)
    op.execute("ALTER TABLE pgqueue.workers DROP COLUMN IF EXISTS waiting")
