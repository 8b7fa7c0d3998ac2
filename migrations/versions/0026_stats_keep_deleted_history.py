"""Deleting finished jobs takes them out of the counts, not out of the history.

The statistics triggers (migration 0014) counted a deleted finished job out of everything:
the jobs in the table, and the minute it finished in. So retention 0 (finished jobs deleted
as they finish), `pgqueue jobs purge` or pruning within the hour erased the work done from
the figures that describe work done: a queue whose jobs were deleted at completion showed a
throughput of 0, an empty throughput chart and no latency, and the outcome and histogram
series of /metrics went down when rows were deleted. Now a delete takes a finished job out
of the totals only (`stats_totals`: jobs in the table, by state); the per-minute figures
(`stats_minutes`, `stats_series`: what finished in each minute, how long it waited and ran)
keep it until their minute expires, as they would had the row stayed.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-03
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def _module(name: str) -> ModuleType:
    path = Path(__file__).with_name(name)
    spec = importlib.util.spec_from_file_location(f"pgqueue_migration_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ROLLUPS = _module("0014_stats_rollups.py")
# The function as migration 0014 left it (nothing changed it since).
PREVIOUS: str = ROLLUPS.COUNT_CHANGES.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
# A delete: every row out of the totals only. LIVE counts a row in no minute unless it is
# queued for a later one (the scheduled figure), so a finished job leaves its minute alone.
DELETED = f"""
    ELSIF TG_OP = 'DELETE' THEN
        -- Deleted rows leave the totals; what finished keeps its minute (migration 0026).
        {ROLLUPS.LIVE.format(source=ROLLUPS.REMOVED_LIVE)};
    END IF;"""
_start = PREVIOUS.index("    ELSIF TG_OP = 'DELETE' THEN")
_end = PREVIOUS.index("    END IF;\n    RETURN NULL;")
FUNCTION = PREVIOUS[:_start] + DELETED.lstrip("\n") + PREVIOUS[_end + len("    END IF;") :]
assert FUNCTION.count("TG_OP = 'DELETE'") == 1 and FUNCTION != PREVIOUS


def upgrade() -> None:
    op.execute(FUNCTION)


def downgrade() -> None:
    op.execute(PREVIOUS)
