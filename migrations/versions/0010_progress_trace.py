"""Progress and trace context on jobs.

- `progress` (0..1) and `progress_message`: what a running handler last reported with
  `ctx.progress(fraction, message)`, written by its worker at most once a second.
- `trace_context`: the W3C trace context (traceparent, tracestate) current when the job was
  enqueued, for the worker's span to continue (`pgqueue[otel]`); NULL when none.

Nullable columns without defaults: adding them changes the catalog only, never the table's
rows, whatever its size.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE pgqueue.jobs ADD COLUMN progress double precision, "
        "ADD COLUMN progress_message text, ADD COLUMN trace_context jsonb"
    )
    # NOT VALID: every existing row has a NULL progress, so there is nothing to check, and
    # validating would scan the whole table under the ALTER's exclusive lock. New and updated
    # rows are checked all the same (a NaN fails it too).
    op.execute(
        "ALTER TABLE pgqueue.jobs ADD CONSTRAINT jobs_progress_range "
        "CHECK (progress >= 0 AND progress <= 1) NOT VALID"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE pgqueue.jobs DROP CONSTRAINT IF EXISTS jobs_progress_range")
    op.execute(
        "ALTER TABLE pgqueue.jobs DROP COLUMN IF EXISTS trace_context, "
        "DROP COLUMN IF EXISTS progress_message, DROP COLUMN IF EXISTS progress"
    )
