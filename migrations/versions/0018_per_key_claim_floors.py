"""Claims of a queue with a per-key limit start where the previous claims stood.

A claim of such a queue (`pgqueue.claim_limited`) found each key's best queued job, and the
queue's first queued job for the jobs without a key, by reading its index from the start
of the key (of the queue). The jobs claimed since the last vacuum leave dead entries there,
and every claim read all of them again: draining one key's backlog of 100,000 jobs, a claim
read about 1,300 index pages (7 ms) by the end, and the drain ran at half the rate of the
same jobs without keys.

`pgqueue.claim_floors` now holds, per such queue, where the claims stood: the queue's first
queued job and each recently walked key's best queued job, as found by the last claim.
Claims of the queue take turns on its lock, so the row is theirs alone. The next claim
starts each of those reads there, past the dead entries, and a key the floors do not know
is found as before. A job can land behind a floor: one inserted by a transaction that
committed late, one retried or rescued with an earlier run_at than the floor's job. So the
floors serve for a second after a claim that read from the start, then a claim reads from
the start again and sets them anew: such a job waits a second at most.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

FLOOR_KEYS = 64  # keys whose floor is kept, at most (the row is rewritten at every claim)
FLOOR_LIFE = "1 second"  # how long floors serve before a claim reads from the start again
# Floors younger than this are not written again: a floor a little behind costs a few dead
# entries read, and the row is not rewritten at every claim.
FLOOR_REFRESH = "0.1 second"

# Each read of the claim is made for an index whose order is the one asked for. Without
# statistics (a table filled and not analysed yet) every plan looks equally cheap, and the
# walk over keys took the claim index, filtered it by key and sorted: every step read the
# whole queue (40 ms a claim with 30,000 jobs). A sort is costed as a last resort instead.
JIT_OFF = "SET jit = off\n"
SORT_OFF = "SET enable_sort = off\n"

KEYS_WALKED = "        ), walked AS ("
KEYLESS = "            UNION ALL\n            SELECT c.id, 2 AS lap, NULL AS key,"
CHOSEN = "        ), chosen AS ("
RECORDED = "        ), recorded AS ("
ORDER = "ORDER BY j.concurrency_key, -j.priority::bigint, j.run_at, j.id"
QUEUED_KEYED = "j.state = 'queued' AND j.queue = keyed"


def _module(name: str) -> ModuleType:
    path = Path(__file__).with_name(name)
    spec = importlib.util.spec_from_file_location(f"pgqueue_migration_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def from_floor(key: str, floor: str) -> str:
    """The best queued job of key `key` at or after `floor` (a row with rank, run_at, id),
    in claim order. Better priorities than the floor's are read from their start: a job of
    one may have come since."""
    return f"""SELECT x.priority, x.run_at, x.id FROM (
                    (SELECT j.priority, j.run_at, j.id FROM pgqueue.jobs AS j
                     WHERE {QUEUED_KEYED} AND j.concurrency_key = {key}
                       AND -j.priority::bigint < {floor}.rank
                     {ORDER} LIMIT 1)
                    UNION ALL
                    (SELECT j.priority, j.run_at, j.id FROM pgqueue.jobs AS j
                     WHERE {QUEUED_KEYED} AND j.concurrency_key = {key}
                       AND -j.priority::bigint = {floor}.rank
                       AND (j.run_at, j.id) >= ({floor}.run_at, {floor}.id)
                     {ORDER} LIMIT 1)
                    UNION ALL
                    (SELECT j.priority, j.run_at, j.id FROM pgqueue.jobs AS j
                     WHERE {QUEUED_KEYED} AND j.concurrency_key = {key}
                       AND -j.priority::bigint > {floor}.rank
                     {ORDER} LIMIT 1)
                ) AS x
                ORDER BY -x.priority::bigint, x.run_at, x.id LIMIT 1"""


def step(after: str | None, upto: str | None) -> str:
    """A step of the walk over keys: the first key after `after` (None: from the first) and
    up to `upto` (None: to the last) with its best queued job, due or not.

    Up to the first key with a floor, the index is read as before (keys the floors do not
    know). At that key, the read stops at its first entry (the scan's upper bound), and the
    key's best job is looked for from its floor; a key with nothing queued from its floor
    on is still a step (with no job), so the walk goes on after it."""
    above = f"j.concurrency_key > {after}" if after else "j.concurrency_key IS NOT NULL"
    known_above = f"kf.key > {after}" if after else "true"
    upto_j = f" AND j.concurrency_key <= {upto}" if upto else ""
    upto_k = f" AND kf.key <= {upto}" if upto else ""
    return f"""SELECT s.key, s.priority, s.run_at, s.id
            FROM (SELECT min(kf.key) AS nk FROM kf WHERE {known_above}{upto_k}) AS n
            CROSS JOIN LATERAL (
                (SELECT j.concurrency_key AS key, j.priority, j.run_at, j.id
                 FROM pgqueue.jobs AS j
                 WHERE {QUEUED_KEYED} AND {above}{upto_j} AND n.nk IS NULL
                 {ORDER} LIMIT 1)
                UNION ALL
                (SELECT j.concurrency_key AS key, j.priority, j.run_at, j.id
                 FROM pgqueue.jobs AS j
                 WHERE {QUEUED_KEYED} AND {above} AND j.concurrency_key < n.nk
                 {ORDER} LIMIT 1)
                UNION ALL
                (SELECT kf.key, b.priority, b.run_at, b.id FROM kf
                 LEFT JOIN LATERAL ({from_floor("kf.key", "kf")}) AS b ON true
                 WHERE kf.key = n.nk)
                LIMIT 1
            ) AS s"""


def per_key_claim(m13: ModuleType) -> str:
    """Migration 0013's claim of one queue with a per-key limit, its reads started at the
    floors, and the floors written back. The keys' candidates and everything from the
    choice of jobs on are 0013's text. A walked key with nothing from its floor on (no job)
    gives no candidate: its row comparison is NULL."""
    old: str = m13.CLAIM_PER_KEY
    head = f"""
        RETURN QUERY
        WITH RECURSIVE q AS (
            SELECT q.name, q.per_key_limit, q.rate_limit, coalesce(q.key_cursor, '') AS cursor,
                   {m13.BUDGET.format(want="wanted")} AS n
            FROM pgqueue.queues AS q
            WHERE q.name = keyed AND q.per_key_limit IS NOT NULL
        ), fl AS (
            -- The floors, while they serve.
            SELECT f.walked_at, f.written_at, f.rank, f.run_at, f.id, f.keys, f.ranks,
                   f.run_ats, f.ids
            FROM pgqueue.claim_floors AS f
            WHERE f.queue = keyed AND f.walked_at > clock_timestamp() - interval '{FLOOR_LIFE}'
        ), kf AS (
            SELECT u.key, u.rank, u.run_at, u.id
            FROM fl CROSS JOIN LATERAL unnest(fl.keys, fl.ranks, fl.run_ats, fl.ids)
                AS u(key, rank, run_at, id)
        ), qa AS (
            -- The queue's first queued job (any key), read from the queue's floor (without
            -- one, the rank is the lowest bigint: before every job).
            SELECT x.rank, x.run_at, x.id FROM (
                SELECT coalesce((SELECT rank FROM fl), '-9223372036854775808'::bigint) AS rank,
                       coalesce((SELECT run_at FROM fl), '-infinity') AS run_at,
                       coalesce((SELECT id FROM fl), 0) AS id
            ) AS f
            CROSS JOIN LATERAL (
                (SELECT -j.priority::bigint AS rank, j.run_at, j.id FROM pgqueue.jobs AS j
                 WHERE j.state = 'queued' AND j.queue = keyed AND -j.priority::bigint < f.rank
                 ORDER BY -j.priority::bigint, j.run_at, j.id LIMIT 1)
                UNION ALL
                (SELECT -j.priority::bigint AS rank, j.run_at, j.id FROM pgqueue.jobs AS j
                 WHERE j.state = 'queued' AND j.queue = keyed AND -j.priority::bigint = f.rank
                   AND (j.run_at, j.id) >= (f.run_at, f.id)
                 ORDER BY -j.priority::bigint, j.run_at, j.id LIMIT 1)
                UNION ALL
                (SELECT -j.priority::bigint AS rank, j.run_at, j.id FROM pgqueue.jobs AS j
                 WHERE j.state = 'queued' AND j.queue = keyed AND -j.priority::bigint > f.rank
                 ORDER BY -j.priority::bigint, j.run_at, j.id LIMIT 1)
            ) AS x
            ORDER BY x.rank, x.run_at, x.id LIMIT 1
        ), after_cursor AS (
            ({step("(SELECT cursor FROM q)", None)})
            UNION ALL
            SELECT nx.key, nx.priority, nx.run_at, nx.id
            FROM after_cursor AS a
            CROSS JOIN LATERAL ({step("a.key", None)}) AS nx
        ), from_start AS (
            ({step(None, "(SELECT cursor FROM q)")})
            UNION ALL
            SELECT nx.key, nx.priority, nx.run_at, nx.id
            FROM from_start AS f
            CROSS JOIN LATERAL ({step("f.key", "(SELECT cursor FROM q)")}) AS nx
"""
    keyless = f"""            UNION ALL
            SELECT c.id, 2 AS lap, NULL AS key,
                   row_number() OVER (ORDER BY c.priority DESC, c.run_at, c.id) AS turn
            FROM q
            CROSS JOIN LATERAL (
                -- Jobs without a key: among the first p_keyless_scan due jobs of the queue,
                -- read one priority at a time from the queue's first queued job (qa).
                SELECT h.id, h.priority, h.run_at FROM (
                    WITH RECURSIVE g AS (
                        (SELECT qa.rank, qa.run_at, qa.id FROM qa)
                        UNION ALL
                        SELECT nx.rank, nx.run_at, nx.id FROM g
                        CROSS JOIN LATERAL (
                            SELECT -j.priority::bigint AS rank, j.run_at, j.id
                            FROM pgqueue.jobs AS j
                            WHERE j.state = 'queued' AND j.queue = keyed
                              AND -j.priority::bigint > g.rank
                            ORDER BY -j.priority::bigint, j.run_at, j.id LIMIT 1
                        ) AS nx
                    )
                    SELECT d.id, d.priority, d.run_at, d.concurrency_key FROM g
                    CROSS JOIN LATERAL (
                        SELECT j.id, j.priority, j.run_at, j.concurrency_key
                        FROM pgqueue.jobs AS j
                        WHERE j.state = 'queued' AND j.queue = keyed
                          AND -j.priority::bigint = g.rank
                          AND (j.run_at, j.id) >= (g.run_at, g.id)
                          AND j.run_at <= coalesce(p_now, now()) AND {m13.TASKS}
                        ORDER BY -j.priority::bigint, j.run_at, j.id
                        LIMIT p_keyless_scan
                    ) AS d
                    LIMIT p_keyless_scan
                ) AS h
                WHERE h.concurrency_key IS NULL
                ORDER BY h.priority DESC, h.run_at, h.id
                LIMIT greatest(q.n, 0)
            ) AS c
"""
    floored = f"""        ), floored AS (
            -- Where this claim found the queue's first job and each walked key's best job
            -- (a key with nothing from its floor on keeps its floor), unless the floors
            -- were written a moment ago or this claim took nothing. The time the floors
            -- were last read from the start carries over while they serve.
            INSERT INTO pgqueue.claim_floors AS cf
                (queue, walked_at, written_at, rank, run_at, id, keys, ranks, run_ats, ids)
            SELECT keyed, coalesce((SELECT walked_at FROM fl), clock_timestamp()),
                   clock_timestamp(),
                   (SELECT rank FROM qa), (SELECT run_at FROM qa), (SELECT id FROM qa),
                   coalesce(array_agg(k.key ORDER BY k.key), '{{}}'),
                   coalesce(array_agg(k.rank ORDER BY k.key), '{{}}'),
                   coalesce(array_agg(k.run_at ORDER BY k.key), '{{}}'),
                   coalesce(array_agg(k.id ORDER BY k.key), '{{}}')
            FROM (
                SELECT w.key,
                       coalesce(-w.priority::bigint, kf.rank) AS rank,
                       coalesce(w.run_at, kf.run_at) AS run_at,
                       coalesce(w.id, kf.id) AS id
                FROM walked AS w LEFT JOIN kf ON kf.key = w.key
                WHERE w.id IS NOT NULL OR kf.key IS NOT NULL
                ORDER BY w.lap, w.key
                LIMIT {FLOOR_KEYS}
            ) AS k
            HAVING NOT EXISTS (
                SELECT 1 FROM fl
                WHERE fl.written_at > clock_timestamp() - interval '{FLOOR_REFRESH}')
              -- A claim that took nothing moved nothing: an idle queue's polls write the
              -- floors only when they expire.
              AND (NOT EXISTS (SELECT 1 FROM fl) OR EXISTS (SELECT 1 FROM chosen))
            ON CONFLICT (queue) DO UPDATE
            SET walked_at = excluded.walked_at, written_at = excluded.written_at,
                rank = excluded.rank,
                run_at = excluded.run_at, id = excluded.id, keys = excluded.keys,
                ranks = excluded.ranks, run_ats = excluded.run_ats, ids = excluded.ids
"""
    return (
        head
        + old[old.index(KEYS_WALKED) : old.index(KEYLESS)]
        + keyless
        + old[old.index(CHOSEN) : old.index(RECORDED)]
        + floored
        + old[old.index(RECORDED) :]
    )


def function() -> str:
    """pgqueue.claim_limited as migration 0016 left it, with the per-key claim above."""
    m13 = _module("0013_limited_claim_function.py")
    m16 = _module("0016_claim_range_start.py")
    text: str = m13.FUNCTION
    assert m13.CLAIM_PER_KEY in text, "0013's function is not as expected"
    text = text.replace(m13.CLAIM_PER_KEY, per_key_claim(m13))
    assert m16.WALKED in text and JIT_OFF in text, "0013's function is not as expected"
    return text.replace(m16.WALKED, m16.POSITIONED).replace(JIT_OFF, JIT_OFF + SORT_OFF)


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE pgqueue.claim_floors (
            queue text PRIMARY KEY,
            -- When a claim last read the queue's keys from the start; the floors serve
            -- until a second after it.
            walked_at timestamptz NOT NULL,
            written_at timestamptz NOT NULL,
            -- The queue's first queued job (its place in the claim order).
            rank bigint,
            run_at timestamptz,
            id bigint,
            -- Per key, its best queued job (in key order).
            keys text[] NOT NULL,
            ranks bigint[] NOT NULL,
            run_ats timestamptz[] NOT NULL,
            ids bigint[] NOT NULL
        )
        """
    )
    op.execute(function())


def downgrade() -> None:
    m16 = _module("0016_claim_range_start.py")
    m16.upgrade()
    op.execute("DROP TABLE IF EXISTS pgqueue.claim_floors")
