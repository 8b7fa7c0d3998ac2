"""Per-key claims take one key's jobs like a plain claim when the walk finds one key with jobs.

A claim of a queue with a per-key limit (`pgqueue.claim_limited`) walked the keys, set
each walked key's jobs in turns, sorted the turns, and then locked the chosen jobs one
primary-key lookup at a time: the work of sharing a claim between keys, paid in full when
only one key had due jobs (one tenant's backlog, the common case). The walk is now a
statement of its own. When it finds one key with due jobs, and the jobs without a key need
not be looked for, the claim reads that key's range of the claim index from the walk's job
on, `FOR UPDATE SKIP LOCKED`, as a plain claim reads its queue: no turns, no sort, no second
lookup, and a job locked by someone else is stepped over instead of leaving the claim short.
Otherwise (several keys, jobs without a key, floors to write) the claim is the one of
migration 0023, given the keys the walk found (passed as arrays) rather than walking again.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-03
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

LANE = "        ), lane AS ("
LOOP_START = "    FOREACH keyed IN ARRAY per_key LOOP\n        EXIT WHEN wanted <= 0;\n"
SHARED = "        RETURN QUERY\n        WITH RECURSIVE q AS ("
SHARED_END = "        SELECT * FROM claimed;\n        GET DIAGNOSTICS got = ROW_COUNT;\n"
QA_FROM = "        ), qa AS ("
QA_TO = "        ), first_key AS ("
WALK_END = "        ), candidates AS ("
DECLARED = "    got bigint;\n"
CLAIMED_COLUMNS = (
    "            RETURNING j.id, j.queue, j.task, j.args::text, nullif(j.kwargs, '{}')::text,"
    " j.priority,\n"
    "              j.run_at, j.attempts, j.max_attempts, j.unique_key, j.timeout, j.created_at,\n"
    "              j.started_at, j.trace_context, j.concurrency_key\n"
)
DUE = """j.run_at <= coalesce(p_now, now()) AND (p_tasks IS NULL OR j.task = ANY(p_tasks)
               OR NOT EXISTS (SELECT 1 FROM pgqueue.tasks AS t WHERE t.name = j.task))"""

# The walk's outcome, in the function's variables (named apart from every column).
VARIABLES = """    one_n integer;  -- the queue's budget for this claim (limits, rate)
    one_cap integer;  -- per_key_limit
    one_rate integer;  -- rate_limit
    one_lane boolean;  -- whether jobs without a key are to be looked for
    one_keys bigint;  -- walked keys with a queued job
    one_key text;  -- the one key, when one_keys = 1, and its first job
    one_priority integer;
    one_run_at timestamptz;
    one_id bigint;
    walk_laps integer[];  -- every walked key (with a job or not, as 0023's walked)
    walk_keys text[];
    walk_priorities integer[];
    walk_run_ats timestamptz[];
    walk_ids bigint[];
"""

WALK_RESULT = """        )
        SELECT q.n, q.per_key_limit, q.rate_limit, (SELECT open FROM lane),
               k.keys, k.key, k.priority, k.run_at, k.id,
               k.laps, k.all_keys, k.priorities, k.run_ats, k.ids
          INTO one_n, one_cap, one_rate, one_lane, one_keys, one_key, one_priority, one_run_at,
               one_id, walk_laps, walk_keys, walk_priorities, walk_run_ats, walk_ids
        FROM q CROSS JOIN (
            SELECT count(w.id) AS keys,
                   min(w.key) FILTER (WHERE w.id IS NOT NULL) AS key,
                   min(w.priority) AS priority, min(w.run_at) AS run_at, min(w.id) AS id,
                   array_agg(w.lap) AS laps, array_agg(w.key) AS all_keys,
                   array_agg(w.priority) AS priorities, array_agg(w.run_at) AS run_ats,
                   array_agg(w.id) AS ids
            FROM walked AS w
        ) AS k;
"""

# The shared claim takes the walk's keys from the walk statement instead of walking again.
WALKED = """        ), walked AS (
            -- The keys the walk statement found, each with its best queued job (if any).
            SELECT w.lap, w.key, w.priority, w.run_at, w.id
            FROM unnest(walk_laps, walk_keys, walk_priorities, walk_run_ats, walk_ids)
                AS w(lap, key, priority, run_at, id)
"""

ONE_KEY = f"""        RETURN QUERY
        WITH picked AS (
            -- The key's range of the claim index from the walk's job on, as a plain claim
            -- reads its queue; the cap counts the key's running jobs after the queue lock.
            SELECT j.id FROM pgqueue.jobs AS j
            WHERE j.state = 'queued' AND j.queue = keyed AND j.concurrency_key = one_key
              AND (-j.priority::bigint, j.run_at, j.id)
                  >= (-one_priority::bigint, one_run_at, one_id)
              AND {DUE}
            ORDER BY j.concurrency_key, -j.priority::bigint, j.run_at, j.id
            LIMIT (SELECT greatest(0, least(one_n, one_cap - count(*)))
                   FROM pgqueue.jobs AS r
                   WHERE r.state = 'running' AND r.queue = keyed
                     AND r.concurrency_key = one_key)
            FOR UPDATE SKIP LOCKED
        ), claimed AS (
            UPDATE pgqueue.jobs AS j
            SET state = 'running',
                attempts = j.attempts + 1,
                worker_id = p_worker_id,
                started_at = coalesce(p_now, clock_timestamp())
            WHERE j.id = ANY(ARRAY(SELECT id FROM picked))
{CLAIMED_COLUMNS}        ), moved AS (
            UPDATE pgqueue.queues AS qq SET key_cursor = one_key
            WHERE qq.name = keyed AND qq.key_cursor IS DISTINCT FROM one_key
              AND EXISTS (SELECT 1 FROM picked)
        ), recorded AS (
            INSERT INTO pgqueue.queue_starts (queue, started_at, n)
            SELECT keyed, clock_timestamp(), count(*)
            FROM claimed
            WHERE one_rate IS NOT NULL
            HAVING count(*) > 0
        ), forgotten AS (
            DELETE FROM pgqueue.queue_starts AS s
            USING pgqueue.queues AS qq
            WHERE s.queue = qq.name AND qq.name = keyed
              AND s.started_at < clock_timestamp() - make_interval(secs => qq.rate_period)
        )
        SELECT * FROM claimed;
"""


def _module(name: str) -> ModuleType:
    path = Path(__file__).with_name(name)
    spec = importlib.util.spec_from_file_location(f"pgqueue_migration_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def previous() -> str:
    """pgqueue.claim_limited as migration 0023 left it."""
    text: str = _module("0023_per_key_claim_one_walk.py").function()
    return text


def function() -> str:
    text = previous()
    for mark in (LOOP_START, SHARED, QA_FROM, QA_TO, LANE, WALK_END, DECLARED):
        assert text.count(mark) == 1, f"0023's function is not as expected: {mark!r}"
    assert CLAIMED_COLUMNS in text and DUE in text, "0023's function is not as expected"
    start = text.index(SHARED)
    end = text.index(SHARED_END, start)
    shared = text[start:end]  # 0023's claim, from RETURN QUERY to its SELECT
    shared = shared[: shared.index(QA_TO)] + WALKED + shared[shared.index(LANE) :]
    # The walk: 0023's reads up to the lane, without the queue's first job (qa), which only
    # the jobs without a key and the floors need.
    walk = (
        text[start + len("        RETURN QUERY\n") : text.index(QA_FROM)]
        + text[text.index(QA_TO) : text.index(WALK_END)]
        + WALK_RESULT
    )
    body = (
        "        -- The walk first. One key with due jobs, and no jobs without a key to look\n"
        "        -- for (the floors were written a moment ago): that key's jobs are claimed\n"
        "        -- as a plain claim takes its queue's. Otherwise the shared claim, with the\n"
        "        -- keys this walk found.\n"
        + walk
        + "        IF one_keys = 1 AND one_lane IS FALSE AND one_n > 0 THEN\n"
        + _indent(ONE_KEY)
        + "        ELSE\n"
        + _indent(shared + "        SELECT * FROM claimed;\n")
        + "        END IF;\n"
    )
    text = text[:start] + body + text[end + len("        SELECT * FROM claimed;\n") :]
    return text.replace(DECLARED, DECLARED + VARIABLES)


def _indent(block: str) -> str:
    return "".join("    " + line if line.strip() else line for line in block.splitlines(True))


def upgrade() -> None:
    op.execute(function())


def downgrade() -> None:
    op.execute(previous())
