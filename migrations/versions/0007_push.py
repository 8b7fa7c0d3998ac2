"""Jobs handed straight to idle workers: slots they offer, taken by the insert trigger.

An idle worker offers a few slots in `pgqueue.worker_slots`. The statement-level insert
trigger gives each due job it can to an offered slot of a live worker: the job becomes that
worker's running attempt in the producer's own transaction, and a `pgqueue_push`
notification ('<worker id> <slot> <job row as JSON, or its id>') tells the worker when
that transaction commits. The worker starts it without a claim round trip (and without a
second commit to wait for), which is most of an idle queue's enqueue-to-start latency. Jobs
that find no slot are claimed as before.

A worker is live while the session it LISTENs on holds its advisory lock (class
PUSH_LOCK_CLASS, id `lock_id`): a worker killed with SIGKILL, or one whose listener is
reconnecting, gets nothing handed over, so no job waits for the lease to run out.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

PUSH_LOCK_CLASS = 1886548833  # the advisory lock class of workers' listening sessions

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

PUSHING_TRIGGER = """
CREATE OR REPLACE FUNCTION pgqueue.jobs_notify_insert() RETURNS trigger
LANGUAGE plpgsql
-- Producers only need INSERT on pgqueue.jobs: the hand-over runs with the owner's rights.
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    j record;
    s record;
    note text;
    pushed bigint[] := '{}';
    no_slot text[] := '{}';  -- queues no live worker has a slot for
BEGIN
    -- Read committed only: under repeatable read or serializable, a slot withdrawn since the
    -- transaction's snapshot would make the insert itself fail with a serialization error.
    IF current_setting('transaction_isolation') = 'read committed'
       AND EXISTS (SELECT 1 FROM pgqueue.worker_slots) THEN
        FOR j IN
            SELECT n.id, n.queue FROM new_rows AS n
            WHERE n.state = 'queued' AND n.run_at <= now() AND n.depends_on IS NULL
            ORDER BY n.priority DESC, n.run_at, n.id
            LIMIT 64
        LOOP
            CONTINUE WHEN j.queue = ANY (no_slot);
            -- A live worker's slot for this queue; paused or limited queues are claimed.
            SELECT ws.worker_id, ws.slot INTO s
            FROM pgqueue.worker_slots AS ws
            JOIN pgqueue.workers AS w ON w.id = ws.worker_id
            WHERE (ws.queues IS NULL OR j.queue = ANY (ws.queues))
              AND w.heartbeat_at > clock_timestamp() - make_interval(secs => w.lease)
              -- Its listening session holds the lock: the shared one is refused.
              AND NOT pg_try_advisory_xact_lock_shared(%(lock_class)s, ws.lock_id)
              AND NOT EXISTS (
                  SELECT 1 FROM pgqueue.queues AS q
                  WHERE q.name = j.queue
                    AND (q.paused OR q.concurrency_limit IS NOT NULL
                         OR q.rate_limit IS NOT NULL))
            LIMIT 1
            FOR UPDATE OF ws SKIP LOCKED;
            IF NOT FOUND THEN
                no_slot := no_slot || j.queue;
                CONTINUE;
            END IF;
            DELETE FROM pgqueue.worker_slots
            WHERE worker_id = s.worker_id AND slot = s.slot;
            UPDATE pgqueue.jobs AS t
            SET state = 'running', attempts = t.attempts + 1, worker_id = s.worker_id,
                started_at = clock_timestamp()
            WHERE t.id = j.id AND t.state = 'queued'
            RETURNING s.worker_id::text || ' ' || s.slot::text || ' ' || json_build_array(
                t.id, t.queue, t.task, t.args, t.kwargs, t.priority, t.run_at, t.attempts,
                t.max_attempts, t.unique_key, t.timeout, t.created_at, t.started_at)::text
            INTO note;
            CONTINUE WHEN note IS NULL;
            IF octet_length(note) > 7900 THEN
                -- Too big for a notification: the worker reads the row itself.
                note := s.worker_id::text || ' ' || s.slot::text || ' ' || j.id::text;
            END IF;
            PERFORM pg_notify('pgqueue_push', note);
            pushed := pushed || j.id;
        END LOOP;
    END IF;
    -- One wake-up per statement and queue for the jobs left to claim.
    PERFORM pg_notify('pgqueue_jobs', q.queue)
    FROM (SELECT DISTINCT n.queue FROM new_rows AS n
          WHERE n.state = 'queued' AND NOT n.id = ANY (pushed)) AS q;
    RETURN NULL;
END
$$
"""

PLAIN_TRIGGER = """
CREATE OR REPLACE FUNCTION pgqueue.jobs_notify_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pgqueue_jobs', q.queue)
    FROM (SELECT DISTINCT queue FROM new_rows WHERE state = 'queued') AS q;
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    # No foreign key: deleting a worker must never wait on a producer holding its slot.
    op.execute(
        """
        CREATE TABLE pgqueue.worker_slots (
            worker_id uuid NOT NULL,
            slot integer NOT NULL,
            queues text[],
            lock_id integer NOT NULL,
            PRIMARY KEY (worker_id, slot)
        )
        """
    )
    op.execute(PUSHING_TRIGGER.replace("%(lock_class)s", str(PUSH_LOCK_CLASS)))


def downgrade() -> None:
    op.execute(PLAIN_TRIGGER)
    op.execute("DROP TABLE IF EXISTS pgqueue.worker_slots")
