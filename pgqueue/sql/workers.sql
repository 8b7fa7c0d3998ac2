-- Worker registration and heartbeats.
-- Format: see pgqueue/sql/__init__.py.

-- name: worker_register
-- Announce a worker process and the tasks it serves. It waits for jobs until its first claim
-- says otherwise (see worker_waiting).
INSERT INTO pgqueue.workers (id, host, pid, queues, concurrency, lease, tasks, version, waiting)
VALUES (%(id)s::uuid, %(host)s::text, %(pid)s::int, %(queues)s::text[], %(concurrency)s::int,
        %(lease)s::float8, %(tasks)s::text[], %(version)s::text, true)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), tasks = EXCLUDED.tasks, waiting = true;

-- name: worker_waiting
-- Whether the worker waits for jobs (its last claim found fewer than it had room for): an
-- insert wakes it only then (the insert trigger reads it). Written only when it changes.
UPDATE pgqueue.workers SET waiting = %(waiting)s::boolean
WHERE id = %(id)s::uuid AND waiting IS DISTINCT FROM %(waiting)s::boolean;

-- name: worker_heartbeat
-- A worker is alive. Returns nothing if its row is gone (it was declared lost).
UPDATE pgqueue.workers SET heartbeat_at = now() WHERE id = %(id)s::uuid RETURNING id;

-- name: worker_unregister
-- A worker leaves cleanly.
DELETE FROM pgqueue.workers WHERE id = %(id)s::uuid;

-- name: worker_list
-- Registered workers, with how long ago each heartbeat was and the jobs each is running.
SELECT w.id, w.host, w.pid, w.queues, w.concurrency, w.lease, w.started_at, w.heartbeat_at,
       extract(epoch FROM now() - w.heartbeat_at)::float8 AS heartbeat_age,
       extract(epoch FROM now() - w.heartbeat_at)::float8 < w.lease AS alive,
       (SELECT count(*) FROM pgqueue.jobs AS j
        WHERE j.state = 'running' AND j.worker_id = w.id) AS running
FROM pgqueue.workers AS w
ORDER BY w.host, w.started_at;

-- name: schema_version
-- The applied pgqueue migration, or nothing when the schema is not there.
SELECT version_num FROM pgqueue.alembic_version;
