-- pgqueue's runtime queries. Each block starts with "-- name: <query_name>" and a one-line
-- description; the loader in __init__.py turns the file into {name: query}. Parameters are
-- psycopg named placeholders with explicit casts. `now` parameters may be NULL, meaning the
-- database clock (tests pin them). Every query here is used by pgqueue/store.py, and only there.

-- name: job_insert_many
-- Insert jobs in input order; a row whose unique_key is taken comes back with a NULL id.
-- A job with depends_on waits (run_at 9999-12-31, a sentinel) until job_settle_children
-- frees it. The jobs come as one JSON document, in order.
WITH input AS MATERIALIZED (
    SELECT nextval('pgqueue.jobs_id_seq') AS id, t.*
    FROM ROWS FROM (jsonb_to_recordset(%(jobs)s::jsonb)
        AS (queue text, task text, args jsonb, kwargs jsonb, priority int,
            run_at timestamptz, delay float8, max_attempts int, unique_key text,
            timeout float8, depends_on jsonb, unique_for float8))
    WITH ORDINALITY AS t(queue, task, args, kwargs, priority, run_at, delay, max_attempts,
                         unique_key, timeout, depends_on, unique_for, ord)
), inserted AS (
    INSERT INTO pgqueue.jobs
        (id, queue, task, args, kwargs, priority, run_at, max_attempts, unique_key, timeout,
         depends_on, unique_for)
    SELECT id, queue, task, args, kwargs, priority,
           CASE WHEN depends_on IS NOT NULL THEN '9999-12-31 00:00:00+00'
                ELSE coalesce(run_at, now() + make_interval(secs => coalesce(delay, 0))) END,
           max_attempts, unique_key, timeout,
           CASE WHEN depends_on IS NOT NULL
                THEN ARRAY(SELECT jsonb_array_elements_text(depends_on)::bigint) END,
           unique_for
    FROM input
    ORDER BY ord
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL
        AND (state IN ('queued', 'running') OR unique_until IS NOT NULL)
    DO NOTHING
    RETURNING id
)
SELECT inserted.id, input.unique_key
FROM input LEFT JOIN inserted USING (id)
ORDER BY input.ord;

-- name: job_insert_keyless
-- Insert jobs none of which has a unique key, so every one is inserted: lighter than
-- job_insert_many. Ids are drawn from the sequence in input order, so sorting them gives
-- the rows back in that order.
WITH inserted AS (
    INSERT INTO pgqueue.jobs
        (queue, task, args, kwargs, priority, run_at, max_attempts, timeout, depends_on,
         unique_for)
    SELECT queue, task, args, kwargs, priority,
           CASE WHEN depends_on IS NOT NULL THEN '9999-12-31 00:00:00+00'
                ELSE coalesce(run_at, now() + make_interval(secs => coalesce(delay, 0))) END,
           max_attempts, timeout,
           CASE WHEN depends_on IS NOT NULL
                THEN ARRAY(SELECT jsonb_array_elements_text(depends_on)::bigint) END,
           unique_for
    FROM jsonb_to_recordset(%(jobs)s::jsonb)
        AS t(queue text, task text, args jsonb, kwargs jsonb, priority int, run_at timestamptz,
             delay float8, max_attempts int, unique_key text, timeout float8, depends_on jsonb,
             unique_for float8)
    RETURNING id
)
SELECT id, NULL::text AS unique_key FROM inserted ORDER BY id;

-- name: job_insert
-- Insert one job (the common case, lighter than job_insert_many); no row if its unique_key
-- is taken.
INSERT INTO pgqueue.jobs
    (queue, task, args, kwargs, priority, run_at, max_attempts, unique_key, timeout,
     depends_on, unique_for)
VALUES (
    %(queue)s::text, %(task)s::text, %(args)s::jsonb, %(kwargs)s::jsonb, %(priority)s::int,
    CASE WHEN %(depends_on)s::bigint[] IS NOT NULL THEN '9999-12-31 00:00:00+00'
         ELSE coalesce(%(run_at)s::timestamptz,
                       now() + make_interval(secs => coalesce(%(delay)s::float8, 0))) END,
    %(max_attempts)s::int, %(unique_key)s::text, %(timeout)s::float8,
    %(depends_on)s::bigint[], %(unique_for)s::float8
)
ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL
    AND (state IN ('queued', 'running') OR unique_until IS NOT NULL)
DO NOTHING
RETURNING id, unique_key;

-- name: job_missing
-- Which of these ids are not jobs (depends_on must name existing jobs).
SELECT i FROM unnest(%(ids)s::bigint[]) AS i
WHERE NOT EXISTS (SELECT 1 FROM pgqueue.jobs AS j WHERE j.id = i);

-- name: job_settle_children
-- Children waiting on `parents` (NULL: every waiting job, the periodic sweep, a page of
-- ids above `after` at a time): a child all of whose parents succeeded becomes due now; a
-- child with a dead, cancelled or deleted parent is cancelled, and so, in turn, are its own
-- waiting children. Returns the counts and the last id looked at (the sweep's next page).
-- Prepared once (a generic plan), it comes back at once, with one index probe, when no job
-- waits on another at all.
WITH RECURSIVE waiting AS MATERIALIZED (
    SELECT c.id, c.depends_on FROM pgqueue.jobs AS c
    WHERE c.state = 'queued' AND c.depends_on IS NOT NULL
      AND c.run_at = '9999-12-31 00:00:00+00'
      AND (%(parents)s::bigint[] IS NULL OR c.depends_on && %(parents)s::bigint[])
      AND c.id > coalesce(%(after)s::bigint, 0)
      AND EXISTS (SELECT 1 FROM pgqueue.jobs AS x
                  WHERE x.state = 'queued' AND x.run_at = '9999-12-31 00:00:00+00')
    ORDER BY c.id
    LIMIT 5000  -- the sweep pages through a large backlog, `after` the last id
), doomed AS (
    SELECT w.id FROM waiting AS w
    -- A parent that will never succeed: dead, cancelled, or gone (deleted by hand).
    WHERE EXISTS (SELECT 1 FROM unnest(w.depends_on) AS d(parent)
                  WHERE NOT EXISTS (SELECT 1 FROM pgqueue.jobs AS p
                                    WHERE p.id = d.parent
                                      AND p.state IN ('queued', 'running', 'succeeded')))
    UNION
    -- Lateral, so each doomed job looks up its own children in the depends_on index (a
    -- plain join may scan the whole table for the first, empty, round of the recursion).
    SELECT g.id FROM doomed AS d
    CROSS JOIN LATERAL (
        SELECT c.id FROM pgqueue.jobs AS c
        WHERE c.depends_on && ARRAY[d.id] AND c.state = 'queued' AND c.depends_on IS NOT NULL
        OFFSET 0  -- keeps the subquery from being flattened into a join
    ) AS g
), cancelled AS (
    UPDATE pgqueue.jobs AS j
    SET state = 'cancelled', finished_at = now(),
        last_error = 'Cancelled: a job it depends on ended dead or cancelled, or was deleted'
    FROM doomed
    WHERE j.id = doomed.id AND j.state = 'queued'
    RETURNING j.id
), released AS (
    UPDATE pgqueue.jobs AS j
    SET run_at = now()
    FROM waiting AS w
    WHERE j.id = w.id
      -- Every parent exists and succeeded (a deleted one does not count as a success).
      AND NOT EXISTS (SELECT 1 FROM unnest(w.depends_on) AS d(parent)
                      WHERE NOT EXISTS (SELECT 1 FROM pgqueue.jobs AS p
                                        WHERE p.id = d.parent AND p.state = 'succeeded'))
    RETURNING j.id, j.queue
)
SELECT (SELECT count(*) FROM cancelled) AS cancelled,
       (SELECT count(*) FROM released) AS released,
       (SELECT count(pg_notify('pgqueue_jobs', q.queue))
        FROM (SELECT DISTINCT queue FROM released) AS q) AS woken,
       (SELECT max(id) FROM waiting) AS last_id,
       (SELECT count(*) FROM waiting) AS seen;

-- name: job_release_unique
-- Free unique keys whose unique_for window has passed, so an enqueue can take them.
UPDATE pgqueue.jobs SET unique_until = NULL
WHERE unique_key = ANY(%(unique_keys)s::text[])
  AND unique_until IS NOT NULL AND unique_until <= now();

-- name: job_find_unique
-- The job holding each of these unique keys (queued, running, or within its unique_for).
SELECT unique_key, id FROM pgqueue.jobs
WHERE unique_key = ANY(%(unique_keys)s::text[])
  AND (state IN ('queued', 'running') OR unique_until IS NOT NULL);

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
          AND (q.paused OR q.concurrency_limit IS NOT NULL OR q.rate_limit IS NOT NULL))
    ORDER BY c.priority DESC, c.run_at, c.id
    LIMIT %(limit)s::int
)
UPDATE pgqueue.jobs AS j
SET state = 'running',
    attempts = j.attempts + 1,
    worker_id = %(worker_id)s::uuid,
    started_at = coalesce(%(now)s::timestamptz, now())
FROM picked
WHERE j.id = picked.id
RETURNING j.id, j.queue, j.task, j.args, j.kwargs, j.priority, j.run_at, j.attempts,
          j.max_attempts, j.unique_key, j.timeout, j.created_at, j.started_at;

-- name: queue_lock_limited
-- First statement of a limited claim: lock the limited queues of `queues` (NULL: all), so
-- that claimers of one limited queue take turns. The counts are read by the next statement,
-- which sees every claim committed before the lock was granted.
SELECT q.name FROM pgqueue.queues AS q
WHERE (%(queues)s::text[] IS NULL OR q.name = ANY(%(queues)s::text[]))
  AND NOT q.paused
  AND (q.concurrency_limit IS NOT NULL OR q.rate_limit IS NOT NULL)
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
               coalesce(q.concurrency_limit - (
                   SELECT count(*) FROM pgqueue.jobs AS r
                   WHERE r.state = 'running' AND r.queue = q.name), %(limit)s::int),
               coalesce(q.rate_limit - (
                   SELECT coalesce(sum(s.n), 0) FROM pgqueue.queue_starts AS s
                   WHERE s.queue = q.name
                     AND s.started_at > clock_timestamp() - make_interval(secs => q.rate_period)
               ), %(limit)s::int)
           ) AS n
    FROM pgqueue.queues AS q
    WHERE q.name = ANY(%(queues)s::text[])
      AND EXISTS (SELECT 1 FROM pgqueue.workers AS wk WHERE wk.id = %(worker_id)s::uuid)
), picked AS (
    SELECT c.id
    FROM budget AS b
    CROSS JOIN LATERAL (
        SELECT j.id, j.priority, j.run_at FROM pgqueue.jobs AS j
        WHERE j.state = 'queued' AND j.queue = b.queue
          AND j.run_at <= coalesce(%(now)s::timestamptz, now())
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
    RETURNING j.id, j.queue, j.task, j.args, j.kwargs, j.priority, j.run_at, j.attempts,
              j.max_attempts, j.unique_key, j.timeout, j.created_at, j.started_at
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

-- name: queue_config
-- Queues with settings: paused, cluster-wide limits, retention overrides.
SELECT name, paused, concurrency_limit, rate_limit, rate_period, updated_at,
       retain_succeeded, retain_dead, retain_cancelled
FROM pgqueue.queues
ORDER BY name;

-- name: queue_set
-- Create or change a queue's settings; every worker is told.
WITH upserted AS (
    INSERT INTO pgqueue.queues AS q
        (name, paused, concurrency_limit, rate_limit, rate_period, retain_succeeded,
         retain_dead, retain_cancelled)
    VALUES (%(name)s::text, coalesce(%(paused)s::boolean, false),
            %(concurrency_limit)s::int, %(rate_limit)s::int,
            coalesce(%(rate_period)s::float8, 1), %(retain_succeeded)s::float8,
            %(retain_dead)s::float8, %(retain_cancelled)s::float8)
    ON CONFLICT (name) DO UPDATE SET
        paused = coalesce(%(paused)s::boolean, q.paused),
        concurrency_limit = CASE WHEN %(set_concurrency)s::boolean
                                 THEN %(concurrency_limit)s::int ELSE q.concurrency_limit END,
        rate_limit = CASE WHEN %(set_rate)s::boolean
                          THEN %(rate_limit)s::int ELSE q.rate_limit END,
        rate_period = coalesce(%(rate_period)s::float8, q.rate_period),
        retain_succeeded = CASE WHEN %(set_retain_succeeded)s::boolean
                                THEN %(retain_succeeded)s::float8 ELSE q.retain_succeeded END,
        retain_dead = CASE WHEN %(set_retain_dead)s::boolean
                           THEN %(retain_dead)s::float8 ELSE q.retain_dead END,
        retain_cancelled = CASE WHEN %(set_retain_cancelled)s::boolean
                                THEN %(retain_cancelled)s::float8 ELSE q.retain_cancelled END,
        updated_at = now()
    RETURNING q.name, q.paused
)
SELECT name, paused, pg_notify('pgqueue_queues', name) AS told,
       CASE WHEN NOT paused THEN pg_notify('pgqueue_jobs', name) END AS woken
FROM upserted;

-- name: job_next_run_at
-- Seconds until the next queued job of `queues` (NULL: every queue) becomes due, if any.
SELECT extract(epoch FROM min(run_at) - coalesce(%(now)s::timestamptz, now()))::float8
FROM pgqueue.jobs
WHERE state = 'queued'
  AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
  AND run_at > coalesce(%(now)s::timestamptz, now());

-- name: job_finish_many
-- Record a batch of attempt outcomes. Each row is applied only if the job is still running
-- the same attempt for the same worker, so a late outcome never overwrites a rescue or a
-- cancel. `refund` gives the attempt back (Retry, shutdown). Re-queued jobs wake workers.
WITH o AS MATERIALIZED (
    SELECT * FROM jsonb_to_recordset(%(outcomes)s::jsonb)
        AS o(id bigint, attempt int, state text, result jsonb, error jsonb, delay float8,
             refund int)
), updated AS (
    UPDATE pgqueue.jobs AS j
    -- A job asked to cancel is not queued again: the request is on the row, whether or not
    -- its notification reached this worker.
    SET state = CASE WHEN o.state = 'queued' AND j.cancel_requested_at IS NOT NULL
                     THEN 'cancelled' ELSE o.state END,
        attempts = j.attempts - o.refund,
        run_at = CASE WHEN o.state = 'queued' AND j.cancel_requested_at IS NULL
                      THEN now() + make_interval(secs => coalesce(o.delay, 0))
                      ELSE j.run_at END,
        result = o.result,
        last_error = CASE WHEN o.state = 'queued' AND j.cancel_requested_at IS NOT NULL
                          THEN 'Cancelled: cancel requested while it ran'
                          ELSE coalesce(o.error ->> 'error', j.last_error) END,
        errors = CASE WHEN o.error IS NULL THEN j.errors
                      ELSE j.errors || jsonb_build_array(
                          o.error || jsonb_build_object('at', now())) END,
        finished_at = CASE WHEN o.state = 'queued' AND j.cancel_requested_at IS NULL
                           THEN NULL ELSE now() END,
        unique_until = CASE WHEN (o.state <> 'queued' OR j.cancel_requested_at IS NOT NULL)
                                 AND j.unique_for IS NOT NULL
                            THEN now() + make_interval(secs => j.unique_for) END
    FROM o
    -- The jobs are read by primary key (the id list), and the guard sits inside IS TRUE so
    -- no other index can serve it. A scan of this worker's running jobs instead would grow
    -- with every job it ran since the last vacuum (dead index entries), batch after batch.
    WHERE j.id = ANY(%(ids)s::bigint[]) AND j.id = o.id
      AND (j.state = 'running' AND j.attempts = o.attempt
           AND j.worker_id = %(worker_id)s::uuid) IS TRUE
    RETURNING j.id, j.state, j.queue
)
SELECT u.id, u.state,
       (SELECT count(pg_notify('pgqueue_jobs', q.queue))
        FROM (SELECT DISTINCT queue FROM updated WHERE state = 'queued') AS q) AS woken,
       -- Whether any job waits on another: if none does, job_settle_children is skipped.
       EXISTS (SELECT 1 FROM pgqueue.jobs AS x
               WHERE x.state = 'queued' AND x.run_at = '9999-12-31 00:00:00+00') AS waiting
FROM updated AS u;

-- name: job_rescue_lost
-- Jobs running for a worker whose heartbeat is older than its lease (or whose row is gone)
-- go back to queued with the attempt counted and a backoff of 2^(attempts-1) seconds, or to
-- dead when attempts are used up. Safe to run on every node at once: rows are locked with
-- SKIP LOCKED and the update re-checks that each job is still running.
WITH lost AS (
    SELECT j.id FROM pgqueue.jobs AS j
    WHERE j.state = 'running'
      -- The rescuer knows it is alive, whatever its heartbeat says (it may have been paused).
      AND j.worker_id IS DISTINCT FROM %(me)s::uuid
      AND NOT EXISTS (
          SELECT 1 FROM pgqueue.workers AS w
          WHERE w.id = j.worker_id
            AND w.heartbeat_at > coalesce(%(now)s::timestamptz, now())
                                 - make_interval(secs => w.lease))
    FOR UPDATE OF j SKIP LOCKED
), rescued AS (
    UPDATE pgqueue.jobs AS j
    SET state = CASE WHEN j.cancel_requested_at IS NOT NULL THEN 'cancelled'
                     WHEN j.attempts >= j.max_attempts THEN 'dead' ELSE 'queued' END,
        run_at = CASE WHEN j.attempts >= j.max_attempts OR j.cancel_requested_at IS NOT NULL
                      THEN j.run_at
                      ELSE now() + make_interval(secs => least(power(2, j.attempts - 1), 3600))
                 END,
        finished_at = CASE WHEN j.attempts >= j.max_attempts
                             OR j.cancel_requested_at IS NOT NULL THEN now() END,
        last_error = CASE WHEN j.cancel_requested_at IS NOT NULL
                          THEN 'Cancelled: cancel requested, and its worker stopped heartbeating'
                          ELSE 'WorkerLost: the worker running this attempt stopped heartbeating'
                     END,
        errors = j.errors || jsonb_build_array(jsonb_build_object(
            'attempt', j.attempts, 'at', now(), 'worker_id', j.worker_id,
            'error', 'WorkerLost: the worker running this attempt stopped heartbeating'))
    FROM lost
    WHERE j.id = lost.id AND j.state = 'running'
    RETURNING j.id, j.state, j.queue
)
SELECT r.id, r.state,
       (SELECT count(pg_notify('pgqueue_jobs', q.queue))
        FROM (SELECT DISTINCT queue FROM rescued WHERE state = 'queued') AS q) AS woken
FROM rescued AS r;

-- name: worker_prune
-- Forget workers silent past their lease (run right after job_rescue_lost took their jobs;
-- a worker that was only slow registers again at its next heartbeat).
DELETE FROM pgqueue.workers
WHERE heartbeat_at <= coalesce(%(now)s::timestamptz, now()) - make_interval(secs => lease)
  AND id IS DISTINCT FROM %(me)s::uuid
RETURNING id;

-- name: job_prune
-- Delete up to `batch` finished jobs older than their retention (per queue, else the
-- given defaults, in seconds), oldest first. `horizon` (the smallest retention in force)
-- bounds the index scan. Jobs still holding a unique key are kept until it is released.
WITH doomed AS (
    SELECT j.id FROM pgqueue.jobs AS j
    LEFT JOIN pgqueue.queues AS q ON q.name = j.queue
    WHERE j.state IN ('succeeded', 'dead', 'cancelled')
      AND j.finished_at < now() - make_interval(secs => %(horizon)s::float8)
      AND j.finished_at < now() - make_interval(secs => CASE j.state
              WHEN 'succeeded' THEN coalesce(q.retain_succeeded, %(succeeded)s::float8)
              WHEN 'dead' THEN coalesce(q.retain_dead, %(dead)s::float8)
              ELSE coalesce(q.retain_cancelled, %(cancelled)s::float8) END)
      AND (j.unique_until IS NULL OR j.unique_until <= now())
      -- A parent stays while a child waits on it: the child must see how it ended.
      AND NOT EXISTS (SELECT 1 FROM pgqueue.jobs AS c
                      WHERE c.depends_on && ARRAY[j.id] AND c.state = 'queued'
                        AND c.depends_on IS NOT NULL)
    ORDER BY j.finished_at
    LIMIT %(batch)s::int
    FOR UPDATE OF j SKIP LOCKED
)
DELETE FROM pgqueue.jobs AS j USING doomed WHERE j.id = doomed.id
RETURNING j.id;

-- name: job_delete_finished
-- Retention 0: delete these jobs now that they finished.
DELETE FROM pgqueue.jobs AS j
WHERE j.id = ANY(%(ids)s::bigint[]) AND j.state IN ('succeeded', 'dead', 'cancelled')
  AND j.unique_until IS NULL
  AND NOT EXISTS (SELECT 1 FROM pgqueue.jobs AS c
                  WHERE c.depends_on && ARRAY[j.id] AND c.state = 'queued'
                    AND c.depends_on IS NOT NULL);

-- name: job_purge
-- `pgqueue jobs purge`: delete up to `batch` jobs in `state` finished before `before`.
WITH doomed AS (
    SELECT id FROM pgqueue.jobs
    WHERE state = %(state)s::text AND state IN ('succeeded', 'dead', 'cancelled')
      AND finished_at < %(before)s::timestamptz
      AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
    ORDER BY finished_at
    LIMIT %(batch)s::int
    FOR UPDATE SKIP LOCKED
)
DELETE FROM pgqueue.jobs AS j USING doomed WHERE j.id = doomed.id
RETURNING j.id;

-- name: job_retry_dead
-- `pgqueue jobs retry --all-dead`: re-queue up to `batch` dead jobs (of `queue`, if given).
WITH picked AS (
    SELECT id FROM pgqueue.jobs
    WHERE state = 'dead' AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
      AND NOT EXISTS (
          SELECT 1 FROM pgqueue.jobs AS o
          WHERE o.unique_key = jobs.unique_key AND o.id <> jobs.id
            AND (o.state IN ('queued', 'running') OR o.unique_until IS NOT NULL))
    ORDER BY id
    LIMIT %(batch)s::int
    FOR UPDATE SKIP LOCKED
), retried AS (
    UPDATE pgqueue.jobs AS j
    SET state = 'queued', run_at = now(), finished_at = NULL, cancel_requested_at = NULL,
        max_attempts = greatest(j.max_attempts, j.attempts + 1)
    FROM picked WHERE j.id = picked.id
    RETURNING j.id, j.queue
)
SELECT r.id,
       (SELECT count(pg_notify('pgqueue_jobs', q.queue))
        FROM (SELECT DISTINCT queue FROM retried) AS q) AS woken
FROM retried AS r;

-- name: job_list
-- Jobs, newest first, filtered; page with `before_id` (the last id of the previous page).
SELECT id, queue, task, state, priority, attempts, max_attempts, run_at, created_at,
       started_at, finished_at, last_error
FROM pgqueue.jobs
WHERE (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(state)s::text IS NULL OR state = %(state)s::text)
  AND (%(task)s::text IS NULL OR task = %(task)s::text)
  AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s::timestamptz)
  AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s::bigint)
ORDER BY id DESC
LIMIT %(limit)s::int;

-- name: throughput
-- Per minute over the last `minutes`: jobs finished by state, and p50 enqueue-to-start
-- latency of the jobs started, for the dashboard's chart.
SELECT m.minute,
       count(j.id) FILTER (WHERE j.state = 'succeeded') AS succeeded,
       count(j.id) FILTER (WHERE j.state = 'dead') AS dead,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM j.started_at - j.run_at))
           AS latency_p50
FROM generate_series(date_trunc('minute', now()) - make_interval(mins => %(minutes)s::int - 1),
                     date_trunc('minute', now()), interval '1 minute') AS m(minute)
LEFT JOIN pgqueue.jobs AS j
  ON j.finished_at >= m.minute AND j.finished_at < m.minute + interval '1 minute'
 AND j.state IN ('succeeded', 'dead')
GROUP BY m.minute
ORDER BY m.minute;

-- name: metrics_jobs
-- Gauges for /metrics: jobs by queue and state, and the oldest due job's age per queue.
SELECT queue, state, count(*) AS n,
       extract(epoch FROM now() - min(run_at) FILTER (WHERE state = 'queued' AND run_at <= now()))
           AS oldest_queued_age
FROM pgqueue.jobs
GROUP BY queue, state;

-- name: metrics_recent
-- Jobs finished in the last hour, for the latency and duration histograms and outcomes.
SELECT queue, task, state, attempts,
       extract(epoch FROM started_at - run_at)::float8 AS latency,
       extract(epoch FROM finished_at - started_at)::float8 AS duration,
       last_error LIKE 'WorkerLost%%' AS rescued
FROM pgqueue.jobs
WHERE state IN ('succeeded', 'dead', 'cancelled')
  AND finished_at > now() - interval '1 hour'
  AND started_at IS NOT NULL;

-- name: job_get
-- One job, every column.
SELECT * FROM pgqueue.jobs WHERE id = %(id)s::bigint;

-- name: job_outcome
-- What wait() needs to know about a job.
SELECT state, result, last_error FROM pgqueue.jobs WHERE id = %(id)s::bigint;

-- name: job_cancel
-- Cancel a job that has not finished. A queued job is cancelled at once. A running one gets
-- cancel_requested_at: its worker reads that (woken by a notification that is only a hint,
-- or at its next heartbeat), and the outcome write and the rescue honour it. Returns the
-- state the job had.
WITH target AS (
    SELECT id, state FROM pgqueue.jobs WHERE id = %(id)s::bigint FOR UPDATE
), cancelled AS (
    UPDATE pgqueue.jobs AS j
    SET state = 'cancelled', finished_at = now(),
        last_error = coalesce(%(reason)s::text, 'cancelled')
    FROM target WHERE j.id = target.id AND target.state = 'queued'
    RETURNING j.id
), requested AS (
    UPDATE pgqueue.jobs AS j
    SET cancel_requested_at = coalesce(j.cancel_requested_at, now())
    FROM target WHERE j.id = target.id AND target.state = 'running'
    RETURNING j.id
)
SELECT target.state,
       CASE WHEN target.state = 'running'
            THEN pg_notify('pgqueue_cancel', '') END AS told
FROM target;

-- name: job_cancel_requests
-- Attempts running for this worker that were asked to cancel: (id, attempt).
SELECT id, attempts FROM pgqueue.jobs
WHERE state = 'running' AND worker_id = %(worker_id)s::uuid
  AND cancel_requested_at IS NOT NULL;

-- name: job_retry
-- Put a dead or cancelled job back in the queue now, with at least one attempt left.
WITH retried AS (
    UPDATE pgqueue.jobs
    SET state = 'queued', run_at = now(), finished_at = NULL, cancel_requested_at = NULL,
        max_attempts = greatest(max_attempts, attempts + 1)
    WHERE id = %(id)s::bigint AND state IN ('dead', 'cancelled')
      -- Another live job holding the same unique key keeps this one where it is.
      AND NOT EXISTS (
          SELECT 1 FROM pgqueue.jobs AS o
          WHERE o.unique_key = pgqueue.jobs.unique_key AND o.id <> pgqueue.jobs.id
            AND (o.state IN ('queued', 'running') OR o.unique_until IS NOT NULL))
    RETURNING id, queue
)
SELECT id, queue, pg_notify('pgqueue_jobs', queue) FROM retried;

-- name: queue_stats
-- Per queue: jobs by state, the scheduled ones, throughput and enqueue-to-start latency over
-- the last five minutes, and the oldest due job's age in seconds.
SELECT queue,
       count(*) FILTER (WHERE state = 'queued' AND run_at <= now()) AS queued,
       count(*) FILTER (WHERE state = 'queued' AND run_at > now()) AS scheduled,
       count(*) FILTER (WHERE state = 'running') AS running,
       count(*) FILTER (WHERE state = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE state = 'dead') AS dead,
       count(*) FILTER (WHERE state = 'cancelled') AS cancelled,
       count(*) FILTER (WHERE state = 'succeeded' AND finished_at > now() - interval '5 minutes')
           AS succeeded_5m,
       extract(epoch FROM now() - min(run_at) FILTER (WHERE state = 'queued' AND run_at <= now()))
           AS oldest_queued_age,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - run_at))
           FILTER (WHERE started_at > now() - interval '5 minutes') AS latency_p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - run_at))
           FILTER (WHERE started_at > now() - interval '5 minutes') AS latency_p95
FROM pgqueue.jobs
GROUP BY queue
ORDER BY queue;

-- name: schedule_register
-- Declare a schedule. A new one starts from `last_fire_at` (the latest fire time before
-- now: it is not replayed); a changed cron or time zone starts afresh the same way. Returns
-- the last fire time on record, from which the scheduler catches up what it missed.
INSERT INTO pgqueue.schedules AS s
    (name, task, cron, timezone, args, kwargs, queue, priority, last_fire_at, next_fire_at)
VALUES (%(name)s::text, %(task)s::text, %(cron)s::text, %(timezone)s::text, %(args)s::jsonb,
        %(kwargs)s::jsonb, %(queue)s::text, %(priority)s::int, %(last_fire_at)s::timestamptz,
        %(next_fire_at)s::timestamptz)
ON CONFLICT (name) DO UPDATE SET
    task = EXCLUDED.task, args = EXCLUDED.args, kwargs = EXCLUDED.kwargs,
    queue = EXCLUDED.queue, priority = EXCLUDED.priority,
    last_fire_at = CASE WHEN s.cron = EXCLUDED.cron AND s.timezone = EXCLUDED.timezone
                        THEN s.last_fire_at ELSE EXCLUDED.last_fire_at END,
    cron = EXCLUDED.cron, timezone = EXCLUDED.timezone,
    next_fire_at = EXCLUDED.next_fire_at, updated_at = now()
RETURNING s.last_fire_at;

-- name: schedule_claim_fire
-- Compare-and-set: move last_fire_at forward to this fire time. Only one transaction gets a
-- row back for a given fire time; it enqueues the job in the same transaction.
UPDATE pgqueue.schedules
SET last_fire_at = %(fire_at)s::timestamptz, next_fire_at = %(next_fire_at)s::timestamptz,
    updated_at = now()
WHERE name = %(name)s::text
  AND (last_fire_at IS NULL OR last_fire_at < %(fire_at)s::timestamptz)
RETURNING task, args, kwargs, queue, priority;

-- name: schedule_set_job
-- Remember the job a schedule's last fire enqueued.
UPDATE pgqueue.schedules SET last_job_id = %(job_id)s::bigint WHERE name = %(name)s::text;

-- name: schedule_list
-- Every schedule, for `pgqueue schedules`.
SELECT name, task, cron, timezone, args, kwargs, queue, last_fire_at, next_fire_at, last_job_id
FROM pgqueue.schedules
ORDER BY name;

-- name: worker_list
-- Registered workers, with how long ago each heartbeat was and the jobs each is running.
SELECT w.id, w.host, w.pid, w.queues, w.concurrency, w.lease, w.started_at, w.heartbeat_at,
       extract(epoch FROM now() - w.heartbeat_at)::float8 AS heartbeat_age,
       extract(epoch FROM now() - w.heartbeat_at)::float8 < w.lease AS alive,
       (SELECT count(*) FROM pgqueue.jobs AS j
        WHERE j.state = 'running' AND j.worker_id = w.id) AS running
FROM pgqueue.workers AS w
ORDER BY w.host, w.started_at;

-- name: worker_register
-- Announce a worker process.
INSERT INTO pgqueue.workers (id, host, pid, queues, concurrency, lease)
VALUES (%(id)s::uuid, %(host)s::text, %(pid)s::int, %(queues)s::text[], %(concurrency)s::int,
        %(lease)s::float8)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = now();

-- name: worker_heartbeat
-- A worker is alive. Returns nothing if its row is gone (it was declared lost).
UPDATE pgqueue.workers SET heartbeat_at = now() WHERE id = %(id)s::uuid RETURNING id;

-- name: worker_unregister
-- A worker leaves cleanly.
DELETE FROM pgqueue.workers WHERE id = %(id)s::uuid;

-- name: schema_version
-- The applied pgqueue migration, or nothing when the schema is not there.
SELECT version_num FROM pgqueue.alembic_version;
