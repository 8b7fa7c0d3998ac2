"""Claims through limited queues start each priority's range where its due jobs start.

Within one priority, `pgqueue.claim_limited` (migration 0013) read a queue's due jobs from
the first queued one on with a row comparison that included the priority. The B-tree could
not start the scan there: every claim walked the index entries left by the jobs claimed
since the last vacuum (dead, but still in the index until then), more at each claim. The
comparison now covers (run_at, id) after the priority, which positions the scan. The same
change was made to the plain claims (pgqueue/sql/claim.sql), which are not a function.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

WALKED = "AND (-j.priority::bigint, j.run_at, j.id) >= (g.rank, g.run_at, g.id)"
POSITIONED = "AND (j.run_at, j.id) >= (g.run_at, g.id)"


def _limited_claim() -> ModuleType:
    """Migration 0013's module: the text of pgqueue.claim_limited."""
    path = Path(__file__).with_name("0013_limited_claim_function.py")
    spec = importlib.util.spec_from_file_location("pgqueue_migration_0013", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade() -> None:
    function: str = _limited_claim().FUNCTION
    assert WALKED in function, "0013's function is not as expected"
    op.execute(function.replace(WALKED, POSITIONED))


def downgrade() -> None:
    op.execute(_limited_claim().FUNCTION)
