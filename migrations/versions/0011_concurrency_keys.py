"""Per-key concurrency: `jobs.concurrency_key`, and a queue's cap on running jobs per key.

- `jobs.concurrency_key` (e.g. 'customer:42'): jobs of one key in a queue with a per-key
  limit run at most `queues.per_key_limit` at once, cluster-wide, and keys take turns.
- `queues.key_cursor`: the key served last, so the next claim starts after it (round robin
  across claims and workers).
- Two partial indexes, over keyed jobs only: the claim walks the queued ones key by key, and
  counts the running ones per key. Jobs without a key add nothing to either.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable, no default: the catalog changes, the rows are not rewritten.
    op.execute("ALTER TABLE pgqueue.jobs ADD COLUMN concurrency_key text")
    op.execute(
        "ALTER TABLE pgqueue.queues ADD COLUMN per_key_limit integer "
        "CONSTRAINT queues_per_key_limit_check CHECK (per_key_limit > 0), "
        "ADD COLUMN key_cursor text"
    )
    op.execute(
        "CREATE INDEX jobs_key_claim_idx ON pgqueue.jobs "
        "(queue, concurrency_key, priority DESC, run_at, id) "
        "WHERE state = 'queued' AND concurrency_key IS NOT NULL"
    )
    op.execute(
        "CREATE INDEX jobs_key_running_idx ON pgqueue.jobs (queue, concurrency_key) "
        "WHERE state = 'running' AND concurrency_key IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS pgqueue.jobs_key_running_idx")
    op.execute("DROP INDEX IF EXISTS pgqueue.jobs_key_claim_idx")
    op.execute(
        "ALTER TABLE pgqueue.queues DROP COLUMN IF EXISTS key_cursor, "
        "DROP COLUMN IF EXISTS per_key_limit"
    )
    op.execute("ALTER TABLE pgqueue.jobs DROP COLUMN IF EXISTS concurrency_key")
