-- Read-only figures for `pgqueue stats`, the dashboard and /metrics.
-- Format: see pgqueue/sql/__init__.py.

-- name: queue_stats
-- Per queue: jobs by state (`queued` only those due, `scheduled` those with a later run_at),
-- throughput (jobs succeeded per second) and enqueue-to-start latency over the last five
-- minutes, and the oldest due job's age in seconds. One name per figure, everywhere.
-- Jobs by state come from the rollups (stats_totals, stats_minutes and stats_queued, plus
-- the changes not yet folded in: one snapshot sees each change in exactly one of them).
-- From pgqueue.jobs, through their indexes, only: the first job of each (queue, priority),
-- the jobs due later within this minute, and the running ones for their latency.
-- Latency comes as a histogram (bucket bounds, counts, sums of the finished jobs, and the
-- values of the running ones) that the store turns into p50/p95.
WITH RECURSIVE claim_groups AS (
    -- The (queue, priority) groups of queued jobs, skipped through jobs_claim_order_idx
    -- (queue, -priority, run_at, id), one probe a group: within one, run_at is in order.
    (SELECT j.queue, (- j.priority::bigint) AS rank
     FROM pgqueue.jobs AS j WHERE j.state = 'queued' ORDER BY 1, 2 LIMIT 1)
    UNION ALL
    SELECT n.queue, n.rank
    FROM claim_groups AS g
    CROSS JOIN LATERAL (
        SELECT j.queue, (- j.priority::bigint) AS rank
        FROM pgqueue.jobs AS j
        WHERE j.state = 'queued' AND (j.queue, (- j.priority::bigint)) > (g.queue, g.rank)
        ORDER BY 1, 2 LIMIT 1
    ) AS n
), oldest AS (
    SELECT g.queue, min(first.run_at) FILTER (WHERE first.run_at <= now()) AS oldest
    FROM claim_groups AS g
    CROSS JOIN LATERAL (
        SELECT j.run_at FROM pgqueue.jobs AS j
        WHERE j.state = 'queued' AND j.queue = g.queue AND (- j.priority::bigint) = g.rank
        ORDER BY j.run_at LIMIT 1
    ) AS first
    GROUP BY g.queue
), later AS (
    -- Queued jobs due later: those of the minutes to come from the rollups (stats_queued and
    -- the changes not yet folded in), those of this minute from the table (jobs_run_at_idx).
    SELECT q.queue, sum(q.n) AS n
    FROM (SELECT queue, n FROM pgqueue.stats_queued
          WHERE minute > date_trunc('minute', now())
          UNION ALL
          SELECT queue, n FROM pgqueue.stats_changes
          WHERE measure = 'jobs' AND state = 'queued' AND minute > date_trunc('minute', now())
          UNION ALL
          SELECT j.queue, 1 FROM pgqueue.jobs AS j
          WHERE j.state = 'queued' AND j.run_at > now()
            AND j.run_at < date_trunc('minute', now()) + interval '1 minute') AS q
    GROUP BY q.queue
), waiting AS (
    -- Per queue: queued jobs with a later run_at, and the oldest due job's run_at.
    SELECT coalesce(o.queue, l.queue) AS queue, coalesce(l.n, 0) AS scheduled, o.oldest
    FROM oldest AS o FULL JOIN later AS l ON l.queue = o.queue
), pending AS MATERIALIZED (
    SELECT minute, queue, state, measure, le, n, total FROM pgqueue.stats_changes
), span AS (
    -- The window starts five minutes ago, inside the minute `first`: that minute counts for
    -- the share of it inside the window.
    SELECT now() - interval '5 minutes' AS since,
           date_trunc('minute', now() - interval '5 minutes') AS first
), counted AS (
    SELECT t.queue,
           sum(t.jobs) FILTER (WHERE t.state = 'queued') AS queued,
           sum(t.jobs) FILTER (WHERE t.state = 'running') AS running,
           sum(t.jobs) FILTER (WHERE t.state = 'succeeded') AS succeeded,
           sum(t.jobs) FILTER (WHERE t.state = 'dead') AS dead,
           sum(t.jobs) FILTER (WHERE t.state = 'cancelled') AS cancelled
    FROM (SELECT queue, state, jobs FROM pgqueue.stats_totals
          UNION ALL
          SELECT queue, state, n FROM pending WHERE measure = 'jobs') AS t
    GROUP BY t.queue
), recent AS (
    SELECT m.minute, m.queue, m.state, m.measure, m.le, m.n, m.total
    FROM pgqueue.stats_minutes AS m, span
    WHERE m.minute >= span.first AND m.measure IN ('jobs', 'latency')
    UNION ALL
    SELECT p.minute, p.queue, p.state, p.measure, p.le, p.n, p.total
    FROM pending AS p, span
    WHERE p.minute >= span.first AND p.measure IN ('jobs', 'latency')
      AND p.state IN ('succeeded', 'dead', 'cancelled')
), succeeded_5m AS (
    SELECT r.queue,
           sum(r.n * CASE WHEN r.minute < span.since
                          THEN extract(epoch FROM r.minute + interval '1 minute' - span.since)
                               / 60
                          ELSE 1 END) AS n
    FROM recent AS r, span
    WHERE r.measure = 'jobs' AND r.state = 'succeeded'
    GROUP BY r.queue
), latency AS (
    SELECT b.queue, array_agg(b.le ORDER BY b.le) AS le, array_agg(b.n ORDER BY b.le) AS n,
           array_agg(b.total ORDER BY b.le) AS total
    FROM (SELECT queue, le, sum(n)::bigint AS n, sum(total) AS total
          FROM recent WHERE measure = 'latency'
          GROUP BY queue, le HAVING sum(n) > 0) AS b
    GROUP BY b.queue
), running AS (
    -- Jobs running now count in the latency of the last five minutes if they started in it.
    SELECT j.queue,
           array_agg(greatest(extract(epoch FROM j.started_at - j.run_at), 0)::float8)
               AS latency
    FROM pgqueue.jobs AS j
    WHERE j.state = 'running' AND j.started_at > now() - interval '5 minutes'
    GROUP BY j.queue
)
SELECT q.queue,
       (coalesce(c.queued, 0) - coalesce(w.scheduled, 0))::bigint AS queued,
       coalesce(w.scheduled, 0)::bigint AS scheduled,
       coalesce(c.running, 0)::bigint AS running,
       coalesce(c.succeeded, 0)::bigint AS succeeded,
       coalesce(c.dead, 0)::bigint AS dead,
       coalesce(c.cancelled, 0)::bigint AS cancelled,
       round(coalesce(s.n, 0))::bigint AS succeeded_5m,
       round(coalesce(s.n, 0) / 300.0, 2)::float8 AS throughput,
       extract(epoch FROM now() - w.oldest)::float8 AS oldest_waiting_age,
       l.le AS latency_le, l.n AS latency_n, l.total AS latency_total,
       r.latency AS latency_running
FROM (SELECT queue FROM counted UNION SELECT queue FROM succeeded_5m) AS q
LEFT JOIN counted AS c ON c.queue = q.queue
LEFT JOIN waiting AS w ON w.queue = q.queue
LEFT JOIN succeeded_5m AS s ON s.queue = q.queue
LEFT JOIN latency AS l ON l.queue = q.queue
LEFT JOIN running AS r ON r.queue = q.queue
-- A queue with no job left is not shown, unless jobs of it succeeded in the window (and
-- were deleted since: retention 0, a purge).
WHERE c.queued <> 0 OR c.running <> 0 OR c.succeeded <> 0 OR c.dead <> 0 OR c.cancelled <> 0
   OR round(s.n) > 0
ORDER BY q.queue;

-- name: throughput
-- Per minute over the last `minutes`: jobs finished by state, and the latency histogram of
-- those jobs (the store estimates their p50 enqueue-to-start latency), for the dashboard's
-- chart. One stats_series row a minute, and apart the changes not yet folded in (the store
-- adds them up).
WITH minutes AS (
    SELECT m.minute
    FROM generate_series(date_trunc('minute', now()) - make_interval(mins => %(minutes)s::int - 1),
                         date_trunc('minute', now()), interval '1 minute') AS m(minute)
), pending AS (
    SELECT c.minute, CASE WHEN c.measure = 'jobs' THEN c.state ELSE c.measure END AS measure,
           c.le, sum(c.n)::bigint AS n, sum(c.total) AS total
    FROM pgqueue.stats_changes AS c
    WHERE c.minute >= (SELECT min(minute) FROM minutes)
      AND c.state IN ('succeeded', 'dead') AND c.measure IN ('jobs', 'latency')
    GROUP BY 1, 2, 3
), pending_minutes AS (
    SELECT p.minute,
           coalesce(sum(p.n) FILTER (WHERE p.measure = 'succeeded'), 0) AS succeeded,
           coalesce(sum(p.n) FILTER (WHERE p.measure = 'dead'), 0) AS dead,
           array_agg(p.le ORDER BY p.le) FILTER (WHERE p.measure = 'latency') AS le,
           array_agg(p.n ORDER BY p.le) FILTER (WHERE p.measure = 'latency') AS n,
           array_agg(p.total ORDER BY p.le) FILTER (WHERE p.measure = 'latency') AS total
    FROM pending AS p
    GROUP BY p.minute
)
SELECT m.minute,
       (coalesce(s.succeeded, 0) + coalesce(p.succeeded, 0))::bigint AS succeeded,
       (coalesce(s.dead, 0) + coalesce(p.dead, 0))::bigint AS dead,
       s.le AS latency_le, s.n AS latency_n, s.total AS latency_total,
       p.le AS pending_le, p.n AS pending_n, p.total AS pending_total
FROM minutes AS m
LEFT JOIN pgqueue.stats_series AS s ON s.minute = m.minute
LEFT JOIN pending_minutes AS p ON p.minute = m.minute
ORDER BY m.minute;

-- name: metrics_jobs
-- Gauges for /metrics: jobs by queue and state, with `scheduled` (queued, run_at later) apart
-- from `queued` (due) as in queue_stats, and the oldest due job's age per queue. From the
-- rollups, as in queue_stats.
WITH RECURSIVE claim_groups AS (
    -- The (queue, priority) groups of queued jobs, skipped through jobs_claim_order_idx
    -- (queue, -priority, run_at, id), one probe a group: within one, run_at is in order.
    (SELECT j.queue, (- j.priority::bigint) AS rank
     FROM pgqueue.jobs AS j WHERE j.state = 'queued' ORDER BY 1, 2 LIMIT 1)
    UNION ALL
    SELECT n.queue, n.rank
    FROM claim_groups AS g
    CROSS JOIN LATERAL (
        SELECT j.queue, (- j.priority::bigint) AS rank
        FROM pgqueue.jobs AS j
        WHERE j.state = 'queued' AND (j.queue, (- j.priority::bigint)) > (g.queue, g.rank)
        ORDER BY 1, 2 LIMIT 1
    ) AS n
), oldest AS (
    SELECT g.queue, min(first.run_at) FILTER (WHERE first.run_at <= now()) AS oldest
    FROM claim_groups AS g
    CROSS JOIN LATERAL (
        SELECT j.run_at FROM pgqueue.jobs AS j
        WHERE j.state = 'queued' AND j.queue = g.queue AND (- j.priority::bigint) = g.rank
        ORDER BY j.run_at LIMIT 1
    ) AS first
    GROUP BY g.queue
), later AS (
    -- Queued jobs due later: those of the minutes to come from the rollups (stats_queued and
    -- the changes not yet folded in), those of this minute from the table (jobs_run_at_idx).
    SELECT q.queue, sum(q.n) AS n
    FROM (SELECT queue, n FROM pgqueue.stats_queued
          WHERE minute > date_trunc('minute', now())
          UNION ALL
          SELECT queue, n FROM pgqueue.stats_changes
          WHERE measure = 'jobs' AND state = 'queued' AND minute > date_trunc('minute', now())
          UNION ALL
          SELECT j.queue, 1 FROM pgqueue.jobs AS j
          WHERE j.state = 'queued' AND j.run_at > now()
            AND j.run_at < date_trunc('minute', now()) + interval '1 minute') AS q
    GROUP BY q.queue
), waiting AS (
    -- Per queue: queued jobs with a later run_at, and the oldest due job's run_at.
    SELECT coalesce(o.queue, l.queue) AS queue, coalesce(l.n, 0) AS scheduled, o.oldest
    FROM oldest AS o FULL JOIN later AS l ON l.queue = o.queue
), counted AS (
    SELECT t.queue, t.state, sum(t.jobs) AS n
    FROM (SELECT queue, state, jobs FROM pgqueue.stats_totals
          UNION ALL
          SELECT queue, state, n FROM pgqueue.stats_changes WHERE measure = 'jobs') AS t
    GROUP BY 1, 2
    HAVING sum(t.jobs) <> 0
)
SELECT c.queue,
       CASE WHEN c.state = 'queued' THEN 'queued' ELSE c.state END AS state,
       (c.n - CASE WHEN c.state = 'queued' THEN coalesce(w.scheduled, 0) ELSE 0 END)::bigint
           AS n,
       CASE WHEN c.state = 'queued' THEN extract(epoch FROM now() - w.oldest)::float8 END
           AS oldest_waiting_age
FROM counted AS c
LEFT JOIN waiting AS w ON w.queue = c.queue
UNION ALL
SELECT w.queue, 'scheduled', w.scheduled::bigint, NULL
FROM waiting AS w;

-- name: metrics_recent
-- Jobs finished in the last hour (by the minute: the current one and the 60 before it), for
-- the latency and run-time histograms, outcomes by task, retries and rescues: per queue,
-- task, state, measure and histogram bucket, from stats_minutes and the changes not yet
-- folded in.
WITH recent AS (
    SELECT m.queue, m.task, m.state, m.measure, m.le, m.n, m.total
    FROM pgqueue.stats_minutes AS m
    WHERE m.minute >= date_trunc('minute', now() - interval '1 hour')
    UNION ALL
    SELECT c.queue, c.task, c.state, c.measure, c.le, c.n, c.total
    FROM pgqueue.stats_changes AS c
    WHERE c.minute >= date_trunc('minute', now() - interval '1 hour')
      AND c.state IN ('succeeded', 'dead', 'cancelled')
)
SELECT queue, task, state, measure, le, sum(n)::bigint AS n, sum(total)::float8 AS total
FROM recent
GROUP BY 1, 2, 3, 4, 5
HAVING sum(n) <> 0
ORDER BY 1, 2, 3, 4, 5;

-- name: metrics_lifetime
-- What ever finished, for the counters and histograms of /metrics (which never go down):
-- stats_lifetime plus the increases not yet folded in, per queue, task, final state, measure
-- and bucket. A job taken back out of a final state (a retry) is not taken off.
SELECT queue, task, state, measure, le, sum(n)::bigint AS n, sum(total)::float8 AS total
FROM (SELECT l.queue, l.task, l.state, l.measure, l.le, l.n, l.total
      FROM pgqueue.stats_lifetime AS l
      UNION ALL
      SELECT c.queue, c.task, c.state, c.measure, c.le, c.n, c.total
      FROM pgqueue.stats_changes AS c
      WHERE c.n > 0 AND c.state IN ('succeeded', 'dead', 'cancelled')) AS ever
GROUP BY 1, 2, 3, 4, 5
ORDER BY 1, 2, 3, 4, 5;

-- name: task_unserved
-- Tasks declared by workers that no live worker serves now, with their due jobs (they wait
-- for a worker that has the task). Jobs are counted for such tasks only: nothing is read
-- while every task has a live worker.
WITH unserved AS MATERIALIZED (
    SELECT t.name FROM pgqueue.tasks AS t
    WHERE NOT EXISTS (
        SELECT 1 FROM pgqueue.workers AS w
        WHERE w.heartbeat_at > now() - make_interval(secs => w.lease)
          AND (w.tasks IS NULL OR t.name = ANY(w.tasks)))
)
SELECT u.name, d.due
FROM unserved AS u
CROSS JOIN LATERAL (
    SELECT count(*) AS due FROM pgqueue.jobs AS j
    WHERE j.state = 'queued' AND j.task = u.name AND j.run_at <= now()
) AS d
WHERE d.due > 0
ORDER BY u.name;

-- name: stats_compact
-- Fold the changes counted by the triggers of pgqueue.jobs into the rollups (stats_lifetime
-- takes the increases only), and forget the minutes that no figure reads any more
-- (stats_minutes: past 70 minutes; stats_series: past a day and 10 minutes). One caller at
-- a time: another one finds the lock taken and does nothing. Readers see each change either
-- still pending or folded in, never both.
WITH turn AS MATERIALIZED (
    SELECT pg_try_advisory_xact_lock(hashtext('pgqueue.stats_compact')) AS mine
), moved AS (
    DELETE FROM pgqueue.stats_changes AS c
    WHERE (SELECT mine FROM turn)
    RETURNING c.minute, c.queue, c.task, c.state, c.measure, c.le, c.n, c.total
), totals AS (
    INSERT INTO pgqueue.stats_totals AS t (queue, state, jobs)
    SELECT queue, state, sum(n) FROM moved WHERE measure = 'jobs'
    GROUP BY queue, state
    ON CONFLICT (queue, state) DO UPDATE SET jobs = t.jobs + EXCLUDED.jobs
    RETURNING 1
), minutes AS (
    INSERT INTO pgqueue.stats_minutes AS s (minute, queue, task, state, measure, le, n, total)
    SELECT minute, queue, task, state, measure, le, sum(n), sum(total) FROM moved
    WHERE minute >= date_trunc('minute', now()) - interval '70 minutes'
      AND state IN ('succeeded', 'dead', 'cancelled')
    GROUP BY 1, 2, 3, 4, 5, 6
    ON CONFLICT (minute, queue, task, state, measure, le)
    DO UPDATE SET n = s.n + EXCLUDED.n, total = s.total + EXCLUDED.total
    RETURNING 1
), lifetime AS (
    -- The increases only, as metrics_lifetime reads them (counters never go down).
    INSERT INTO pgqueue.stats_lifetime AS l (queue, task, state, measure, le, n, total)
    SELECT queue, task, state, measure, le, sum(n), sum(total) FROM moved
    WHERE n > 0 AND state IN ('succeeded', 'dead', 'cancelled')
    GROUP BY 1, 2, 3, 4, 5
    ON CONFLICT (queue, task, state, measure, le)
    DO UPDATE SET n = l.n + EXCLUDED.n, total = l.total + EXCLUDED.total
    RETURNING 1
), series_changes AS (
    SELECT minute, CASE WHEN measure = 'jobs' THEN state ELSE measure END AS measure, le,
           sum(n)::bigint AS n, sum(total) AS total
    FROM moved
    WHERE minute >= date_trunc('minute', now()) - interval '1450 minutes'
      AND state IN ('succeeded', 'dead') AND measure IN ('jobs', 'latency')
    GROUP BY 1, 2, 3
), series AS (
    -- One row a minute, its latency buckets as arrays (bounds in increasing order, counts,
    -- sums), merged with what the row has.
    INSERT INTO pgqueue.stats_series AS s (minute, succeeded, dead, le, n, total)
    SELECT b.minute,
           coalesce(sum(b.n) FILTER (WHERE b.measure = 'succeeded'), 0),
           coalesce(sum(b.n) FILTER (WHERE b.measure = 'dead'), 0),
           coalesce(array_agg(b.le ORDER BY b.le) FILTER (WHERE b.measure = 'latency'), '{}'),
           coalesce(array_agg(b.n ORDER BY b.le) FILTER (WHERE b.measure = 'latency'), '{}'),
           coalesce(array_agg(b.total ORDER BY b.le) FILTER (WHERE b.measure = 'latency'), '{}')
    FROM series_changes AS b
    GROUP BY b.minute
    ON CONFLICT (minute) DO UPDATE SET
        succeeded = s.succeeded + EXCLUDED.succeeded,
        dead = s.dead + EXCLUDED.dead,
        (le, n, total) = (
            SELECT coalesce(array_agg(u.le ORDER BY u.le), '{}'),
                   coalesce(array_agg(u.n ORDER BY u.le), '{}'),
                   coalesce(array_agg(u.total ORDER BY u.le), '{}')
            FROM (SELECT a.le, sum(a.n)::bigint AS n, sum(a.total) AS total
                  FROM (SELECT * FROM unnest(s.le, s.n, s.total)
                        UNION ALL
                        SELECT * FROM unnest(EXCLUDED.le, EXCLUDED.n, EXCLUDED.total))
                       AS a(le, n, total)
                  GROUP BY a.le
                  HAVING sum(a.n) <> 0) AS u)
    RETURNING 1
), queued AS (
    INSERT INTO pgqueue.stats_queued AS q (queue, minute, n)
    SELECT queue, minute, sum(n) FROM moved
    WHERE measure = 'jobs' AND state = 'queued' AND minute > date_trunc('minute', now())
    GROUP BY 1, 2
    ON CONFLICT (queue, minute) DO UPDATE SET n = q.n + EXCLUDED.n
    RETURNING 1
), due_now AS (
    -- Minutes come: their jobs are due (the totals count them), and readers look no more.
    DELETE FROM pgqueue.stats_queued
    WHERE minute <= date_trunc('minute', now()) AND (SELECT mine FROM turn)
    RETURNING 1
), old_minutes AS (
    DELETE FROM pgqueue.stats_minutes
    WHERE minute < date_trunc('minute', now()) - interval '70 minutes'
      AND (SELECT mine FROM turn)
    RETURNING 1
), old_series AS (
    DELETE FROM pgqueue.stats_series
    WHERE minute < date_trunc('minute', now()) - interval '1450 minutes'
      AND (SELECT mine FROM turn)
    RETURNING 1
)
SELECT (SELECT count(*) FROM moved) AS moved,
       (SELECT count(*) FROM totals) + (SELECT count(*) FROM minutes)
           + (SELECT count(*) FROM lifetime) + (SELECT count(*) FROM series)
           + (SELECT count(*) FROM queued) AS folded,
       (SELECT count(*) FROM old_minutes) + (SELECT count(*) FROM old_series)
           + (SELECT count(*) FROM due_now) AS expired;

-- name: server_health
-- For /metrics: the fraction of the NOTIFY queue in use, and the age in seconds of the
-- oldest open transaction in this database (other roles' need pg_monitor to be seen).
SELECT pg_notification_queue_usage() AS notify_queue_usage,
       coalesce(extract(epoch FROM now() - min(xact_start)), 0)::float8 AS oldest_xact_age
FROM pg_stat_activity
WHERE datname = current_database() AND xact_start IS NOT NULL;
