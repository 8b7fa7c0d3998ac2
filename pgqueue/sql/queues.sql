-- Queue settings: pause, limits, retention.
-- Format: see pgqueue/sql/__init__.py.

-- name: queue_config
-- Queues with settings: paused, cluster-wide limits, retention overrides.
SELECT name, paused, concurrency_limit, rate_limit, rate_period, updated_at,
       retain_succeeded, retain_dead, retain_cancelled, per_key_limit
FROM pgqueue.queues
ORDER BY name;

-- name: queue_set
-- Create or change a queue's settings; every worker is told.
WITH upserted AS (
    INSERT INTO pgqueue.queues AS q
        (name, paused, concurrency_limit, rate_limit, rate_period, retain_succeeded,
         retain_dead, retain_cancelled, per_key_limit)
    VALUES (%(name)s::text, coalesce(%(paused)s::boolean, false),
            %(concurrency_limit)s::int, %(rate_limit)s::int,
            coalesce(%(rate_period)s::float8, 1), %(retain_succeeded)s::float8,
            %(retain_dead)s::float8, %(retain_cancelled)s::float8, %(per_key_limit)s::int)
    ON CONFLICT (name) DO UPDATE SET
        paused = coalesce(%(paused)s::boolean, q.paused),
        concurrency_limit = CASE WHEN %(set_concurrency)s::boolean
                                 THEN %(concurrency_limit)s::int ELSE q.concurrency_limit END,
        rate_limit = CASE WHEN %(set_rate)s::boolean
                          THEN %(rate_limit)s::int ELSE q.rate_limit END,
        rate_period = coalesce(%(rate_period)s::float8, q.rate_period),
        per_key_limit = CASE WHEN %(set_per_key)s::boolean
                             THEN %(per_key_limit)s::int ELSE q.per_key_limit END,
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
