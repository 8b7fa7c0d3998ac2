-- Periodic jobs: declaring schedules and enqueueing each fire time once.
-- Format: see pgqueue/sql/__init__.py.

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
