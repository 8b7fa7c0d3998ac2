-- Rescue, dependency settling and retention: what every worker runs now and then.
-- Format: see pgqueue/sql/__init__.py.

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
                      -- 2 ** 12 is past the hour's cap: a larger power overflows float8.
                      ELSE now() + make_interval(
                          secs => least(power(2, least(greatest(j.attempts - 1, 0), 12)), 3600))
                 END,
        finished_at = CASE WHEN j.attempts >= j.max_attempts
                             OR j.cancel_requested_at IS NOT NULL THEN now() END,
        -- A unique_for window starts when a job ends, however it ends (job_finish_many).
        unique_until = CASE WHEN (j.attempts >= j.max_attempts
                                  OR j.cancel_requested_at IS NOT NULL)
                                 AND j.unique_for IS NOT NULL
                            THEN now() + make_interval(
                                secs => least(greatest(j.unique_for, 0), 3153600000)) END,
        last_error = CASE WHEN j.cancel_requested_at IS NOT NULL
                          THEN 'Cancelled: ' || coalesce(j.cancel_reason,
                               'cancel requested, and its worker stopped heartbeating')
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

-- name: job_settle_children
-- Children waiting on `parents` (NULL: the periodic sweep, either a page of waiting jobs
-- with ids above `after` or, with `newest`, the newest waiting jobs): a child all of whose parents succeeded becomes due now; a
-- child with a dead, cancelled or deleted parent is cancelled, and so, in turn, are its own
-- waiting children. Returns the counts and the last id looked at (the sweep's next page).
-- Prepared once (a generic plan), it comes back at once, with one index probe, when no job
-- waits on another at all.
WITH RECURSIVE waiting AS MATERIALIZED (
    -- Children of `parents`: found through jobs_depends_on_idx, however many other jobs
    -- wait (a branch of its own, so that the plan made once can use the index).
    (SELECT k.id, k.depends_on FROM (
         SELECT c.id, c.depends_on FROM pgqueue.jobs AS c
         WHERE %(parents)s::bigint[] IS NOT NULL
           AND c.depends_on && %(parents)s::bigint[]
           AND c.state = 'queued' AND c.depends_on IS NOT NULL
           -- Inside IS TRUE, so that no index on run_at looks like a way in.
           AND (c.run_at = '9999-12-31 00:00:00+00') IS TRUE
           AND c.id > coalesce(%(after)s::bigint, 0)
         OFFSET 0  -- kept apart: an id-ordered scan of every waiting job is no way in
     ) AS k
     ORDER BY k.id
     LIMIT 5000)
    UNION ALL
    -- The sweep: every waiting job, a page at a time, `after` the last id (through
    -- jobs_waiting_idx, which holds the waiting jobs only).
    (SELECT c.id, c.depends_on FROM pgqueue.jobs AS c
     WHERE %(parents)s::bigint[] IS NULL AND NOT %(newest)s::boolean
       AND c.state = 'queued' AND c.depends_on IS NOT NULL
       AND c.run_at = '9999-12-31 00:00:00+00'
       AND c.id > coalesce(%(after)s::bigint, 0)
     ORDER BY c.id
     LIMIT 5000)
    UNION ALL
    -- The newest waiting jobs: where a child whose parents finished while it was being
    -- enqueued (so that no outcome write saw it) is found.
    (SELECT c.id, c.depends_on FROM pgqueue.jobs AS c
     WHERE %(parents)s::bigint[] IS NULL AND %(newest)s::boolean
       AND c.state = 'queued' AND c.depends_on IS NOT NULL
       AND c.run_at = '9999-12-31 00:00:00+00'
     ORDER BY c.id DESC
     LIMIT 1000)
), doomed AS (
    SELECT w.id FROM waiting AS w
    -- A parent that will never succeed: dead, cancelled, or gone (deleted by hand).
    -- (Each parent looked up by its id, as for `released` below.)
    WHERE EXISTS (SELECT 1 FROM unnest(w.depends_on) AS d(parent)
                  WHERE coalesce((SELECT p.state FROM pgqueue.jobs AS p WHERE p.id = d.parent),
                                 'deleted') NOT IN ('queued', 'running', 'succeeded'))
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
        last_error = 'Cancelled: a job it depends on ended dead or cancelled, or was deleted',
        -- A unique_for window starts when a job ends, however it ends (job_finish_many).
        unique_until = CASE WHEN j.unique_for IS NOT NULL
                            THEN now() + make_interval(
                                secs => least(greatest(j.unique_for, 0), 3153600000)) END
    FROM doomed
    WHERE j.id = doomed.id AND j.state = 'queued'
    RETURNING j.id
), released AS (
    UPDATE pgqueue.jobs AS j
    SET run_at = now()
    FROM waiting AS w
    WHERE j.id = w.id
      -- Every parent exists and succeeded (a deleted one does not count as a success).
      -- Each parent is looked up by its id: a plan that reads every succeeded job (once
      -- few, when statistics were taken) for every waiting one grows with the history.
      AND NOT EXISTS (SELECT 1 FROM unnest(w.depends_on) AS d(parent)
                      WHERE (SELECT p.state FROM pgqueue.jobs AS p WHERE p.id = d.parent)
                            IS DISTINCT FROM 'succeeded')
    RETURNING j.id, j.queue
)
SELECT (SELECT count(*) FROM cancelled) AS cancelled,
       (SELECT count(*) FROM released) AS released,
       (SELECT count(pg_notify('pgqueue_jobs', q.queue))
        FROM (SELECT DISTINCT queue FROM released) AS q) AS woken,
       (SELECT max(id) FROM waiting) AS last_id,
       (SELECT count(*) FROM waiting) AS seen;

-- name: job_prune
-- Delete up to `batch` jobs finished in `state` older than their retention (per queue, else
-- the given defaults, in seconds), oldest first. One state at a time, through
-- jobs_finished_idx (state, finished_at): jobs of a state kept longer (dead ones, two weeks
-- by default) are never walked over. `horizon` (the smallest retention of the state in
-- force) bounds the scan. Jobs still holding a unique key are kept until it is released.
WITH doomed AS (
    SELECT j.id FROM pgqueue.jobs AS j
    LEFT JOIN pgqueue.queues AS q ON q.name = j.queue
    WHERE j.state = %(state)s::text AND j.state IN ('succeeded', 'dead', 'cancelled')
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
