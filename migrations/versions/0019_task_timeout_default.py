"""A job enqueued by name gets its task's declared timeout too.

Jobs inserted without a queue, priority or max_attempts (by task name: `app.enqueue(name)`
for a task this app does not hold, `pgqueue enqueue`, a plain SQL INSERT) got those from the
task's declaration in `pgqueue.tasks`, but not its timeout, which the table also holds: the
worker enforced the task's timeout, and the row said none. The same trigger now fills a NULL
timeout as well. It still fires only for such jobs, so a job enqueued with all three given
and no timeout keeps none (NULL means "no timeout" as much as "not given": the trigger
cannot tell them apart, and a trigger on every job would cost every bulk insert).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

FUNCTION = """
CREATE OR REPLACE FUNCTION pgqueue.jobs_fill_defaults() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t record;
BEGIN
    -- SECURITY DEFINER, so that a producer needs no grant on pgqueue.tasks; it runs on
    -- pgqueue.jobs only, and nobody but its owner may call it or attach it.
    IF TG_TABLE_SCHEMA <> 'pgqueue' OR TG_TABLE_NAME <> 'jobs' THEN
        RAISE EXCEPTION 'pgqueue.jobs_fill_defaults only runs on pgqueue.jobs';
    END IF;
    SELECT k.queue, k.priority, k.max_attempts, k.timeout INTO t
    FROM pgqueue.tasks AS k WHERE k.name = NEW.task;
    NEW.queue := coalesce(NEW.queue, t.queue, 'default');
    NEW.priority := coalesce(NEW.priority, t.priority, 0);
    NEW.max_attempts := coalesce(NEW.max_attempts, t.max_attempts, 3);
    NEW.timeout := coalesce(NEW.timeout, %s);
    RETURN NEW;
END
$$;
REVOKE EXECUTE ON FUNCTION pgqueue.jobs_fill_defaults() FROM PUBLIC;
"""


def upgrade() -> None:
    op.execute(FUNCTION % "t.timeout")


def downgrade() -> None:
    op.execute(FUNCTION % "NULL")
