"""Producers free lapsed unique keys through a function, not an UPDATE right on the table.

An enqueue with a unique key first frees the keys of finished jobs whose `unique_for` window
has passed. Producers did that with an UPDATE, so `pgqueue migrate roles` granted them
UPDATE (unique_until) on `pgqueue.jobs`, and with it more than that statement: a producer
could set any job's `unique_until` (free a key inside its window, or pin a key for ever) and
lock any row (`SELECT ... FOR UPDATE` needs an UPDATE right), which froze a worker's outcome
writes and hid queued jobs from claims for as long as its transaction stayed open.

`pgqueue.release_unique_keys(keys)` does that one statement, with its owner's rights; nobody
but its owner may run it unless granted (pgqueue_producer and pgqueue_worker are). Once the
producers run this version, `pgqueue migrate roles` takes the UPDATE right back; this
migration leaves it, so producers of the previous version keep working in between.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE OR REPLACE FUNCTION pgqueue.release_unique_keys(keys text[]) RETURNS void
        LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
        AS $$
            UPDATE pgqueue.jobs SET unique_until = NULL
            WHERE unique_key = ANY(keys)
              AND unique_until IS NOT NULL AND unique_until <= now();
        $$;
        REVOKE EXECUTE ON FUNCTION pgqueue.release_unique_keys(text[]) FROM PUBLIC;
        DO $$
        BEGIN
            IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgqueue_producer') THEN
                GRANT EXECUTE ON FUNCTION pgqueue.release_unique_keys(text[])
                    TO pgqueue_producer;
            END IF;
            IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgqueue_worker') THEN
                GRANT EXECUTE ON FUNCTION pgqueue.release_unique_keys(text[]) TO pgqueue_worker;
            END IF;
        END
        $$;
        """
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS pgqueue.release_unique_keys(text[])")
