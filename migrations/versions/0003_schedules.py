"""Periodic schedules: one row per declared cron task, with the last fire time enqueued.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # last_fire_at is the compare-and-set point: a node enqueues fire time T only by moving
    # it forward to T in the same transaction, so each fire time enqueues one job.
    op.execute(
        """
        CREATE TABLE pgqueue.schedules (
            name          text PRIMARY KEY,
            task          text NOT NULL,
            cron          text NOT NULL,
            timezone      text NOT NULL DEFAULT 'UTC',
            args          jsonb NOT NULL DEFAULT '[]',
            kwargs        jsonb NOT NULL DEFAULT '{}',
            queue         text,
            priority      integer,
            last_fire_at  timestamptz,
            last_job_id   bigint,
            next_fire_at  timestamptz,
            updated_at    timestamptz NOT NULL DEFAULT now()
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS pgqueue.schedules")
