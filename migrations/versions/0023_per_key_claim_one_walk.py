"""Per-key claims walk the keys once around, and read the jobs without a key only when some may
be due.

A claim of a queue with a per-key limit (`pgqueue.claim_limited`) walked the keys after the
queue's cursor and, separately, the keys from the first up to the cursor: two recursive
reads, each written out twice (first step and next steps), in a statement whose every read
is set up at every call whether it runs or not. The walk is now one recursive read that goes
on from the first key when it passes the last one, and stops at the cursor: half the
statement's reads of the keys. It looks at no more than `p_keys` keys in all (before: that
many on each side of the cursor).

The jobs without a key were looked for at every claim, among the first due jobs of the
queue: 50 rows read and set aside in a queue whose jobs all have keys. They are now looked
for when the queue's floors are written (at most every 0.1 s while jobs are taken, at every
claim of an idle queue), and at every claim while the last look found some
(`pgqueue.claim_floors.keyless`). A job without a key that comes to the head of a busy queue
of keyed jobs waits 0.1 s more at most. And the queue's key cursor is written only when it
moves.

The function is built from migration 0018's text, with 0022's change.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-03
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

WALK_FROM = "        ), after_cursor AS ("
WALK_TO = "        ), candidates AS ("
LANE_START = "                        (SELECT qa.rank, qa.run_at, qa.id FROM qa)"
FLOORS_COLUMNS = "(queue, walked_at, written_at, rank, run_at, id, keys, ranks, run_ats, ids)"
FLOORS_VALUES = "SELECT keyed, coalesce((SELECT walked_at FROM fl)"
FLOORS_SET = "ids = excluded.ids"
FLOORS_READ = "SELECT f.walked_at, f.written_at,"
CURSOR_MOVED = "            WHERE qq.name = keyed\n        ), floored AS ("
# Where the floors are written: whether this claim found jobs without a key.
KEYLESS_FOUND = "EXISTS (SELECT 1 FROM candidates WHERE lap = 2)"


def _module(name: str) -> ModuleType:
    path = Path(__file__).with_name(name)
    spec = importlib.util.spec_from_file_location(f"pgqueue_migration_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def previous() -> str:
    """pgqueue.claim_limited as migration 0022 left it."""
    m18 = _module("0018_per_key_claim_floors.py")
    m22 = _module("0022_claim_lock_by_key.py")
    text: str = m18.function()
    assert m22.BEFORE in text, "0018's function is not as expected"
    return text.replace(m22.BEFORE, m22.AFTER)


def walk(m18: ModuleType) -> str:
    """The keys in order from the one after the cursor, then from the first key up to the
    cursor, each with its best queued job (m18.step). Its first row (the cursor) and the row
    where it goes round (after the last key) are marks, without a key's job; `walked` leaves
    them out. The bound at the cursor is checked on the key a step found: a step reads one
    entry past it at most."""
    return f"""        ), first_key AS (
            -- Where the walk goes on after the last key (read only if it gets there).
            {m18.step(None, None)}
        ), walk AS (
            SELECT 0 AS lap, (SELECT cursor FROM q) AS key, NULL::integer AS priority,
                   NULL::timestamptz AS run_at, NULL::bigint AS id, true AS mark
            UNION ALL
            SELECT nx.lap, nx.key, nx.priority, nx.run_at, nx.id, nx.mark
            FROM walk AS w
            CROSS JOIN LATERAL (
                (SELECT w.lap, s.key, s.priority, s.run_at, s.id, false AS mark
                 FROM ({m18.step("w.key", None)}) AS s
                 WHERE NOT (w.lap = 1 AND w.mark))
                UNION ALL
                (SELECT 1, f.key, f.priority, f.run_at, f.id, false
                 FROM first_key AS f WHERE w.lap = 1 AND w.mark)
                UNION ALL
                (SELECT 1, NULL, NULL, NULL, NULL, true WHERE w.lap = 0)
                LIMIT 1
            ) AS nx
            WHERE nx.lap = 0 OR nx.mark OR nx.key <= (SELECT cursor FROM q)
        ), walked AS (
            SELECT w.lap, w.key, w.priority, w.run_at, w.id FROM walk AS w
            WHERE NOT w.mark
            LIMIT p_keys
        ), lane AS (
            -- Whether to look for jobs without a key: unless the floors were written a
            -- moment ago by a claim that found none.
            SELECT NOT EXISTS (
                SELECT 1 FROM fl
                WHERE fl.written_at > clock_timestamp() - interval '{m18.FLOOR_REFRESH}'
                  AND NOT fl.keyless) AS open
"""


def function() -> str:
    m18 = _module("0018_per_key_claim_floors.py")
    text = previous()
    start, end = text.index(WALK_FROM), text.index(WALK_TO)
    text = text[:start] + walk(m18) + text[end:]
    for old, new in (
        (LANE_START, LANE_START[:-1] + " WHERE (SELECT open FROM lane))"),
        (FLOORS_READ, FLOORS_READ.replace("f.walked_at,", "f.walked_at, f.keyless,")),
        (FLOORS_COLUMNS, FLOORS_COLUMNS.replace("(queue,", "(queue, keyless,")),
        (FLOORS_VALUES, FLOORS_VALUES.replace("keyed,", f"keyed, {KEYLESS_FOUND},\n" + " " * 18)),
        (FLOORS_SET, FLOORS_SET + ",\n                keyless = excluded.keyless"),
        # A cursor that stays where it was is not written again (one key's backlog: every
        # claim ends on the same key).
        (
            CURSOR_MOVED,
            CURSOR_MOVED.replace("keyed\n", "keyed AND qq.key_cursor IS DISTINCT FROM last.key\n"),
        ),
    ):
        assert text.count(old) == 1, f"0022's function is not as expected: {old!r}"
        text = text.replace(old, new)
    return text


def upgrade() -> None:
    # Until a claim writes the floors again, jobs without a key are looked for.
    op.execute("ALTER TABLE pgqueue.claim_floors ADD COLUMN keyless boolean NOT NULL DEFAULT true")
    op.execute(function())


def downgrade() -> None:
    op.execute(previous())
    op.execute("ALTER TABLE pgqueue.claim_floors DROP COLUMN keyless")
