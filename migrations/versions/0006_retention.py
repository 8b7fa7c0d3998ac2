"""Retention: per-queue overrides, and an index that finds old finished jobs.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE pgqueue.queues "
        "ADD COLUMN retain_succeeded double precision, "
        "ADD COLUMN retain_dead double precision, "
        "ADD COLUMN retain_cancelled double precision"
    )
    # Pruning walks finished jobs oldest first and stops at the retention horizon.
    op.execute(
        "CREATE INDEX jobs_finished_idx ON pgqueue.jobs (finished_at) "
        "WHERE state IN ('succeeded', 'dead', 'cancelled')"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS pgqueue.jobs_finished_idx")
    op.execute(
        "ALTER TABLE pgqueue.queues DROP COLUMN retain_succeeded, DROP COLUMN retain_dead, "
        "DROP COLUMN retain_cancelled"
    )
