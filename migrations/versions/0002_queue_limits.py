"""Cluster-wide limits per queue: running-job concurrency and starts per period.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE pgqueue.queues
            ADD COLUMN concurrency_limit integer
                CONSTRAINT queues_concurrency_limit_check CHECK (concurrency_limit >= 0),
            ADD COLUMN rate_limit integer
                CONSTRAINT queues_rate_limit_check CHECK (rate_limit >= 0),
            ADD COLUMN rate_period double precision NOT NULL DEFAULT 1
                CONSTRAINT queues_rate_period_check CHECK (rate_period > 0)
        """
    )
    # Recent starts of rate-limited queues only (a sliding window, pruned as it slides).
    op.execute(
        """
        CREATE TABLE pgqueue.queue_starts (
            queue       text NOT NULL,
            started_at  timestamptz NOT NULL,
            n           integer NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX queue_starts_idx ON pgqueue.queue_starts (queue, started_at)")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS pgqueue.queue_starts")
    op.execute(
        "ALTER TABLE pgqueue.queues DROP COLUMN IF EXISTS concurrency_limit, "
        "DROP COLUMN IF EXISTS rate_limit, DROP COLUMN IF EXISTS rate_period"
    )
