-- The dashboard's reads and bulk actions. Every query is bounded, so a page stays fast when
-- pgqueue.jobs holds millions of rows: live states are counted from the partial indexes of
-- queued and running rows (and capped), finished jobs only within a time window (the
-- finished_at index), and the explorer reads a fixed number of the newest ids per page.
-- Format: see pgqueue/sql/__init__.py.

-- name: web_snapshot
-- The dashboard's figures come from one snapshot, so no number differs between two panels.
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY;

-- name: web_now
-- The snapshot's time, in seconds since the epoch (the chart's buckets are aligned on it).
SELECT extract(epoch FROM now())::float8 AS now;

-- name: web_live_counts
-- Per queue: due, scheduled and running jobs, each count stopping at `cap` (then `capped`).
-- Reads the partial indexes of queued and running rows only, never finished history.
WITH queued AS (
    SELECT queue, run_at <= now() AS due
    FROM pgqueue.jobs WHERE state = 'queued'
    LIMIT %(cap)s::int
), running AS (
    SELECT queue FROM pgqueue.jobs WHERE state = 'running' LIMIT %(cap)s::int
), counts AS (
    SELECT queue, count(*) FILTER (WHERE due) AS queued,
           count(*) FILTER (WHERE NOT due) AS scheduled, 0 AS running
    FROM queued GROUP BY queue
    UNION ALL
    SELECT queue, 0, 0, count(*) FROM running GROUP BY queue
)
SELECT queue, sum(queued)::bigint AS queued, sum(scheduled)::bigint AS scheduled,
       sum(running)::bigint AS running,
       (SELECT count(*) FROM queued) >= %(cap)s::int
           OR (SELECT count(*) FROM running) >= %(cap)s::int AS capped,
       (SELECT extract(epoch FROM now() - min(run_at))::float8 FROM pgqueue.jobs AS o
        WHERE o.state = 'queued' AND o.queue = counts.queue AND o.run_at <= now())
           AS oldest_waiting_age
FROM counts
GROUP BY queue
ORDER BY queue;

-- name: web_breakdown
-- Jobs finished in the last `window` seconds, per queue and per task (one pass, grouping
-- sets): outcomes, failure ratio, p50/p95 of run time and of enqueue-to-start latency,
-- the latest error.
WITH done AS (
    SELECT queue, task, j.state, finished_at, last_error,
           greatest(extract(epoch FROM started_at - run_at), 0)::float8 AS latency,
           greatest(extract(epoch FROM finished_at - started_at), 0)::float8 AS duration
    -- One range of jobs_finished_idx (state, finished_at) per final state: `state IN` the
    -- three would be taken for the index's own predicate, and the whole index read.
    FROM (VALUES ('succeeded'), ('dead'), ('cancelled')) AS s(state)
    CROSS JOIN LATERAL (
        SELECT * FROM pgqueue.jobs AS j
        WHERE j.state = s.state AND j.state IN ('succeeded', 'dead', 'cancelled')
          AND j.finished_at >= now() - make_interval(secs => %(window)s::float8)) AS j
)
SELECT CASE WHEN grouping(queue) = 0 THEN 'queue' ELSE 'task' END AS by,
       coalesce(queue, task) AS key,
       count(*) FILTER (WHERE state = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE state = 'dead') AS dead,
       count(*) FILTER (WHERE state = 'cancelled') AS cancelled,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY duration) AS duration_p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY duration) AS duration_p95,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY latency) AS latency_p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY latency) AS latency_p95,
       (array_agg(last_error ORDER BY finished_at DESC)
            FILTER (WHERE state = 'dead'))[1] AS last_error
FROM done
GROUP BY GROUPING SETS ((queue), (task))
ORDER BY 1, 2
LIMIT 1000;

-- name: web_series
-- Jobs finished in the last `window` seconds, in buckets of `step` seconds, by queue, task
-- or neither (`by` = 'queue', 'task', 'all'), optionally of one queue or task: outcomes and
-- p50/p95 latency and run time. The eight busiest keys are kept; the rest add up in one row
-- a bucket with `other` true (and a NULL key: a queue may be named '(other)').
WITH done AS MATERIALIZED (
    SELECT CASE %(by)s::text WHEN 'queue' THEN queue WHEN 'task' THEN task ELSE 'all' END
               AS key,
           floor(extract(epoch FROM finished_at) / %(step)s::int)::bigint * %(step)s::int
               AS bucket,
           j.state,
           greatest(extract(epoch FROM started_at - run_at), 0)::float8 AS latency,
           greatest(extract(epoch FROM finished_at - started_at), 0)::float8 AS duration
    -- One range of jobs_finished_idx per final state (see web_breakdown).
    FROM (VALUES ('succeeded'), ('dead'), ('cancelled')) AS s(state)
    CROSS JOIN LATERAL (
        SELECT * FROM pgqueue.jobs AS j
        WHERE j.state = s.state AND j.state IN ('succeeded', 'dead', 'cancelled')
          AND j.finished_at >= now() - make_interval(secs => %(window)s::float8)
          AND (%(queue)s::text IS NULL OR j.queue = %(queue)s::text)
          AND (%(task)s::text IS NULL OR j.task = %(task)s::text)) AS j
), top AS (
    SELECT key FROM done GROUP BY key ORDER BY count(*) DESC, key LIMIT 8
)
SELECT CASE WHEN d.key IN (SELECT key FROM top) THEN d.key END AS key,
       d.key NOT IN (SELECT key FROM top) AS other,
       d.bucket,
       count(*) FILTER (WHERE d.state = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE d.state = 'dead') AS dead,
       count(*) FILTER (WHERE d.state = 'cancelled') AS cancelled,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY d.latency) AS latency_p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY d.latency) AS latency_p95,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY d.duration) AS duration_p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY d.duration) AS duration_p95
FROM done AS d
GROUP BY 1, 2, 3
ORDER BY 2, 1, 3;

-- name: web_workers
-- Registered workers with the tasks they serve, heartbeat age and jobs running now.
SELECT w.id, w.host, w.pid, w.queues, w.tasks, w.concurrency, w.lease, w.started_at,
       w.heartbeat_at, w.version,
       extract(epoch FROM now() - w.heartbeat_at)::float8 AS heartbeat_age,
       extract(epoch FROM now() - w.heartbeat_at)::float8 < w.lease AS alive,
       (SELECT count(*) FROM pgqueue.jobs AS j
        WHERE j.state = 'running' AND j.worker_id = w.id) AS running
FROM pgqueue.workers AS w
ORDER BY w.host, w.started_at
LIMIT 500;

-- name: web_running
-- Jobs running now, longest first, with their progress when the column exists (read through
-- to_jsonb so this works before and after the progress migration).
SELECT j.id, j.queue, j.task, j.attempts, j.max_attempts, j.started_at, j.worker_id,
       extract(epoch FROM now() - j.started_at)::float8 AS running_for,
       j.cancel_requested_at IS NOT NULL AS cancel_requested,
       (to_jsonb(j) ->> 'progress')::float8 AS progress,
       to_jsonb(j) ->> 'progress_message' AS progress_message
FROM pgqueue.jobs AS j
WHERE j.state = 'running'
ORDER BY j.started_at, j.id
LIMIT %(limit)s::int;

-- name: web_failures
-- The latest jobs that went dead in the last `window` seconds (the finished_at index).
SELECT j.id, j.queue, j.task, j.attempts, j.max_attempts, j.finished_at, j.last_error
FROM pgqueue.jobs AS j
WHERE j.state IN ('succeeded', 'dead', 'cancelled') AND j.state = 'dead'
  AND j.finished_at >= now() - make_interval(secs => %(window)s::float8)
ORDER BY j.finished_at DESC, j.id DESC
LIMIT %(limit)s::int;

-- name: web_job_search
-- The explorer: among the `scan` newest jobs older than `before_id`, those matching the
-- filters, newest first, at most `limit`. `q` matches the id, the unique key, or a text
-- (case-insensitive) in args, kwargs or errors. Always one row: `scanned` and `low` say how
-- far the window reached (the next window starts below `low`); job columns are NULL when
-- nothing matched. Bounded whatever the filters: the window is read through the primary key.
WITH win AS MATERIALIZED (
    SELECT id FROM pgqueue.jobs
    WHERE (%(before_id)s::bigint IS NULL OR id < %(before_id)s::bigint)
    ORDER BY id DESC
    LIMIT %(scan)s::int
), bounds AS (
    SELECT count(*) AS scanned, min(id) AS low FROM win
)
SELECT b.scanned, b.low, m.*
FROM bounds AS b
LEFT JOIN LATERAL (
    SELECT j.id, j.queue, j.task, j.state, j.priority, j.attempts, j.max_attempts, j.run_at,
           j.created_at, j.started_at, j.finished_at, j.last_error, j.unique_key,
           j.cancel_requested_at IS NOT NULL AS cancel_requested,
           (to_jsonb(j) ->> 'progress')::float8 AS progress,
           to_jsonb(j) ->> 'progress_message' AS progress_message
    FROM win JOIN pgqueue.jobs AS j ON j.id = win.id
    WHERE (%(queue)s::text IS NULL OR j.queue = %(queue)s::text)
      AND (%(state)s::text IS NULL OR j.state = %(state)s::text)
      AND (%(task)s::text IS NULL OR j.task = %(task)s::text)
      AND (%(since)s::timestamptz IS NULL OR j.created_at >= %(since)s::timestamptz)
      AND (%(until)s::timestamptz IS NULL OR j.created_at < %(until)s::timestamptz)
      AND (%(q)s::text IS NULL
           OR j.id::text = %(q)s::text
           OR j.unique_key = %(q)s::text
           OR strpos(lower(j.args::text), lower(%(q)s::text)) > 0
           OR strpos(lower(j.kwargs::text), lower(%(q)s::text)) > 0
           OR strpos(lower(j.errors::text), lower(%(q)s::text)) > 0
           OR strpos(lower(coalesce(j.last_error, '')), lower(%(q)s::text)) > 0)
    ORDER BY j.id DESC
    LIMIT %(limit)s::int
) AS m ON true
ORDER BY m.id DESC NULLS LAST;

-- name: web_job_extra
-- What the job page shows besides the Job: progress (whether or not the column exists yet)
-- and whether a cancel was asked for.
SELECT (to_jsonb(j) ->> 'progress')::float8 AS progress,
       to_jsonb(j) ->> 'progress_message' AS progress_message,
       j.cancel_requested_at
FROM pgqueue.jobs AS j
WHERE j.id = %(id)s::bigint;

-- name: web_job_family
-- A job's parents (its depends_on) and children with their states. Children are found among
-- waiting jobs through the depends_on index, and in any state among the `horizon` jobs
-- inserted after it (a child is inserted after its parents): bounded, without an index on
-- every row's depends_on.
WITH me AS (
    SELECT id, depends_on FROM pgqueue.jobs WHERE id = %(id)s::bigint
)
(SELECT 'parent' AS relation, p.id, p.task, p.state
 FROM me JOIN pgqueue.jobs AS p ON p.id = ANY(me.depends_on)
 ORDER BY p.id LIMIT 100)
UNION
(SELECT 'child', c.id, c.task, c.state
 FROM me JOIN pgqueue.jobs AS c
   ON c.depends_on @> ARRAY[me.id] AND c.depends_on IS NOT NULL AND c.state = 'queued'
 ORDER BY c.id LIMIT 100)
UNION
(SELECT 'child', c.id, c.task, c.state
 FROM me JOIN pgqueue.jobs AS c
   ON c.id > me.id AND c.id <= me.id + %(horizon)s::bigint AND c.depends_on @> ARRAY[me.id]
 ORDER BY c.id LIMIT 100)
ORDER BY 1 DESC, 2;

-- name: web_job_states
-- The states of the given jobs (the bulk actions say why they skip one).
SELECT id, state FROM pgqueue.jobs WHERE id = ANY(%(ids)s::bigint[]);

-- name: web_job_delete
-- Delete the given jobs that are finished (succeeded, dead, cancelled). A queued or running
-- job is kept (cancel it first), so no job waiting on it is left waiting forever.
DELETE FROM pgqueue.jobs
WHERE id = ANY(%(ids)s::bigint[]) AND state IN ('succeeded', 'dead', 'cancelled')
RETURNING id;
