-- Writing what attempts came to, and the cancel requests a worker honours.
-- Format: see pgqueue/sql/__init__.py.

-- name: job_finish_many
-- Record a batch of attempt outcomes. Each row is applied only if the job is still running
-- the same attempt, started by the same claim (`started`), for the same worker, so a late
-- outcome never overwrites a rescue or a cancel, nor a later claim of the job at the same
-- attempt number (given back by a Retry or a release, then claimed again). `refund` gives
-- the attempt back (Retry, shutdown). Re-queued jobs wake workers.
WITH o AS MATERIALIZED (
    SELECT * FROM jsonb_to_recordset(%(outcomes)s::jsonb)
        AS o(id bigint, attempt int, state text, result jsonb, error jsonb, delay float8,
             refund int, started timestamptz)
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
                          THEN 'Cancelled: '
                               || coalesce(j.cancel_reason, 'cancel requested while it ran')
                          WHEN o.state = 'cancelled' AND j.cancel_reason IS NOT NULL
                          THEN 'Cancelled: ' || j.cancel_reason
                          ELSE coalesce(o.error ->> 'error', j.last_error) END,
        errors = CASE WHEN o.error IS NULL THEN j.errors
                      ELSE j.errors || jsonb_build_array(
                          o.error || jsonb_build_object('at', now())) END,
        finished_at = CASE WHEN o.state = 'queued' AND j.cancel_requested_at IS NULL
                           THEN NULL ELSE now() END,
        -- unique_for as the API bounds it (0 to 100 years, NaN the most), whatever a row
        -- inserted by SQL before migration 0027 holds: one job's value must not fail the
        -- batch.
        unique_until = CASE WHEN (o.state <> 'queued' OR j.cancel_requested_at IS NOT NULL)
                                 AND j.unique_for IS NOT NULL
                            THEN now() + make_interval(
                                secs => least(greatest(j.unique_for, 0), 3153600000)) END
    FROM o
    -- The jobs are read by primary key (the id list), and the guard sits inside IS TRUE so
    -- no other index can serve it. A scan of this worker's running jobs instead would grow
    -- with every job it ran since the last vacuum (dead index entries), batch after batch.
    WHERE j.id = ANY(%(ids)s::bigint[]) AND j.id = o.id
      AND (j.state = 'running' AND j.attempts = o.attempt
           AND j.worker_id = %(worker_id)s::uuid
           AND (o.started IS NULL OR j.started_at = o.started)) IS TRUE
    RETURNING j.id, j.state, j.queue
)
SELECT u.id, u.state,
       (SELECT count(pg_notify('pgqueue_jobs', q.queue))
        FROM (SELECT DISTINCT queue FROM updated WHERE state = 'queued') AS q) AS woken,
       -- Whether a job waits on one of these: if none does, job_settle_children is
       -- skipped, however many jobs wait on others. Read through jobs_depends_on_idx: as
       -- EXISTS, the plan would read the table in order, expecting a match soon.
       (SELECT min(c.id) FROM (
            SELECT x.id FROM pgqueue.jobs AS x
            WHERE x.depends_on && ARRAY(SELECT id FROM updated WHERE state <> 'queued')
              AND x.state = 'queued' AND x.depends_on IS NOT NULL
            OFFSET 0) AS c) IS NOT NULL AS waiting
FROM updated AS u;

-- name: job_running_here
-- Attempts running for this worker, by the table: (id, attempt, queue, started_at). Read
-- after a claim whose answer may have been lost, to find jobs claimed but never received.
SELECT id, attempts, queue, started_at FROM pgqueue.jobs
WHERE state = 'running' AND worker_id = %(worker_id)s::uuid;

-- name: job_cancel_requests
-- Attempts running for this worker that were asked to cancel: (id, attempt).
SELECT id, attempts FROM pgqueue.jobs
WHERE state = 'running' AND worker_id = %(worker_id)s::uuid
  AND cancel_requested_at IS NOT NULL;
