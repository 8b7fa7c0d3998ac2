"""Autovacuum works on pgqueue.jobs at full speed.

Every job leaves three or four dead row versions behind (its claim, its outcome, its
deletion when retention ends), about 70,000 a second from two busy workers. With the
server's default cost-based delay, autovacuum read the table at a few megabytes a second:
in a sustained run it had not finished its third pass when the table had grown to 740 MB
for 10,000 live jobs, and every claim and outcome paid for the dead rows. The table now
runs its autovacuum without the delay (and with a larger budget where a delay is set
elsewhere), as queue tables are usually tuned: vacuum of a table this hot is short work
done often. The rollups' change table, which churns with every statement, likewise.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

TABLES = ("pgqueue.jobs", "pgqueue.stats_changes")


def upgrade() -> None:
    for table in TABLES:
        op.execute(
            f"ALTER TABLE {table} SET "
            "(autovacuum_vacuum_cost_delay = 0, autovacuum_vacuum_cost_limit = 10000)"
        )


def downgrade() -> None:
    for table in TABLES:
        op.execute(
            f"ALTER TABLE {table} "
            "RESET (autovacuum_vacuum_cost_delay, autovacuum_vacuum_cost_limit)"
        )
