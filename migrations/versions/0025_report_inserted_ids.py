"""Enqueue by a role that may only INSERT: the insert trigger tells that session its ids.

`enqueue` returns the new job's id, which it read back with `RETURNING id`: that needs
SELECT on the column, so a role with INSERT on pgqueue.jobs and nothing more could insert by
plain SQL but not through the App. Such a role's enqueue now sets `pgqueue.report_ids` to
its statement's timestamp in the INSERT statement itself, and the wake-up trigger (which
already runs once per inserting statement, as its owner) then raises a NOTICE whose detail
lists the ids the statement inserted. A notice goes to the session that raised it and to no
other, and the trigger reports only to the statement that asked (a flag left over from an
earlier statement of the same transaction has another timestamp), so nobody learns more
than the ids of the rows they inserted themselves. The notice is raised whatever the
session's client_min_messages (set back when the trigger returns).

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-03
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def _module(name: str) -> ModuleType:
    path = Path(__file__).with_name(name)
    spec = importlib.util.spec_from_file_location(f"pgqueue_migration_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The function as migration 0015 left it (nothing changed it since).
PREVIOUS: str = _module("0015_wake_waiting.py").WAKE_TRIGGER
WAKE_UP = "    -- One wake-up per statement and queue"
REPORT = """    -- The ids for a statement that asked (migration 0025), to its own session only.
    IF current_setting('pgqueue.report_ids', true) = statement_timestamp()::text THEN
        PERFORM set_config('client_min_messages', 'notice', true);
        RAISE NOTICE 'pgqueue: jobs inserted' USING DETAIL = (
            SELECT coalesce(string_agg(n.id::text, ',' ORDER BY n.id), '') FROM new_rows AS n);
    END IF;
"""
TRIGGER = PREVIOUS.replace(WAKE_UP, REPORT + WAKE_UP, 1)
assert TRIGGER != PREVIOUS


def upgrade() -> None:
    op.execute(TRIGGER)


def downgrade() -> None:
    op.execute(PREVIOUS)
