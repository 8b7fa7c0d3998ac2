"""Per-key claims lock their chosen jobs through the primary key, whatever the statistics.

`pgqueue.claim_limited` locks each job it chose with `WHERE j.id = c.id AND j.state =
'queued'`. The condition on state matches the predicate of the partial indexes of queued
jobs, so the planner may read one of them instead of the primary key; once `jobs` had been
analysed while it held mostly finished jobs (the common case with a day's retention), those
indexes looked empty and it did: each lookup read the whole run_at index. Draining 20,000
keyed jobs took 40 s instead of 0.6 s (500-job claims of 1.9 s each). The same test written
as `(j.state = 'queued') IS TRUE` means the same and matches no index predicate: the lookup
goes by primary key.

The function is rewritten in place from its current definition, changing that line only.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

BEFORE = "WHERE j.id = c.id AND j.state = 'queued'"
AFTER = "WHERE j.id = c.id AND (j.state = 'queued') IS TRUE"

REWRITE = """
DO $rewrite$
DECLARE
    definition text := pg_get_functiondef(
        'pgqueue.claim_limited(uuid, text[], integer, text[], timestamptz, integer, integer)'
        ::regprocedure);
BEGIN
    IF position(%(old)s IN definition) = 0 THEN
        RAISE EXCEPTION 'pgqueue.claim_limited does not read as expected';
    END IF;
    EXECUTE replace(definition, %(old)s, %(new)s);
END
$rewrite$;
"""


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def upgrade() -> None:
    op.execute(REWRITE % {"old": _quote(BEFORE), "new": _quote(AFTER)})


def downgrade() -> None:
    op.execute(REWRITE % {"old": _quote(AFTER), "new": _quote(BEFORE)})
