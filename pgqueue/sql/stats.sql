-- Read-only figures for `pgqueue stats`, the dashboard and /metrics.
-- Format: see pgqueue/sql/__init__.py.

-- name: queue_stats
-- Per queue: jobs by state (`queued` only those due, `scheduled` those with a later run_at),
-- throughput (jobs succeeded per second) and enqueue-to-start latency over the last five
-- minutes, and the oldest due job's age in seconds. One name per figure, everywhere.
SELECT queue,
       count(*) FILTER (WHERE state = 'queued' AND run_at <= now()) AS queued,
       count(*) FILTER (WHERE state = 'queued' AND run_at > now()) AS scheduled,
       count(*) FILTER (WHERE state = 'running') AS running,
       count(*) FILTER (WHERE state = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE state = 'dead') AS dead,
       count(*) FILTER (WHERE state = 'cancelled') AS cancelled,
       count(*) FILTER (WHERE state = 'succeeded' AND finished_at > now() - interval '5 minutes')
           AS succeeded_5m,
       round(count(*) FILTER (WHERE state = 'succeeded'
                                AND finished_at > now() - interval '5 minutes') / 300.0, 2)::float8
           AS throughput,
       extract(epoch FROM now() - min(run_at) FILTER (WHERE state = 'queued' AND run_at <= now()))
           ::float8 AS oldest_waiting_age,
       -- A queued job's started_at is its previous run's, and a retry or a snooze moved its
       -- run_at later: only jobs in their current run count, or latency turns negative.
       percentile_cont(0.5)
           WITHIN GROUP (ORDER BY greatest(extract(epoch FROM started_at - run_at), 0))
           FILTER (WHERE state <> 'queued' AND started_at > now() - interval '5 minutes')
           AS latency_p50,
       percentile_cont(0.95)
           WITHIN GROUP (ORDER BY greatest(extract(epoch FROM started_at - run_at), 0))
           FILTER (WHERE state <> 'queued' AND started_at > now() - interval '5 minutes')
           AS latency_p95
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
-- Gauges for /metrics: jobs by queue and state, with `scheduled` (queued, run_at later) apart
-- from `queued` (due) as in queue_stats, and the oldest due job's age per queue.
SELECT queue,
       CASE WHEN state = 'queued' AND run_at > now() THEN 'scheduled' ELSE state END AS state,
       count(*) AS n,
       extract(epoch FROM now() - min(run_at) FILTER (WHERE state = 'queued' AND run_at <= now()))
           ::float8 AS oldest_waiting_age
FROM pgqueue.jobs
GROUP BY 1, 2;

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
