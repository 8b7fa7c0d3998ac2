"""Claims that read only due jobs, and claims from queues with limits in one call.

The claim indexes hold the claim order as one ascending key, `(-priority, run_at, id)`
(`jobs_claim_order_idx` replaces `jobs_claim_idx`, `jobs_key_order_idx` replaces
`jobs_key_claim_idx`), so that "a priority's jobs from this one on, up to now" is one range
of the index. Claims read a queue one priority at a time: jobs due later and jobs waiting on
others (run_at 9999-12-31) sit after the due ones of their priority and are never read.
`jobs_waiting_idx` holds the jobs waiting on others, for the dependency sweep.

`pgqueue.claim_limited(...)`:

A limited claim locks the limited queues, then claims within their budgets in statements
that start after the lock is granted (each reads the claims committed before it). From the
worker that took a transaction and four messages each way; as a function of the database it
is one call, whose statements still take a fresh snapshot each (the function is VOLATILE).

The per-key walk also changes. Entries of jobs claimed since the last vacuum sit at the
head of every busy key, and both the walk and the scan of the key's jobs read past them. Now
each step of the walk returns the key's best queued job, and the scan starts at that job.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# The budget of a queue `q` with limits: what its concurrency limit (running jobs) and rate
# limit (starts in the sliding window) leave of `want`. CASE, not arithmetic on NULL: a count
# is made only for a limit that is set.
BUDGET = """least(
               {want},
               CASE WHEN q.concurrency_limit IS NOT NULL THEN q.concurrency_limit - (
                   SELECT count(*) FROM pgqueue.jobs AS r
                   WHERE r.state = 'running' AND r.queue = q.name) END,
               CASE WHEN q.rate_limit IS NOT NULL THEN q.rate_limit - (
                   SELECT coalesce(sum(s.n), 0) FROM pgqueue.queue_starts AS s
                   WHERE s.queue = q.name
                     AND s.started_at > clock_timestamp() - make_interval(secs => q.rate_period)
               ) END
           )"""

# Tasks this worker has (NULL: any); see job_claim in pgqueue/sql/claim.sql.
TASKS = """(p_tasks IS NULL OR j.task = ANY(p_tasks)
               OR NOT EXISTS (SELECT 1 FROM pgqueue.tasks AS t WHERE t.name = j.task))"""


def due(queue: str, n: str, lock: bool, cols: str = "d.id") -> str:
    """The due jobs of `queue` in claim order, up to `n`, one priority at a time (as in
    job_claim, pgqueue/sql/claim.sql): each priority's due jobs are one range of
    jobs_claim_order_idx, so jobs due later or waiting on others are never read."""
    locking = "\n                FOR UPDATE SKIP LOCKED" if lock else ""
    return f"""WITH RECURSIVE g AS (
                (SELECT -j.priority::bigint AS rank, j.run_at, j.id FROM pgqueue.jobs AS j
                 WHERE j.state = 'queued' AND j.queue = {queue}
                 ORDER BY -j.priority::bigint, j.run_at, j.id LIMIT 1)
                UNION ALL
                SELECT nx.rank, nx.run_at, nx.id FROM g
                CROSS JOIN LATERAL (
                    SELECT -j.priority::bigint AS rank, j.run_at, j.id FROM pgqueue.jobs AS j
                    WHERE j.state = 'queued' AND j.queue = {queue}
                      AND -j.priority::bigint > g.rank
                    ORDER BY -j.priority::bigint, j.run_at, j.id LIMIT 1
                ) AS nx
            )
            SELECT {cols} FROM g
            CROSS JOIN LATERAL (
                SELECT j.id, j.priority, j.run_at, j.concurrency_key FROM pgqueue.jobs AS j
                WHERE j.state = 'queued' AND j.queue = {queue}
                  AND -j.priority::bigint = g.rank
                  AND (-j.priority::bigint, j.run_at, j.id) >= (g.rank, g.run_at, g.id)
                  AND j.run_at <= coalesce(p_now, now()) AND {TASKS}
                ORDER BY -j.priority::bigint, j.run_at, j.id
                LIMIT {n}{locking}
            ) AS d
            LIMIT {n}"""


KEYLESS_COLUMNS = "d.id, d.priority, d.run_at, d.concurrency_key"

RETURNED = """j.id, j.queue, j.task, j.args::text, nullif(j.kwargs, '{}')::text, j.priority,
              j.run_at, j.attempts, j.max_attempts, j.unique_key, j.timeout, j.created_at,
              j.started_at, j.trace_context, j.concurrency_key"""

# Queues with a concurrency and/or rate limit and no per-key limit, all in one statement.
CLAIM_PLAIN = f"""
        RETURN QUERY
        WITH budget AS (
            SELECT q.name AS queue, q.rate_limit, {BUDGET.format(want="wanted")} AS n
            FROM pgqueue.queues AS q
            WHERE q.name = ANY(plain)
        ), picked AS (
            SELECT c.id
            FROM budget AS b
            CROSS JOIN LATERAL (
            {due("b.queue", "greatest(b.n, 0)", True, cols="d.id, d.priority, d.run_at")}
            ) AS c
            ORDER BY c.priority DESC, c.run_at, c.id
            LIMIT wanted
        ), claimed AS (
            UPDATE pgqueue.jobs AS j
            SET state = 'running',
                attempts = j.attempts + 1,
                worker_id = p_worker_id,
                -- The clock, not the transaction start: this call may have waited for the
                -- queue lock, and started_at must agree with the sliding window.
                started_at = coalesce(p_now, clock_timestamp())
            FROM picked
            WHERE j.id = picked.id
            RETURNING {RETURNED}
        ), recorded AS (
            INSERT INTO pgqueue.queue_starts (queue, started_at, n)
            SELECT c.queue, clock_timestamp(), count(*)
            FROM claimed AS c JOIN budget AS b ON b.queue = c.queue
            WHERE b.rate_limit IS NOT NULL
            GROUP BY c.queue
        ), forgotten AS (
            DELETE FROM pgqueue.queue_starts AS s
            USING pgqueue.queues AS q
            WHERE s.queue = q.name AND q.name = ANY(plain)
              AND s.started_at < clock_timestamp() - make_interval(secs => q.rate_period)
        )
        SELECT * FROM claimed;"""

# One queue `keyed` with a per-key limit. Keys take turns: the walk starts after the key
# served last (queues.key_cursor) and wraps round; every key with room (fewer than
# per_key_limit running) gives its best job, then its second best, and so on, until the
# budget is spent. The walk looks at p_keys keys at most (from the cursor, then from the
# start) and the cursor moves past the last key served. Jobs without a key are one more
# turn-taker, uncapped, read among the first p_keyless_scan due jobs of the queue.
# Candidates are read without locks (claimers of this queue take turns on its lock), then
# the chosen ones are locked, skipping any another transaction holds.
CLAIM_PER_KEY = f"""
        RETURN QUERY
        WITH RECURSIVE q AS (
            SELECT q.name, q.per_key_limit, q.rate_limit, coalesce(q.key_cursor, '') AS cursor,
                   {BUDGET.format(want="wanted")} AS n
            FROM pgqueue.queues AS q
            WHERE q.name = keyed AND q.per_key_limit IS NOT NULL
        ), after_cursor AS (
            -- A step: the next key's best queued job, due or not. Where it is in the index
            -- is where the scan of the key's jobs starts.
            (SELECT j.concurrency_key AS key, j.priority, j.run_at, j.id
             FROM pgqueue.jobs AS j
             WHERE j.state = 'queued' AND j.queue = keyed AND j.concurrency_key IS NOT NULL
               AND j.concurrency_key > (SELECT cursor FROM q)
             ORDER BY j.concurrency_key, -j.priority::bigint, j.run_at, j.id LIMIT 1)
            UNION ALL
            SELECT nx.key, nx.priority, nx.run_at, nx.id
            FROM after_cursor AS a
            CROSS JOIN LATERAL (
                SELECT j.concurrency_key AS key, j.priority, j.run_at, j.id
                FROM pgqueue.jobs AS j
                WHERE j.state = 'queued' AND j.queue = keyed AND j.concurrency_key > a.key
                ORDER BY j.concurrency_key, -j.priority::bigint, j.run_at, j.id LIMIT 1
            ) AS nx
        ), from_start AS (
            (SELECT j.concurrency_key AS key, j.priority, j.run_at, j.id
             FROM pgqueue.jobs AS j
             WHERE j.state = 'queued' AND j.queue = keyed AND j.concurrency_key IS NOT NULL
               AND j.concurrency_key <= (SELECT cursor FROM q)
             ORDER BY j.concurrency_key, -j.priority::bigint, j.run_at, j.id LIMIT 1)
            UNION ALL
            SELECT nx.key, nx.priority, nx.run_at, nx.id
            FROM from_start AS f
            CROSS JOIN LATERAL (
                SELECT j.concurrency_key AS key, j.priority, j.run_at, j.id
                FROM pgqueue.jobs AS j
                WHERE j.state = 'queued' AND j.queue = keyed AND j.concurrency_key > f.key
                  AND j.concurrency_key <= (SELECT cursor FROM q)
                ORDER BY j.concurrency_key, -j.priority::bigint, j.run_at, j.id LIMIT 1
            ) AS nx
        ), walked AS (
            (SELECT 0 AS lap, a.* FROM after_cursor AS a LIMIT p_keys)
            UNION ALL
            (SELECT 1 AS lap, f.* FROM from_start AS f LIMIT p_keys)
        ), candidates AS (
            SELECT c.id, w.lap, w.key, c.turn
            FROM walked AS w
            CROSS JOIN q
            CROSS JOIN LATERAL (
                SELECT greatest(0, least(q.n, q.per_key_limit - (
                    SELECT count(*) FROM pgqueue.jobs AS r
                    WHERE r.state = 'running' AND r.queue = q.name
                      AND r.concurrency_key = w.key))) AS room
            ) AS rm
            CROSS JOIN LATERAL (
                -- From the walk's job on, in the index's order (claim order within a key).
                SELECT j.id,
                       row_number() OVER (ORDER BY -j.priority::bigint, j.run_at, j.id) AS turn
                FROM pgqueue.jobs AS j
                WHERE j.state = 'queued' AND j.queue = keyed AND j.concurrency_key = w.key
                  AND (-j.priority::bigint, j.run_at, j.id) >= (-w.priority::bigint, w.run_at, w.id)
                  AND j.run_at <= coalesce(p_now, now()) AND {TASKS}
                ORDER BY j.concurrency_key, -j.priority::bigint, j.run_at, j.id
                LIMIT rm.room
            ) AS c
            UNION ALL
            SELECT c.id, 2 AS lap, NULL AS key,
                   row_number() OVER (ORDER BY c.priority DESC, c.run_at, c.id) AS turn
            FROM q
            CROSS JOIN LATERAL (
                SELECT h.id, h.priority, h.run_at FROM (
            {due("keyed", "p_keyless_scan", False, cols=KEYLESS_COLUMNS)}
                ) AS h
                WHERE h.concurrency_key IS NULL
                ORDER BY h.priority DESC, h.run_at, h.id
                LIMIT greatest(q.n, 0)
            ) AS c
        ), chosen AS (
            SELECT c.id, c.lap, c.key, c.turn FROM candidates AS c
            ORDER BY c.turn, c.lap, c.key
            LIMIT greatest((SELECT n FROM q), 0)
        ), locked AS (
            -- One primary-key lookup per chosen job.
            SELECT l.id FROM chosen AS c
            CROSS JOIN LATERAL (
                SELECT j.id FROM pgqueue.jobs AS j
                WHERE j.id = c.id AND j.state = 'queued'
                FOR UPDATE SKIP LOCKED
            ) AS l
        ), claimed AS (
            UPDATE pgqueue.jobs AS j
            SET state = 'running',
                attempts = j.attempts + 1,
                worker_id = p_worker_id,
                started_at = coalesce(p_now, clock_timestamp())
            -- By primary key: the number of rows is known only at run time, and a plan
            -- made for a guess would read the whole table.
            WHERE j.id = ANY(ARRAY(SELECT id FROM locked))
            RETURNING {RETURNED}
        ), moved AS (
            -- The next claim starts after the last key served here.
            UPDATE pgqueue.queues AS qq
            SET key_cursor = last.key
            FROM (SELECT c.key FROM chosen AS c WHERE c.key IS NOT NULL
                  ORDER BY c.turn DESC, c.lap DESC, c.key DESC LIMIT 1) AS last
            WHERE qq.name = keyed
        ), recorded AS (
            INSERT INTO pgqueue.queue_starts (queue, started_at, n)
            SELECT keyed, clock_timestamp(), count(*)
            FROM claimed
            WHERE (SELECT rate_limit FROM q) IS NOT NULL
            HAVING count(*) > 0
        ), forgotten AS (
            DELETE FROM pgqueue.queue_starts AS s
            USING pgqueue.queues AS qq
            WHERE s.queue = qq.name AND qq.name = keyed
              AND s.started_at < clock_timestamp() - make_interval(secs => qq.rate_period)
        )
        SELECT * FROM claimed;"""

FUNCTION = f"""
CREATE OR REPLACE FUNCTION pgqueue.claim_limited(
    p_worker_id uuid,
    p_queues text[],
    p_limit integer,
    p_tasks text[] DEFAULT NULL,
    p_now timestamptz DEFAULT NULL,
    p_keys integer DEFAULT 1000,
    p_keyless_scan integer DEFAULT 50
) RETURNS TABLE (
    id bigint, queue text, task text, args text, kwargs text, priority integer,
    run_at timestamptz, attempts integer, max_attempts integer, unique_key text,
    timeout double precision, created_at timestamptz, started_at timestamptz,
    trace_context jsonb, concurrency_key text
)
LANGUAGE plpgsql
VOLATILE
-- The budgets are known only at run time: one plan for every call, whatever the statistics
-- say, and no JIT (compiling takes longer than any claim runs).
SET plan_cache_mode = force_generic_plan
SET jit = off
AS $claim$
#variable_conflict use_column
DECLARE
    plain text[];
    per_key text[];
    keyed text;
    wanted integer := p_limit;
    got bigint;
BEGIN
    -- Only a registered worker claims (one declared lost registers again first).
    IF wanted <= 0 OR NOT EXISTS (SELECT 1 FROM pgqueue.workers AS wk
                                  WHERE wk.id = p_worker_id) THEN
        RETURN;
    END IF;
    -- This transaction's commit need not wait for the disk: a claim lost in a server crash
    -- leaves the job claimable again. Local to the transaction, as in job_claim.
    PERFORM set_config('synchronous_commit', 'off', true);
    -- Claimers of one limited queue take turns. Each statement below reads the counts with
    -- a snapshot taken after the lock was granted: every claim committed before is seen.
    SELECT coalesce(array_agg(l.name) FILTER (WHERE l.per_key_limit IS NULL), '{{}}'),
           coalesce(array_agg(l.name) FILTER (WHERE l.per_key_limit IS NOT NULL), '{{}}')
      INTO plain, per_key
    FROM (SELECT q.name, q.per_key_limit FROM pgqueue.queues AS q
          WHERE (p_queues IS NULL OR q.name = ANY(p_queues))
            AND NOT q.paused
            AND (q.concurrency_limit IS NOT NULL OR q.rate_limit IS NOT NULL
                 OR q.per_key_limit IS NOT NULL)
          ORDER BY q.name
          FOR UPDATE) AS l;
    IF cardinality(plain) > 0 THEN
{CLAIM_PLAIN}
        GET DIAGNOSTICS got = ROW_COUNT;
        wanted := wanted - got;
    END IF;
    FOREACH keyed IN ARRAY per_key LOOP
        EXIT WHEN wanted <= 0;
{CLAIM_PER_KEY}
        GET DIAGNOSTICS got = ROW_COUNT;
        wanted := wanted - got;
    END LOOP;
END
$claim$;

-- Run with the caller's rights (a worker's); nobody else needs it.
REVOKE EXECUTE ON FUNCTION
    pgqueue.claim_limited(uuid, text[], integer, text[], timestamptz, integer, integer)
    FROM PUBLIC;
"""


def upgrade() -> None:
    # The per-key order as one ascending key, so that "from this job on" is one range.
    op.execute(
        "CREATE INDEX jobs_key_order_idx ON pgqueue.jobs "
        "(queue, concurrency_key, (-priority::bigint), run_at, id) "
        "WHERE state = 'queued' AND concurrency_key IS NOT NULL"
    )
    op.execute("DROP INDEX pgqueue.jobs_key_claim_idx")
    # The claim order as one ascending key, for the same reason: each priority's due jobs
    # are one range, from the priority's first queued job to now.
    op.execute(
        "CREATE INDEX jobs_claim_order_idx ON pgqueue.jobs "
        "(queue, (-priority::bigint), run_at, id) WHERE state = 'queued'"
    )
    op.execute("DROP INDEX pgqueue.jobs_claim_idx")
    # Jobs waiting on others, by id: the dependency sweep reads a page of them, or the
    # newest, without reading past anything else.
    op.execute(
        "CREATE INDEX jobs_waiting_idx ON pgqueue.jobs (id) "
        "WHERE state = 'queued' AND run_at = '9999-12-31 00:00:00+00'"
    )
    op.execute(FUNCTION)


def downgrade() -> None:
    op.execute(
        "CREATE INDEX IF NOT EXISTS jobs_claim_idx ON pgqueue.jobs "
        "(queue, priority DESC, run_at, id) WHERE state = 'queued'"
    )
    op.execute("DROP INDEX IF EXISTS pgqueue.jobs_claim_order_idx")
    op.execute("DROP INDEX IF EXISTS pgqueue.jobs_waiting_idx")
    op.execute(
        "CREATE INDEX IF NOT EXISTS jobs_key_claim_idx ON pgqueue.jobs "
        "(queue, concurrency_key, priority DESC, run_at, id) "
        "WHERE state = 'queued' AND concurrency_key IS NOT NULL"
    )
    op.execute("DROP INDEX IF EXISTS pgqueue.jobs_key_order_idx")
    op.execute(
        "DROP FUNCTION IF EXISTS pgqueue.claim_limited"
        "(uuid, text[], integer, text[], timestamptz, integer, integer)"
    )
