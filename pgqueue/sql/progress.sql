-- What running handlers report about how far they are (ctx.progress).
-- Format: see pgqueue/sql/__init__.py.

-- name: job_progress_many
-- Store reported progress, each row only while its job still runs that attempt for this
-- worker (the guard of outcomes), so a late report never lands on a rescued job. Read by
-- primary key, as job_finish_many does.
WITH p AS (
    SELECT * FROM jsonb_to_recordset(%(reports)s::jsonb)
        AS p(id bigint, attempt int, progress float8, message text)
)
UPDATE pgqueue.jobs AS j
SET progress = p.progress, progress_message = p.message
FROM p
WHERE j.id = ANY(ARRAY(SELECT id FROM p)) AND j.id = p.id
  AND (j.state = 'running' AND j.attempts = p.attempt
       AND j.worker_id = %(worker_id)s::uuid) IS TRUE
RETURNING j.id;
