"""Tasks are known to the database.

- `pgqueue.tasks`: every task a worker serves, with its declared defaults (queue, priority,
  max_attempts, timeout), written by workers when they register.
- `pgqueue.workers.tasks`: the tasks each worker serves; a worker claims only those jobs.
- A job inserted without a queue, priority or max_attempts (by name from another process,
  the REST API, `pgqueue enqueue`, or plain SQL) gets its task's declared defaults, else
  'default', 0 and 3: the columns lose their defaults and a row trigger fills what is
  missing. It fires only for such rows (pgqueue's own enqueue of a known task fills every
  column, and pays nothing).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE pgqueue.tasks (
            name         text PRIMARY KEY,
            queue        text NOT NULL,
            priority     integer NOT NULL,
            max_attempts integer NOT NULL,
            timeout      float8,
            updated_at   timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("ALTER TABLE pgqueue.workers ADD COLUMN tasks text[]")
    # SECURITY DEFINER so that producers need INSERT on pgqueue.jobs and nothing more (the
    # task defaults are read as the owner). It trusts nothing it is given: it refuses to run
    # on any table but pgqueue.jobs, only reads pgqueue.tasks, and nobody but its owner may
    # call it or attach it (EXECUTE is revoked from PUBLIC below).
    op.execute(
        """
        CREATE FUNCTION pgqueue.jobs_fill_defaults() RETURNS trigger
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
        AS $$
        DECLARE
            t record;
        BEGIN
            IF TG_TABLE_SCHEMA <> 'pgqueue' OR TG_TABLE_NAME <> 'jobs' THEN
                RAISE EXCEPTION 'pgqueue.jobs_fill_defaults only runs on pgqueue.jobs';
            END IF;
            SELECT k.queue, k.priority, k.max_attempts INTO t
            FROM pgqueue.tasks AS k WHERE k.name = NEW.task;
            NEW.queue := coalesce(NEW.queue, t.queue, 'default');
            NEW.priority := coalesce(NEW.priority, t.priority, 0);
            NEW.max_attempts := coalesce(NEW.max_attempts, t.max_attempts, 3);
            RETURN NEW;
        END
        $$
        """
    )
    op.execute("REVOKE EXECUTE ON FUNCTION pgqueue.jobs_fill_defaults() FROM PUBLIC")
    op.execute(
        """
        CREATE TRIGGER jobs_fill_defaults
        BEFORE INSERT ON pgqueue.jobs
        FOR EACH ROW
        WHEN (NEW.queue IS NULL OR NEW.priority IS NULL OR NEW.max_attempts IS NULL)
        EXECUTE FUNCTION pgqueue.jobs_fill_defaults()
        """
    )
    op.execute(
        "ALTER TABLE pgqueue.jobs ALTER COLUMN queue DROP DEFAULT, "
        "ALTER COLUMN priority DROP DEFAULT, ALTER COLUMN max_attempts DROP DEFAULT"
    )
    op.execute(
        """
        DO $$
        BEGIN
            IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgqueue_observer') THEN
                GRANT SELECT ON pgqueue.tasks TO pgqueue_observer;
            END IF;
            IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgqueue_worker') THEN
                GRANT SELECT, INSERT, UPDATE, DELETE ON pgqueue.tasks TO pgqueue_worker;
            END IF;
        END
        $$
        """
    )


def downgrade() -> None:
    op.execute(
        "ALTER TABLE pgqueue.jobs ALTER COLUMN queue SET DEFAULT 'default', "
        "ALTER COLUMN priority SET DEFAULT 0, ALTER COLUMN max_attempts SET DEFAULT 3"
    )
    op.execute("DROP TRIGGER IF EXISTS jobs_fill_defaults ON pgqueue.jobs")
    op.execute("DROP FUNCTION IF EXISTS pgqueue.jobs_fill_defaults()")
    op.execute("ALTER TABLE pgqueue.workers DROP COLUMN IF EXISTS tasks")
    op.execute("DROP TABLE IF EXISTS pgqueue.tasks")
