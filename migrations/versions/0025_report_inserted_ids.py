"""Enqueue by a role that may only INSERT: the insert trigger tells that session its ids.

`enqueue` returns the new job's id, which it read back with `RETURNING id`: that needs
SELECT on the column, so a role with INSERT on pgqueue.jobs and nothing more could insert by
plain SQL but not through the App. Such a role's enqueue now sets `pgqueue.report_ids` to
its statement's timestamp in the INSERT statement itself, and the wake-up trigger (which
already runs once per inserting statement, as its owner) then raises a NOTICE whose detail
lists the ids the statement inserted. A notice goes to the session that raised it and to no
other, and the trigger reports only to the statement that asked (a flag left over from an
earlier statement of the same transaction has another timestamp), so nobody learns more
than the ids of the rows they inserted themselves. The notice is raised whatever the
session's client_min_messages (set back when the trigger returns).

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

# 0015's function.
PREVIOUS = """
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

WAKE_UP = "    -- One wake-up per statement and queue"
REPORT = """    -- The ids for a statement that asked (migration 0025), to its own session only.
    IF current_setting('pgqueue.report_ids', true) = statement_timestamp()::text THEN
        PERFORM set_config('client_min_messages', 'notice', true);
        RAISE NOTICE 'pgqueue: jobs inserted' USING DETAIL = (
            SELECT coalesce(string_agg(n.id::text, ',' ORDER BY n.id), '') FROM new_rows AS n);
    END IF;
"""
TRIGGER = PREVIOUS.replace(WAKE_UP, REPORT + WAKE_UP, 1)
assert TRIGGER != PREVIOUS


def upgrade() -> None:
    op.execute(TRIGGER)


def downgrade() -> None:
    op.execute(PREVIOUS)
