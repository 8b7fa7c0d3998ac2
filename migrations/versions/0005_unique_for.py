"""Unique keys that stay taken for a while after their job finished (`unique_for`).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE pgqueue.jobs ADD COLUMN unique_for double precision, "
        "ADD COLUMN unique_until timestamptz"
    )
    # The key is held while the job is queued or running, and after it finished for as long
    # as unique_until is set (cleared once it has passed).
    op.execute("DROP INDEX pgqueue.jobs_unique_key_idx")
    op.execute(
        "CREATE UNIQUE INDEX jobs_unique_key_idx ON pgqueue.jobs (unique_key) "
        "WHERE unique_key IS NOT NULL "
        "AND (state IN ('queued', 'running') OR unique_until IS NOT NULL)"
    )


def downgrade() -> None:
    op.execute("DROP INDEX pgqueue.jobs_unique_key_idx")
    op.execute(
        "CREATE UNIQUE INDEX jobs_unique_key_idx ON pgqueue.jobs (unique_key) "
        "WHERE unique_key IS NOT NULL AND state IN ('queued', 'running')"
    )
    op.execute("ALTER TABLE pgqueue.jobs DROP COLUMN unique_for, DROP COLUMN unique_until")
