-- Claiming due jobs, plain and through queues with cluster-wide limits.
-- Format: see pgqueue/sql/__init__.py.

-- name: job_claim
-- Take up to `limit` due jobs from `queues` (NULL: every queue), best priority first, and mark
-- them running for `worker_id`.
-- A queue's due jobs are read through jobs_claim_order_idx one priority at a time, best
-- first: the first step finds the queue's priorities with one index descent each, and each
-- priority's due jobs are one range of the index (from its first queued job to now), so
-- jobs due later and jobs waiting on others (run_at 9999-12-31) are never read, however
-- many there are, and nothing is read past `limit`. The task filter: tasks this worker has
-- (NULL: any); a task another worker declared waits for a worker with it, and one nobody
-- ever declared (a typo) is taken, to end dead.
-- Only the rows taken are locked: a row locked and left would be skipped by other claims,
-- which would take fewer than they asked for while jobs are due (and so sleep).
WITH RECURSIVE known_queues AS (
    -- Distinct queues of queued jobs by skipping through the index (no full scan).
    (SELECT queue FROM pgqueue.jobs WHERE state = 'queued' ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT j.queue FROM pgqueue.jobs AS j
            WHERE j.state = 'queued' AND j.queue > k.queue ORDER BY j.queue LIMIT 1)
    FROM known_queues AS k WHERE k.queue IS NOT NULL
), wanted AS (
    SELECT queue FROM known_queues
    WHERE queue IS NOT NULL AND %(queues)s::text[] IS NULL
    UNION
    SELECT unnest(%(queues)s::text[])
), open AS (
    -- Only a registered worker claims (one declared lost registers again first). Paused
    -- queues are skipped, and queues with limits go through claim_limited.
    SELECT w.queue FROM wanted AS w
    WHERE EXISTS (SELECT 1 FROM pgqueue.workers AS wk WHERE wk.id = %(worker_id)s::uuid)
      AND NOT EXISTS (
        SELECT 1 FROM pgqueue.queues AS q
        WHERE q.name = w.queue
          AND (q.paused OR q.concurrency_limit IS NOT NULL OR q.rate_limit IS NOT NULL
               OR q.per_key_limit IS NOT NULL))
), shares AS (
    -- How many to take from each queue. One queue: all of them. Several: each queue's part
    -- of the best `limit` due jobs among them, read without locks.
    SELECT o.queue, %(limit)s::int AS n FROM open AS o
    WHERE (SELECT count(*) FROM open) = 1
    UNION ALL
    SELECT best.queue, count(*)::int AS n FROM (
        SELECT c.queue FROM open AS o
        CROSS JOIN LATERAL (
        WITH RECURSIVE g AS (
            (SELECT -j.priority::bigint AS rank, j.run_at, j.id FROM pgqueue.jobs AS j
             WHERE j.state = 'queued' AND j.queue = o.queue
             ORDER BY -j.priority::bigint, j.run_at, j.id LIMIT 1)
            UNION ALL
            SELECT nx.rank, nx.run_at, nx.id FROM g
            CROSS JOIN LATERAL (
                SELECT -j.priority::bigint AS rank, j.run_at, j.id FROM pgqueue.jobs AS j
                WHERE j.state = 'queued' AND j.queue = o.queue AND -j.priority::bigint > g.rank
                ORDER BY -j.priority::bigint, j.run_at, j.id LIMIT 1
            ) AS nx
        )
        SELECT d.queue, d.rank, d.run_at, d.id FROM g
        CROSS JOIN LATERAL (
            SELECT j.id, j.queue, -j.priority::bigint AS rank, j.run_at FROM pgqueue.jobs AS j
            WHERE j.state = 'queued' AND j.queue = o.queue
              AND -j.priority::bigint = g.rank
              AND (j.run_at, j.id) >= (g.run_at, g.id)
              AND j.run_at <= coalesce(%(now)s::timestamptz, now())
              AND (%(tasks)s::text[] IS NULL OR j.task = ANY(%(tasks)s::text[])
                   OR NOT EXISTS (SELECT 1 FROM pgqueue.tasks AS t WHERE t.name = j.task))
            ORDER BY -j.priority::bigint, j.run_at, j.id
            LIMIT %(limit)s::int
        ) AS d
        LIMIT %(limit)s::int
        ) AS c
        ORDER BY c.rank, c.run_at, c.id
        LIMIT %(limit)s::int
    ) AS best
    WHERE (SELECT count(*) FROM open) > 1
    GROUP BY best.queue
), taken AS (
    SELECT c.id
    FROM shares AS s
    CROSS JOIN LATERAL (
        WITH RECURSIVE g AS (
            (SELECT -j.priority::bigint AS rank, j.run_at, j.id FROM pgqueue.jobs AS j
             WHERE j.state = 'queued' AND j.queue = s.queue
             ORDER BY -j.priority::bigint, j.run_at, j.id LIMIT 1)
            UNION ALL
            SELECT nx.rank, nx.run_at, nx.id FROM g
            CROSS JOIN LATERAL (
                SELECT -j.priority::bigint AS rank, j.run_at, j.id FROM pgqueue.jobs AS j
                WHERE j.state = 'queued' AND j.queue = s.queue AND -j.priority::bigint > g.rank
                ORDER BY -j.priority::bigint, j.run_at, j.id LIMIT 1
            ) AS nx
        )
        SELECT d.id FROM g
        CROSS JOIN LATERAL (
            SELECT j.id, j.queue, -j.priority::bigint AS rank, j.run_at FROM pgqueue.jobs AS j
            WHERE j.state = 'queued' AND j.queue = s.queue
              AND -j.priority::bigint = g.rank
              AND (j.run_at, j.id) >= (g.run_at, g.id)
              AND j.run_at <= coalesce(%(now)s::timestamptz, now())
              AND (%(tasks)s::text[] IS NULL OR j.task = ANY(%(tasks)s::text[])
                   OR NOT EXISTS (SELECT 1 FROM pgqueue.tasks AS t WHERE t.name = j.task))
            ORDER BY -j.priority::bigint, j.run_at, j.id
            LIMIT s.n
        FOR UPDATE SKIP LOCKED
        ) AS d
        LIMIT s.n
    ) AS c
), topped AS (
    -- Several queues, and jobs another claim holds were skipped: make up the number from
    -- the queues in turn, best first. Rows are locked one by one as they are taken, up to
    -- the number (nothing sorts them afterwards, so nothing is read ahead).
    SELECT c.id FROM (
        SELECT o.queue FROM open AS o
        ORDER BY (SELECT -j.priority::bigint FROM pgqueue.jobs AS j
                  WHERE j.state = 'queued' AND j.queue = o.queue
                  ORDER BY -j.priority::bigint, j.run_at, j.id LIMIT 1) NULLS LAST
    ) AS o
    CROSS JOIN LATERAL (
        WITH RECURSIVE g AS (
            (SELECT -j.priority::bigint AS rank, j.run_at, j.id FROM pgqueue.jobs AS j
             WHERE j.state = 'queued' AND j.queue = o.queue
             ORDER BY -j.priority::bigint, j.run_at, j.id LIMIT 1)
            UNION ALL
            SELECT nx.rank, nx.run_at, nx.id FROM g
            CROSS JOIN LATERAL (
                SELECT -j.priority::bigint AS rank, j.run_at, j.id FROM pgqueue.jobs AS j
                WHERE j.state = 'queued' AND j.queue = o.queue AND -j.priority::bigint > g.rank
                ORDER BY -j.priority::bigint, j.run_at, j.id LIMIT 1
            ) AS nx
        )
        SELECT d.id FROM g
        CROSS JOIN LATERAL (
            SELECT j.id, j.queue, -j.priority::bigint AS rank, j.run_at FROM pgqueue.jobs AS j
            WHERE j.state = 'queued' AND j.queue = o.queue
              AND -j.priority::bigint = g.rank
              AND (j.run_at, j.id) >= (g.run_at, g.id)
              AND j.run_at <= coalesce(%(now)s::timestamptz, now())
              AND (%(tasks)s::text[] IS NULL OR j.task = ANY(%(tasks)s::text[])
                   OR NOT EXISTS (SELECT 1 FROM pgqueue.tasks AS t WHERE t.name = j.task))
              AND j.id <> ALL(ARRAY(SELECT id FROM taken))
            ORDER BY -j.priority::bigint, j.run_at, j.id
            LIMIT %(limit)s::int
        FOR UPDATE SKIP LOCKED
        ) AS d
        LIMIT %(limit)s::int
    ) AS c
    WHERE (SELECT count(*) FROM open) > 1 AND (SELECT count(*) FROM taken) < %(limit)s::int
    LIMIT greatest(%(limit)s::int - (SELECT count(*) FROM taken), 0)
)
UPDATE pgqueue.jobs AS j
SET state = 'running',
    -- (Bounded: a row inserted at the bound of attempts must not fail every claim.)
    attempts = least(j.attempts, 2147483645) + 1,
    worker_id = %(worker_id)s::uuid,
    started_at = coalesce(%(now)s::timestamptz, now())
FROM (SELECT id FROM taken UNION ALL SELECT id FROM topped) AS picked
WHERE j.id = picked.id
-- Arguments as text, parsed by the worker itself (and no kwargs at all when there are none):
-- cheaper than jsonb values through the driver, for every job claimed.
RETURNING j.id, j.queue, j.task, j.args::text, nullif(j.kwargs, '{}')::text, j.priority,
          j.run_at, j.attempts, j.max_attempts, j.unique_key, j.timeout, j.created_at,
          j.started_at, j.trace_context, j.concurrency_key;

-- name: job_claim_queue
-- job_claim for one queue (`queue`): the same claim without what several queues need (the
-- walk over every queue, the shares, the making up). Most claims read one queue (a worker of
-- one queue, or of every queue when its jobs are in one), and a generic plan pays for every
-- branch it holds, run or not: this one costs 0.15 ms less a claim. Its stream of due jobs
-- is job_claim's (tests/unit/test_queries.py checks that they agree), except where it
-- starts: at `after` (rank, run_at, id), the last job this worker's previous claim of the
-- queue took. The jobs claimed since the last vacuum leave dead entries at the start of
-- the queue's priority in the index, and finding the first live one read all of them at
-- every claim (0.4 ms more per claim after 80,000 jobs). Better priorities are still looked
-- for from their start. A job behind `after` (inserted by a transaction that committed
-- late, with an earlier run_at) is found by the next claim without `after`: the worker
-- leaves it out at least once a second, and after a claim that found fewer than it asked.
-- Without `after`, its rank is the lowest bigint: before every job.
WITH open AS (
    SELECT %(queue)s::text AS queue
    WHERE EXISTS (SELECT 1 FROM pgqueue.workers AS wk WHERE wk.id = %(worker_id)s::uuid)
      AND NOT EXISTS (
        SELECT 1 FROM pgqueue.queues AS q
        WHERE q.name = %(queue)s::text
          AND (q.paused OR q.concurrency_limit IS NOT NULL OR q.rate_limit IS NOT NULL
               OR q.per_key_limit IS NOT NULL))
), shares AS (
    SELECT o.queue, %(limit)s::int AS n FROM open AS o
), taken AS (
    SELECT c.id
    FROM shares AS s
    CROSS JOIN LATERAL (
        WITH RECURSIVE g AS (
            (SELECT f.rank, f.run_at, f.id FROM (
                (SELECT -j.priority::bigint AS rank, j.run_at, j.id FROM pgqueue.jobs AS j
                 WHERE j.state = 'queued' AND j.queue = s.queue
                   AND -j.priority::bigint < %(after_rank)s::bigint
                 ORDER BY -j.priority::bigint, j.run_at, j.id LIMIT 1)
                UNION ALL
                (SELECT -j.priority::bigint AS rank, j.run_at, j.id FROM pgqueue.jobs AS j
                 WHERE j.state = 'queued' AND j.queue = s.queue
                   AND -j.priority::bigint = %(after_rank)s::bigint
                   AND (j.run_at, j.id) >= (%(after_run_at)s::timestamptz, %(after_id)s::bigint)
                 ORDER BY -j.priority::bigint, j.run_at, j.id LIMIT 1)
                UNION ALL
                (SELECT -j.priority::bigint AS rank, j.run_at, j.id FROM pgqueue.jobs AS j
                 WHERE j.state = 'queued' AND j.queue = s.queue
                   AND -j.priority::bigint > %(after_rank)s::bigint
                 ORDER BY -j.priority::bigint, j.run_at, j.id LIMIT 1)
             ) AS f
             ORDER BY f.rank, f.run_at, f.id LIMIT 1)
            UNION ALL
            SELECT nx.rank, nx.run_at, nx.id FROM g
            CROSS JOIN LATERAL (
                SELECT -j.priority::bigint AS rank, j.run_at, j.id FROM pgqueue.jobs AS j
                WHERE j.state = 'queued' AND j.queue = s.queue AND -j.priority::bigint > g.rank
                ORDER BY -j.priority::bigint, j.run_at, j.id LIMIT 1
            ) AS nx
        )
        SELECT d.id FROM g
        CROSS JOIN LATERAL (
            SELECT j.id, j.queue, -j.priority::bigint AS rank, j.run_at FROM pgqueue.jobs AS j
            WHERE j.state = 'queued' AND j.queue = s.queue
              AND -j.priority::bigint = g.rank
              AND (j.run_at, j.id) >= (g.run_at, g.id)
              AND j.run_at <= coalesce(%(now)s::timestamptz, now())
              AND (%(tasks)s::text[] IS NULL OR j.task = ANY(%(tasks)s::text[])
                   OR NOT EXISTS (SELECT 1 FROM pgqueue.tasks AS t WHERE t.name = j.task))
            ORDER BY -j.priority::bigint, j.run_at, j.id
            LIMIT s.n
        FOR UPDATE SKIP LOCKED
        ) AS d
        LIMIT s.n
    ) AS c
)
UPDATE pgqueue.jobs AS j
SET state = 'running',
    -- (Bounded: a row inserted at the bound of attempts must not fail every claim.)
    attempts = least(j.attempts, 2147483645) + 1,
    worker_id = %(worker_id)s::uuid,
    started_at = coalesce(%(now)s::timestamptz, now())
FROM taken AS picked
WHERE j.id = picked.id
RETURNING j.id, j.queue, j.task, j.args::text, nullif(j.kwargs, '{}')::text, j.priority,
          j.run_at, j.attempts, j.max_attempts, j.unique_key, j.timeout, j.created_at,
          j.started_at, j.trace_context, j.concurrency_key;

-- name: claim_limited
-- Claim from the queues of `queues` (NULL: all) with cluster-wide limits (concurrency, rate,
-- per key), within their budgets: pgqueue.claim_limited locks them, then claims in statements
-- that see every claim committed before the lock was granted. A function, so that the lock
-- and the claims are one round trip (migration 0013 has its text).
SELECT * FROM pgqueue.claim_limited(
    %(worker_id)s::uuid, %(queues)s::text[], %(limit)s::int, %(tasks)s::text[],
    %(now)s::timestamptz, %(keys)s::int, %(keyless_scan)s::int);

-- name: job_next_run_at
-- Seconds until the next queued job of `queues` (NULL: every queue) becomes due, if any.
SELECT extract(epoch FROM min(run_at) - coalesce(%(now)s::timestamptz, now()))::float8
FROM pgqueue.jobs
WHERE state = 'queued'
  AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
  AND (%(tasks)s::text[] IS NULL OR task = ANY(%(tasks)s::text[])
       OR NOT EXISTS (SELECT 1 FROM pgqueue.tasks AS t WHERE t.name = jobs.task))
  AND run_at > coalesce(%(now)s::timestamptz, now());
