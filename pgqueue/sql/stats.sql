-- Read-only figures for `pgqueue stats`, the dashboard and /metrics.
-- Format: see pgqueue/sql/__init__.py.

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

-- name: server_health
-- For /metrics: the fraction of the NOTIFY queue in use, and the age in seconds of the
-- oldest open transaction in this database (other roles' need pg_monitor to be seen).
SELECT pg_notification_queue_usage() AS notify_queue_usage,
       coalesce(extract(epoch FROM now() - min(xact_start)), 0)::float8 AS oldest_xact_age
FROM pg_stat_activity
WHERE datname = current_database() AND xact_start IS NOT NULL;
