"""Finished jobs indexed by state, then finish time: pruning never walks the kept ones.

`jobs_finished_idx` (migration 0006) ordered every finished job by `finished_at` alone.
Pruning the successes past their day walked, oldest first, over every dead job still kept
for its two weeks: with a million of them, each batch of 1,000 took 0.8 s and pruning fell
behind any queue finishing more than a few hundred jobs a second. Keyed (state,
finished_at), each state's jobs past their retention are the start of their own range
(`job_prune` and `jobs purge` take one state at a time). The dashboard's reads of a window
of finished jobs use it as they used the old one. The index has as many entries as before.

Building it holds writes to `pgqueue.jobs` back for as long as it takes: about a second
per million finished jobs kept.

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None

FINAL = "WHERE state IN ('succeeded', 'dead', 'cancelled')"


def upgrade() -> None:
    op.execute("DROP INDEX IF EXISTS pgqueue.jobs_finished_idx")
    op.execute(f"CREATE INDEX jobs_finished_idx ON pgqueue.jobs (state, finished_at) {FINAL}")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS pgqueue.jobs_finished_idx")
    op.execute(f"CREATE INDEX jobs_finished_idx ON pgqueue.jobs (finished_at) {FINAL}")
