"""Rows a worker cannot read back are refused at insert.

A producer may insert any values its INSERT right allows. A job whose timestamps lie beyond
what Python's datetime holds (`run_at = '-infinity'`, `created_at = 'infinity'`, a year 1 BC)
was claimed, and then the claim's rows could not be read: every job of that claim stayed
`running` for a live worker. One with `attempts` at the integer limit made every claim of
its queue fail ("integer out of range"). These checks keep such rows out: timestamps between
the year 2 and 9999-12-31 00:00 UTC (the sentinel `run_at` of jobs waiting on others), and
attempts below the integer limit.

They are added NOT VALID: nothing is scanned and existing rows stay as they are, while every
row written from now on, inserted or updated, is checked.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

LOW = "'0002-01-01 00:00:00+00'"
HIGH = "'9999-12-31 00:00:00+00'"
TIMESTAMPS = ("run_at", "created_at", "started_at", "finished_at", "unique_until")


def upgrade() -> None:
    checks = [
        f"ADD CONSTRAINT jobs_{column}_range CHECK ({column} BETWEEN {LOW} AND {HIGH}) NOT VALID"
        for column in TIMESTAMPS
    ]
    checks.append("ADD CONSTRAINT jobs_attempts_range CHECK (attempts < 2147483647) NOT VALID")
    op.execute("ALTER TABLE pgqueue.jobs " + ", ".join(checks))


def downgrade() -> None:
    names = [f"jobs_{column}_range" for column in TIMESTAMPS] + ["jobs_attempts_range"]
    op.execute(
        "ALTER TABLE pgqueue.jobs " + ", ".join(f"DROP CONSTRAINT IF EXISTS {n}" for n in names)
    )
