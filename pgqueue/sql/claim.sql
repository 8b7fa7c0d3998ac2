-- Claiming due jobs, plain and through queues with cluster-wide limits.
-- Format: see pgqueue/sql/__init__.py.

-- name: job_claim
-- Take up to `limit` due jobs from `queues` (NULL: every queue), best priority first, and mark
-- them running for `worker_id`. Each queue is read through jobs_claim_idx in claim order and
-- stops at `limit` rows, so the cost does not grow with the backlog or the number of queues.
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
), picked AS (
    SELECT c.id
    FROM wanted AS w
    CROSS JOIN LATERAL (
        SELECT j.id, j.priority, j.run_at FROM pgqueue.jobs AS j
        WHERE j.state = 'queued' AND j.queue = w.queue
          AND j.run_at <= coalesce(%(now)s::timestamptz, now())
          -- Tasks this worker has (NULL: any). A task another worker declared waits for a
          -- worker with it, and one nobody ever declared (a typo) is taken, to end dead.
          AND (%(tasks)s::text[] IS NULL OR j.task = ANY(%(tasks)s::text[])
               OR NOT EXISTS (SELECT 1 FROM pgqueue.tasks AS t WHERE t.name = j.task))
        ORDER BY j.priority DESC, j.run_at, j.id
        LIMIT %(limit)s::int
        FOR UPDATE SKIP LOCKED
    ) AS c
    -- Only a registered worker claims (one declared lost registers again first). Paused
    -- queues are skipped, and queues with limits go through job_claim_limited.
    WHERE EXISTS (SELECT 1 FROM pgqueue.workers AS wk WHERE wk.id = %(worker_id)s::uuid)
      AND NOT EXISTS (
        SELECT 1 FROM pgqueue.queues AS q
        WHERE q.name = w.queue
          AND (q.paused OR q.concurrency_limit IS NOT NULL OR q.rate_limit IS NOT NULL
               OR q.per_key_limit IS NOT NULL))
    ORDER BY c.priority DESC, c.run_at, c.id
    LIMIT %(limit)s::int
), durability AS (
    -- This transaction's commit need not wait for the disk: a claim lost in a server crash
    -- leaves the job claimable again. Local to the transaction, so nothing leaks to the
    -- connection's next user (a pooler's other clients).
    SELECT set_config('synchronous_commit', 'off', true) AS setting
)
UPDATE pgqueue.jobs AS j
SET state = 'running',
    attempts = j.attempts + 1,
    worker_id = %(worker_id)s::uuid,
    started_at = coalesce(%(now)s::timestamptz, now())
FROM picked
WHERE j.id = picked.id AND (SELECT setting FROM durability) IS NOT NULL
-- Arguments as text, parsed by the worker itself (and no kwargs at all when there are none):
-- cheaper than jsonb values through the driver, for every job claimed.
RETURNING j.id, j.queue, j.task, j.args::text, nullif(j.kwargs, '{}')::text, j.priority,
          j.run_at, j.attempts, j.max_attempts, j.unique_key, j.timeout, j.created_at,
          j.started_at, j.trace_context, j.concurrency_key;

-- name: queue_lock_limited
-- First statement of a limited claim: lock the limited queues of `queues` (NULL: all), so
-- that claimers of one limited queue take turns. The counts are read by the next statement,
-- which sees every claim committed before the lock was granted. Queues with a per-key limit
-- are claimed from by job_claim_per_key, one at a time.
-- Its transaction's commit need not wait for the disk, as for job_claim. JIT is off for
-- the statements after it: their estimates (a LIMIT known only at run time) can look costly
-- enough to compile, which takes longer than any claim runs.
SELECT q.name, q.per_key_limit IS NOT NULL AS per_key,
       set_config('synchronous_commit', 'off', true) AS durability,
       set_config('jit', 'off', true) AS compiled
FROM pgqueue.queues AS q
WHERE (%(queues)s::text[] IS NULL OR q.name = ANY(%(queues)s::text[]))
  AND NOT q.paused
  AND (q.concurrency_limit IS NOT NULL OR q.rate_limit IS NOT NULL
       OR q.per_key_limit IS NOT NULL)
ORDER BY q.name
FOR UPDATE;

-- name: job_claim_limited
-- Second statement of a limited claim: for each locked queue, the budget is what its
-- concurrency limit (running jobs) and rate limit (starts in the sliding window) leave;
-- claim up to that, record the starts, and forget starts that slid out of the window.
WITH budget AS (
    SELECT q.name AS queue, q.rate_limit,
           least(
               %(limit)s::int,
               -- CASE, not arithmetic on NULL: a count is only made for a limit that is set.
               CASE WHEN q.concurrency_limit IS NOT NULL THEN q.concurrency_limit - (
                   SELECT count(*) FROM pgqueue.jobs AS r
                   WHERE r.state = 'running' AND r.queue = q.name) END,
               CASE WHEN q.rate_limit IS NOT NULL THEN q.rate_limit - (
                   SELECT coalesce(sum(s.n), 0) FROM pgqueue.queue_starts AS s
                   WHERE s.queue = q.name
                     AND s.started_at > clock_timestamp() - make_interval(secs => q.rate_period)
               ) END
           ) AS n
    FROM pgqueue.queues AS q
    WHERE q.name = ANY(%(queues)s::text[])
      AND q.per_key_limit IS NULL  -- those go through job_claim_per_key
      AND EXISTS (SELECT 1 FROM pgqueue.workers AS wk WHERE wk.id = %(worker_id)s::uuid)
), picked AS (
    SELECT c.id
    FROM budget AS b
    CROSS JOIN LATERAL (
        SELECT j.id, j.priority, j.run_at FROM pgqueue.jobs AS j
        WHERE j.state = 'queued' AND j.queue = b.queue
          AND j.run_at <= coalesce(%(now)s::timestamptz, now())
          AND (%(tasks)s::text[] IS NULL OR j.task = ANY(%(tasks)s::text[])
               OR NOT EXISTS (SELECT 1 FROM pgqueue.tasks AS t WHERE t.name = j.task))
        ORDER BY j.priority DESC, j.run_at, j.id
        LIMIT greatest(b.n, 0)
        FOR UPDATE SKIP LOCKED
    ) AS c
    ORDER BY c.priority DESC, c.run_at, c.id
    LIMIT %(limit)s::int
), claimed AS (
    UPDATE pgqueue.jobs AS j
    SET state = 'running',
        attempts = j.attempts + 1,
        worker_id = %(worker_id)s::uuid,
        -- The clock, not the transaction start: this transaction may have waited for the
        -- queue lock, and started_at must agree with the sliding window.
        started_at = coalesce(%(now)s::timestamptz, clock_timestamp())
    FROM picked
    WHERE j.id = picked.id
    RETURNING j.id, j.queue, j.task, j.args::text, nullif(j.kwargs, '{}')::text, j.priority,
              j.run_at, j.attempts, j.max_attempts, j.unique_key, j.timeout, j.created_at,
              j.started_at, j.trace_context, j.concurrency_key
), recorded AS (
    INSERT INTO pgqueue.queue_starts (queue, started_at, n)
    SELECT c.queue, clock_timestamp(), count(*)
    FROM claimed AS c JOIN budget AS b ON b.queue = c.queue
    WHERE b.rate_limit IS NOT NULL
    GROUP BY c.queue
), forgotten AS (
    DELETE FROM pgqueue.queue_starts AS s
    USING pgqueue.queues AS q
    WHERE s.queue = q.name AND q.name = ANY(%(queues)s::text[])
      AND s.started_at < clock_timestamp() - make_interval(secs => q.rate_period)
)
SELECT * FROM claimed;

-- name: job_next_run_at
-- Seconds until the next queued job of `queues` (NULL: every queue) becomes due, if any.
SELECT extract(epoch FROM min(run_at) - coalesce(%(now)s::timestamptz, now()))::float8
FROM pgqueue.jobs
WHERE state = 'queued'
  AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
  AND (%(tasks)s::text[] IS NULL OR task = ANY(%(tasks)s::text[])
       OR NOT EXISTS (SELECT 1 FROM pgqueue.tasks AS t WHERE t.name = jobs.task))
  AND run_at > coalesce(%(now)s::timestamptz, now());

-- name: job_claim_per_key
-- Claim from one queue with a per-key limit, locked by queue_lock_limited. Its budget is as
-- for job_claim_limited. Keys take turns: the walk starts after the key served last
-- (queues.key_cursor) and wraps round; every key with room (fewer than per_key_limit
-- running) gives its best job, then its second best, and so on, until the budget is spent.
-- The walk looks at %(keys)s keys at most (from the cursor, then from the start), so its
-- cost stays bounded however many keys wait, and the cursor moves on past the last key
-- served. Jobs without a key are one more turn-taker, uncapped, read among the first
-- %(keyless_scan)s due jobs of the queue (give every job of such a queue a key).
-- Candidates are read without locks (claimers of this queue take turns on its lock), then
-- the chosen ones are locked, skipping any another transaction holds.
WITH RECURSIVE q AS (
    SELECT q.name, q.per_key_limit, q.rate_limit, coalesce(q.key_cursor, '') AS cursor,
           least(
               %(limit)s::int,
               -- CASE, not arithmetic on NULL: a count is only made for a limit that is set.
               CASE WHEN q.concurrency_limit IS NOT NULL THEN q.concurrency_limit - (
                   SELECT count(*) FROM pgqueue.jobs AS r
                   WHERE r.state = 'running' AND r.queue = q.name) END,
               CASE WHEN q.rate_limit IS NOT NULL THEN q.rate_limit - (
                   SELECT coalesce(sum(s.n), 0) FROM pgqueue.queue_starts AS s
                   WHERE s.queue = q.name
                     AND s.started_at > clock_timestamp() - make_interval(secs => q.rate_period)
               ) END
           ) AS n
    FROM pgqueue.queues AS q
    WHERE q.name = %(queue)s::text AND q.per_key_limit IS NOT NULL AND NOT q.paused
      AND EXISTS (SELECT 1 FROM pgqueue.workers AS wk WHERE wk.id = %(worker_id)s::uuid)
), after_cursor(key) AS (
    (SELECT j.concurrency_key FROM pgqueue.jobs AS j
     WHERE j.state = 'queued' AND j.queue = %(queue)s::text AND j.concurrency_key IS NOT NULL
       AND j.concurrency_key > (SELECT cursor FROM q)
     ORDER BY j.concurrency_key LIMIT 1)
    UNION ALL
    SELECT (SELECT j.concurrency_key FROM pgqueue.jobs AS j
            WHERE j.state = 'queued' AND j.queue = %(queue)s::text
              AND j.concurrency_key > a.key
            ORDER BY j.concurrency_key LIMIT 1)
    FROM after_cursor AS a WHERE a.key IS NOT NULL
), from_start(key) AS (
    (SELECT j.concurrency_key FROM pgqueue.jobs AS j
     WHERE j.state = 'queued' AND j.queue = %(queue)s::text AND j.concurrency_key IS NOT NULL
     ORDER BY j.concurrency_key LIMIT 1)
    UNION ALL
    SELECT (SELECT j.concurrency_key FROM pgqueue.jobs AS j
            WHERE j.state = 'queued' AND j.queue = %(queue)s::text
              AND j.concurrency_key > f.key
            ORDER BY j.concurrency_key LIMIT 1)
    FROM from_start AS f WHERE f.key IS NOT NULL AND f.key <= (SELECT cursor FROM q)
), walked AS (
    (SELECT 0 AS lap, a.key FROM after_cursor AS a WHERE a.key IS NOT NULL
     LIMIT %(keys)s::int)
    UNION ALL
    (SELECT 1 AS lap, f.key FROM from_start AS f
     WHERE f.key IS NOT NULL AND f.key <= (SELECT cursor FROM q)
     LIMIT %(keys)s::int)
), candidates AS (
    SELECT c.id, w.lap, w.key, c.turn
    FROM walked AS w
    CROSS JOIN q
    CROSS JOIN LATERAL (
        SELECT j.id, row_number() OVER (ORDER BY j.priority DESC, j.run_at, j.id) AS turn
        FROM pgqueue.jobs AS j
        WHERE j.state = 'queued' AND j.queue = q.name AND j.concurrency_key = w.key
          AND j.run_at <= coalesce(%(now)s::timestamptz, now())
          AND (%(tasks)s::text[] IS NULL OR j.task = ANY(%(tasks)s::text[])
               OR NOT EXISTS (SELECT 1 FROM pgqueue.tasks AS t WHERE t.name = j.task))
        ORDER BY j.priority DESC, j.run_at, j.id
        LIMIT greatest(0, least(q.n, q.per_key_limit - (
            SELECT count(*) FROM pgqueue.jobs AS r
            WHERE r.state = 'running' AND r.queue = q.name AND r.concurrency_key = w.key)))
    ) AS c
    UNION ALL
    SELECT c.id, 2 AS lap, NULL AS key,
           row_number() OVER (ORDER BY c.priority DESC, c.run_at, c.id) AS turn
    FROM q
    CROSS JOIN LATERAL (
        SELECT h.id, h.priority, h.run_at FROM (
            SELECT j.id, j.priority, j.run_at, j.concurrency_key FROM pgqueue.jobs AS j
            WHERE j.state = 'queued' AND j.queue = q.name
              AND j.run_at <= coalesce(%(now)s::timestamptz, now())
              AND (%(tasks)s::text[] IS NULL OR j.task = ANY(%(tasks)s::text[])
                   OR NOT EXISTS (SELECT 1 FROM pgqueue.tasks AS t WHERE t.name = j.task))
            ORDER BY j.priority DESC, j.run_at, j.id
            LIMIT %(keyless_scan)s::int
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
        worker_id = %(worker_id)s::uuid,
        started_at = coalesce(%(now)s::timestamptz, clock_timestamp())
    -- By primary key: the number of rows is known only at run time, and a plan made for
    -- a guess would read the whole table.
    WHERE j.id = ANY(ARRAY(SELECT id FROM locked))
    RETURNING j.id, j.queue, j.task, j.args::text, nullif(j.kwargs, '{}')::text, j.priority,
              j.run_at, j.attempts, j.max_attempts, j.unique_key, j.timeout, j.created_at,
              j.started_at, j.trace_context, j.concurrency_key
), moved AS (
    -- The next claim starts after the last key served here.
    UPDATE pgqueue.queues AS qq
    SET key_cursor = last.key
    FROM (SELECT c.key FROM chosen AS c WHERE c.key IS NOT NULL
          ORDER BY c.turn DESC, c.lap DESC, c.key DESC LIMIT 1) AS last
    WHERE qq.name = %(queue)s::text
), recorded AS (
    INSERT INTO pgqueue.queue_starts (queue, started_at, n)
    SELECT %(queue)s::text, clock_timestamp(), count(*)
    FROM claimed
    WHERE (SELECT rate_limit FROM q) IS NOT NULL
    HAVING count(*) > 0
), forgotten AS (
    DELETE FROM pgqueue.queue_starts AS s
    USING pgqueue.queues AS qq
    WHERE s.queue = qq.name AND qq.name = %(queue)s::text
      AND s.started_at < clock_timestamp() - make_interval(secs => qq.rate_period)
)
SELECT * FROM claimed;
