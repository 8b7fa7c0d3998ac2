-- Inserting, reading and changing jobs: enqueue, cancel, retry, list, purge.
-- Format: see pgqueue/sql/__init__.py.

-- name: job_insert_many
-- Insert jobs in input order; a row whose unique_key is taken comes back with a NULL id.
-- A job with depends_on waits (run_at 9999-12-31, a sentinel) until job_settle_children
-- frees it. The jobs come as one JSON document, in order.
WITH input AS MATERIALIZED (
    SELECT nextval('pgqueue.jobs_id_seq') AS id, t.*
    FROM ROWS FROM (jsonb_to_recordset(%(jobs)s::jsonb)
        AS (queue text, task text, args jsonb, kwargs jsonb, priority int,
            run_at timestamptz, delay float8, max_attempts int, unique_key text,
            timeout float8, depends_on jsonb, unique_for float8, trace_context jsonb,
            concurrency_key text))
    WITH ORDINALITY AS t(queue, task, args, kwargs, priority, run_at, delay, max_attempts,
                         unique_key, timeout, depends_on, unique_for, trace_context,
                         concurrency_key, ord)
), inserted AS (
    INSERT INTO pgqueue.jobs
        (id, queue, task, args, kwargs, priority, run_at, max_attempts, unique_key, timeout,
         depends_on, unique_for, trace_context, concurrency_key)
    SELECT id, queue, task, args, kwargs, priority,
           CASE WHEN depends_on IS NOT NULL THEN '9999-12-31 00:00:00+00'
                ELSE coalesce(run_at, now() + make_interval(secs => coalesce(delay, 0))) END,
           max_attempts, unique_key, timeout,
           CASE WHEN depends_on IS NOT NULL
                THEN ARRAY(SELECT jsonb_array_elements_text(depends_on)::bigint) END,
           unique_for, trace_context, concurrency_key
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
         unique_for, trace_context, concurrency_key)
    SELECT queue, task, args, kwargs, priority,
           CASE WHEN depends_on IS NOT NULL THEN '9999-12-31 00:00:00+00'
                ELSE coalesce(run_at, now() + make_interval(secs => coalesce(delay, 0))) END,
           max_attempts, timeout,
           CASE WHEN depends_on IS NOT NULL
                THEN ARRAY(SELECT jsonb_array_elements_text(depends_on)::bigint) END,
           unique_for, trace_context, concurrency_key
    FROM jsonb_to_recordset(%(jobs)s::jsonb)
        AS t(queue text, task text, args jsonb, kwargs jsonb, priority int, run_at timestamptz,
             delay float8, max_attempts int, unique_key text, timeout float8, depends_on jsonb,
             unique_for float8, trace_context jsonb, concurrency_key text)
    RETURNING id
)
SELECT id, NULL::text AS unique_key FROM inserted ORDER BY id;

-- name: job_insert_reported
-- job_insert_keyless for a role that may INSERT into pgqueue.jobs and nothing more, which
-- RETURNING would need SELECT for: the statement asks the insert trigger (flag: its own
-- timestamp) for a notice to this session listing the ids it inserted (migration 0025).
-- Ids are drawn in input order, so sorting them gives the rows back in that order.
INSERT INTO pgqueue.jobs
    (queue, task, args, kwargs, priority, run_at, max_attempts, timeout, unique_for,
     trace_context, concurrency_key)
SELECT queue, task, args, kwargs, priority,
       coalesce(run_at, now() + make_interval(secs => coalesce(delay, 0))),
       max_attempts, timeout, unique_for, trace_context, concurrency_key
FROM (SELECT set_config('pgqueue.report_ids', statement_timestamp()::text, true)) AS flag
CROSS JOIN jsonb_to_recordset(%(jobs)s::jsonb)
    AS t(queue text, task text, args jsonb, kwargs jsonb, priority int, run_at timestamptz,
         delay float8, max_attempts int, timeout float8, unique_for float8,
         trace_context jsonb, concurrency_key text);

-- name: producer_rights
-- Whether this role can read back what enqueue inserts (RETURNING id, unique_key; ids
-- drawn ahead for a COPY), and whether the insert trigger can report ids instead
-- (job_insert_reported; migration 0025). pg_proc is readable by every role.
SELECT has_column_privilege('pgqueue.jobs', 'id', 'SELECT')
           AND has_column_privilege('pgqueue.jobs', 'unique_key', 'SELECT')
           AND has_sequence_privilege('pgqueue.jobs_id_seq', 'USAGE') AS reads,
       EXISTS (SELECT 1 FROM pg_catalog.pg_proc
               WHERE oid = to_regprocedure('pgqueue.jobs_notify_insert()')
                 AND prosrc LIKE '%%pgqueue.report_ids%%') AS reports;

-- name: job_ids
-- Draw `n` ids for jobs about to be copied in (job_copy): the rows carry their ids, which
-- is how a COPY gives them back in order. Ids drawn by one statement are consecutive
-- unless another session drew some in between: then only the first and the last come back
-- (listed is NULL), else the whole list. now() is for created_at and run_at
-- (job_copy_timed). `alone`: this statement is a transaction of its own; drawing ids
-- writes WAL, which would make its commit wait for the disk, and need not: the COPY's
-- commit flushes the WAL past it, and ids lost in a crash before that were used by no row.
WITH drawn AS (
    SELECT nextval('pgqueue.jobs_id_seq') AS id FROM generate_series(1, %(n)s::int)
)
SELECT now() AS now, min(id) AS low, max(id) AS high,
       CASE WHEN max(id) - min(id) + 1 <> count(*) THEN array_agg(id ORDER BY id) END
           AS listed,
       CASE WHEN %(alone)s::bool THEN set_config('synchronous_commit', 'off', true) END
           AS unflushed
FROM drawn;

-- name: job_copy
-- Jobs with ids from job_ids, none with a unique key, a dependency, a delay or a run_at,
-- as rows in COPY's binary format, columns in this order (pgqueue/store/copyin.py);
-- created_at and run_at are now(). Row and statement triggers fire as for an INSERT.
COPY pgqueue.jobs (id, args, kwargs, queue, task, priority, max_attempts, timeout,
                   trace_context, concurrency_key)
FROM STDIN (FORMAT BINARY);

-- name: job_copy_timed
-- job_copy with each row's created_at and run_at: job_ids' now(), and run_at, else that
-- plus the delay, as job_insert_many computes them (the same in the caller's transaction;
-- on its own, the COPY runs a moment after job_ids).
COPY pgqueue.jobs (id, args, kwargs, queue, task, priority, max_attempts, timeout,
                   trace_context, concurrency_key, created_at, run_at)
FROM STDIN (FORMAT BINARY);

-- name: job_insert
-- Insert one job (the common case, lighter than job_insert_many); no row if its unique_key
-- is taken.
INSERT INTO pgqueue.jobs
    (queue, task, args, kwargs, priority, run_at, max_attempts, unique_key, timeout,
     depends_on, unique_for, trace_context, concurrency_key)
VALUES (
    %(queue)s::text, %(task)s::text, %(args)s::jsonb, %(kwargs)s::jsonb, %(priority)s::int,
    CASE WHEN %(depends_on)s::bigint[] IS NOT NULL THEN '9999-12-31 00:00:00+00'
         ELSE coalesce(%(run_at)s::timestamptz,
                       now() + make_interval(secs => coalesce(%(delay)s::float8, 0))) END,
    %(max_attempts)s::int, %(unique_key)s::text, %(timeout)s::float8,
    %(depends_on)s::bigint[], %(unique_for)s::float8, %(trace_context)s::jsonb,
    %(concurrency_key)s::text
)
ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL
    AND (state IN ('queued', 'running') OR unique_until IS NOT NULL)
DO NOTHING
RETURNING id, unique_key;

-- name: job_missing
-- Which of these ids are not jobs (depends_on must name existing jobs).
SELECT i FROM unnest(%(ids)s::bigint[]) AS i
WHERE NOT EXISTS (SELECT 1 FROM pgqueue.jobs AS j WHERE j.id = i);

-- name: job_settle_enqueued
-- Free (or cancel) the children of these parents now, for jobs just enqueued with
-- depends_on whose parents have finished: through a function (migration 0027), so that
-- producers need no UPDATE right on the table.
SELECT pgqueue.settle_children(%(parents)s::bigint[]);

-- name: job_release_unique
-- Free unique keys whose unique_for window has passed, so an enqueue can take them: through
-- a function (migration 0021), so that producers need no UPDATE right on the table.
SELECT pgqueue.release_unique_keys(%(unique_keys)s::text[]);

-- name: job_find_unique
-- The job holding each of these unique keys (queued, running, or within its unique_for).
SELECT unique_key, id FROM pgqueue.jobs
WHERE unique_key = ANY(%(unique_keys)s::text[])
  AND (state IN ('queued', 'running') OR unique_until IS NOT NULL);

-- name: job_get
-- One job, every column.
SELECT * FROM pgqueue.jobs WHERE id = %(id)s::bigint;

-- name: job_outcome
-- What wait() needs to know about a job (progress for its callback).
SELECT state, result, last_error, progress, progress_message
FROM pgqueue.jobs WHERE id = %(id)s::bigint;

-- name: job_trace_context
-- The trace context a job was enqueued with, for the worker's span when the claim did not
-- return it.
SELECT trace_context FROM pgqueue.jobs WHERE id = %(id)s::bigint;

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
        last_error = coalesce(%(reason)s::text, 'cancelled'),
        -- A unique_for window starts when a job ends, however it ends (job_finish_many).
        unique_until = CASE WHEN j.unique_for IS NOT NULL
                            THEN now() + make_interval(
                                secs => least(greatest(j.unique_for, 0), 3153600000)) END
    FROM target WHERE j.id = target.id AND target.state = 'queued'
    RETURNING j.id
), requested AS (
    UPDATE pgqueue.jobs AS j
    SET cancel_requested_at = coalesce(j.cancel_requested_at, now()),
        cancel_reason = coalesce(%(reason)s::text, j.cancel_reason)
    FROM target WHERE j.id = target.id AND target.state = 'running'
    RETURNING j.id
)
SELECT target.state,
       CASE WHEN target.state = 'running'
            THEN pg_notify('pgqueue_cancel', '') END AS told
FROM target;

-- name: job_retry_release
-- Before job_retry: free the unique key of the job to retry where its window has passed
-- (the previous holder finished long enough ago), which only an enqueue of the key did.
SELECT pgqueue.release_unique_keys(
    ARRAY(SELECT unique_key FROM pgqueue.jobs
          WHERE id = %(id)s::bigint AND unique_key IS NOT NULL));

-- name: job_retry_dead_release
-- Before job_retry_dead: the same for the unique keys of the dead jobs to retry.
SELECT pgqueue.release_unique_keys(
    ARRAY(SELECT DISTINCT unique_key FROM pgqueue.jobs
          WHERE state = 'dead' AND unique_key IS NOT NULL
            AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)));

-- name: job_retry
-- Put a dead or cancelled job back in the queue now, with at least one attempt left.
WITH retried AS (
    UPDATE pgqueue.jobs
    SET state = 'queued', run_at = now(), finished_at = NULL, cancel_requested_at = NULL,
        cancel_reason = NULL,
        max_attempts = greatest(max_attempts, least(attempts, 2147483646) + 1)
    WHERE id = %(id)s::bigint AND state IN ('dead', 'cancelled')
      -- Another live job holding the same unique key keeps this one where it is.
      AND NOT EXISTS (
          SELECT 1 FROM pgqueue.jobs AS o
          WHERE o.unique_key = pgqueue.jobs.unique_key AND o.id <> pgqueue.jobs.id
            AND (o.state IN ('queued', 'running') OR o.unique_until IS NOT NULL))
    RETURNING id, queue
)
SELECT id, queue, pg_notify('pgqueue_jobs', queue) FROM retried;

-- name: job_retry_dead
-- `pgqueue jobs retry --all-dead`: re-queue the dead jobs (of `queue`, if given) among the
-- next `batch` by id after `after`; returns the ids retried and the last id looked at (the
-- next page starts there, so a job that dies again meanwhile is not retried twice). Of two
-- dead jobs with one unique key only the first goes back: both cannot be queued.
WITH candidates AS MATERIALIZED (
    SELECT id, unique_key FROM pgqueue.jobs
    WHERE state = 'dead' AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
      AND id > %(after)s::bigint
    ORDER BY id
    LIMIT %(batch)s::int
), picked AS (
    SELECT j.id FROM pgqueue.jobs AS j
    WHERE j.id IN (
        SELECT c.id FROM candidates AS c
        WHERE c.unique_key IS NULL
           OR (NOT EXISTS (SELECT 1 FROM candidates AS d
                           WHERE d.unique_key = c.unique_key AND d.id < c.id)
               AND NOT EXISTS (
                   SELECT 1 FROM pgqueue.jobs AS o
                   WHERE o.unique_key = c.unique_key AND o.id <> c.id
                     AND (o.state IN ('queued', 'running') OR o.unique_until IS NOT NULL))))
      AND j.state = 'dead'
    FOR UPDATE SKIP LOCKED
), retried AS (
    UPDATE pgqueue.jobs AS j
    SET state = 'queued', run_at = now(), finished_at = NULL, cancel_requested_at = NULL,
        cancel_reason = NULL,
        max_attempts = greatest(j.max_attempts, least(j.attempts, 2147483646) + 1)
    FROM picked WHERE j.id = picked.id
    RETURNING j.id, j.queue
)
SELECT (SELECT count(*) FROM retried) AS retried,
       (SELECT max(id) FROM candidates) AS last_id,
       (SELECT count(pg_notify('pgqueue_jobs', q.queue))
        FROM (SELECT DISTINCT queue FROM retried) AS q) AS woken;

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

-- name: job_purge
-- `pgqueue jobs purge`: delete up to `batch` jobs in `state` finished before `before`.
-- Kept, as by job_prune: jobs holding a unique key (their unique_for has not passed) and
-- parents a child still waits on (the child must see how they ended: deleted, it would
-- end cancelled, which nobody asked for).
WITH doomed AS (
    SELECT j.id FROM pgqueue.jobs AS j
    WHERE j.state = %(state)s::text AND j.state IN ('succeeded', 'dead', 'cancelled')
      AND j.finished_at < %(before)s::timestamptz
      AND (%(queue)s::text IS NULL OR j.queue = %(queue)s::text)
      AND (j.unique_until IS NULL OR j.unique_until <= now())
      AND NOT EXISTS (SELECT 1 FROM pgqueue.jobs AS c
                      WHERE c.depends_on && ARRAY[j.id] AND c.state = 'queued'
                        AND c.depends_on IS NOT NULL)
    ORDER BY j.finished_at
    LIMIT %(batch)s::int
    FOR UPDATE OF j SKIP LOCKED
)
DELETE FROM pgqueue.jobs AS j USING doomed WHERE j.id = doomed.id
RETURNING j.id;
