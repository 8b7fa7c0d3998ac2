"""Notifications are hints, cancel is a column.

- The insert trigger goes back to a plain statement-level wake-up: no job is handed over in
  the producer's transaction any more (that needed a SECURITY DEFINER function that trusted
  its input, notifications that carried job rows, and attempts charged before any work
  started). Workers always claim from the table. `pgqueue.worker_slots` goes.
- The wake-up carries the queue name only, and '*' for a name too long for a notification,
  so no insert can fail on the payload limit.
- `cancel_requested_at`: a cancel of a running job is stored on its row. The worker reads it
  on a notification (a hint), on every heartbeat and after reconnecting; the rescue and the
  outcome write honour it, so no cancel is lost with a notification.
- No function of the schema is executable by PUBLIC.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

WAKE_TRIGGER = """
CREATE OR REPLACE FUNCTION pgqueue.jobs_notify_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- One wake-up per statement and queue; a hint only: workers claim from the table.
    PERFORM pg_notify('pgqueue_jobs',
                      CASE WHEN octet_length(q.queue) <= 200 THEN q.queue ELSE '*' END)
    FROM (SELECT DISTINCT n.queue FROM new_rows AS n WHERE n.state = 'queued') AS q;
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.execute(WAKE_TRIGGER)
    op.execute("DROP TABLE IF EXISTS pgqueue.worker_slots")
    op.execute("ALTER TABLE pgqueue.jobs ADD COLUMN cancel_requested_at timestamptz")
    op.execute("REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA pgqueue FROM PUBLIC")


def _push_migration() -> object:
    path = Path(__file__).with_name("0007_push.py")
    spec = importlib.util.spec_from_file_location("pgqueue_migration_0007", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def downgrade() -> None:
    op.execute("ALTER TABLE pgqueue.jobs DROP COLUMN IF EXISTS cancel_requested_at")
    push: object = _push_migration()
    push.upgrade()  # type: ignore[attr-defined]
