-- Tasks: what workers serve, with their declared defaults.
-- Format: see pgqueue/sql/__init__.py.

-- name: task_register
-- A worker declares the tasks it serves and their defaults (the last word wins): jobs
-- inserted without a queue, priority or max_attempts take them (trigger jobs_fill_defaults).
INSERT INTO pgqueue.tasks AS t (name, queue, priority, max_attempts, timeout)
SELECT d.name, d.queue, d.priority, d.max_attempts, d.timeout
FROM jsonb_to_recordset(%(tasks)s::jsonb)
    AS d(name text, queue text, priority int, max_attempts int, timeout float8)
ON CONFLICT (name) DO UPDATE SET
    queue = EXCLUDED.queue, priority = EXCLUDED.priority,
    max_attempts = EXCLUDED.max_attempts, timeout = EXCLUDED.timeout, updated_at = now()
WHERE (t.queue, t.priority, t.max_attempts, t.timeout)
      IS DISTINCT FROM (EXCLUDED.queue, EXCLUDED.priority, EXCLUDED.max_attempts,
                        EXCLUDED.timeout);

-- name: task_list
-- Every task declared by a worker or waiting in the queue: its defaults, the live workers
-- that serve it, and its due and running jobs. A task with due jobs and no live worker is
-- waiting for a worker that has it.
WITH live AS (
    SELECT w.tasks FROM pgqueue.workers AS w
    WHERE w.heartbeat_at > now() - make_interval(secs => w.lease)
), waiting AS (
    SELECT j.task,
           count(*) FILTER (WHERE j.state = 'queued' AND j.run_at <= now()) AS due,
           count(*) FILTER (WHERE j.state = 'running') AS running
    FROM pgqueue.jobs AS j
    WHERE j.state IN ('queued', 'running')
    GROUP BY j.task
)
SELECT coalesce(t.name, w.task) AS name, t.queue, t.priority, t.max_attempts, t.timeout,
       (SELECT count(*) FROM live WHERE live.tasks IS NULL
                                     OR coalesce(t.name, w.task) = ANY(live.tasks)) AS workers,
       coalesce(w.due, 0) AS due, coalesce(w.running, 0) AS running
FROM pgqueue.tasks AS t
FULL JOIN waiting AS w ON w.task = t.name
ORDER BY 1;
