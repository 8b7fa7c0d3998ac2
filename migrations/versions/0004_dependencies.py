"""Job dependencies: a job waits (run_at 9999-12-31) until every parent has succeeded.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE pgqueue.jobs ADD COLUMN depends_on bigint[]")
    # Children of a finishing job, found from the parent's id.
    op.execute(
        "CREATE INDEX jobs_depends_on_idx ON pgqueue.jobs USING gin (depends_on) "
        "WHERE depends_on IS NOT NULL AND state = 'queued'"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS pgqueue.jobs_depends_on_idx")
    op.execute("ALTER TABLE pgqueue.jobs DROP COLUMN IF EXISTS depends_on")
