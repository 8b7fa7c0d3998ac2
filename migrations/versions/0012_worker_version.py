"""The pgqueue version each worker runs (`workers.version`), for the dashboard's workers view
and for spotting a node left behind in a rolling deploy.

A nullable column without a default on a small table.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE pgqueue.workers ADD COLUMN version text")


def downgrade() -> None:
    op.execute("ALTER TABLE pgqueue.workers DROP COLUMN IF EXISTS version")
