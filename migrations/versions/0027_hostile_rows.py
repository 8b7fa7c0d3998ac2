"""Rows a producer may insert can no longer stop claims, and producers may enqueue children.

- The per-key claim (`pgqueue.claim_limited`) counts an attempt without passing the bound
  of `attempts` (`jobs_attempts_range`, migration 0020): a queued row at 2147483646 made
  every claim of its queue fail, forever. Such a job keeps its count (the plain claims, in
  pgqueue/sql/claim.sql, do the same).
- Claims commit durably (the per-key claim committed with `synchronous_commit = off`, as
  the plain claims did): a claim lost in a server crash put its job back at its old
  attempt count while the worker that had received it ran it, and another worker (or the
  same one, after its outcome was refused) ran the same attempt again, at the same time.
- `pgqueue.settle_children(bigint[])`: frees (or cancels) the waiting children of jobs, as
  its owner, so that enqueueing a job with `depends_on` needs no UPDATE right on
  pgqueue.jobs (the roles of `pgqueue migrate roles` had INSERT and a few SELECT columns,
  and were refused). It changes only what the table says it must: children of finished
  parents, as a worker's outcome write does.
- A unique_for window starts when a job ends, however it ends: the children this function
  cancels get one, as jobs cancelled while queued and jobs ended by the rescue now do
  (pgqueue/sql); only outcomes written by a worker had one.
- `cancel_reason`: the reason given to `app.cancel` for a running job, kept until its
  worker (or the rescue) ends it `cancelled`, and shown in its last_error then (it was
  kept for a queued job only).
- A job inserted by plain SQL with `depends_on` waits for its parents (the insert-defaults
  trigger gives it the waiting run_at, 9999-12-31, which pgqueue's own enqueue gives it):
  it ran at once, before them.

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-03
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None

WAITING = "'9999-12-31 00:00:00+00'"


def _module(name: str) -> ModuleType:
    path = Path(__file__).with_name(name)
    spec = importlib.util.spec_from_file_location(f"pgqueue_migration_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CLAIM_BEFORE: str = _module("0024_per_key_claim_one_key.py").function()
COUNTED = "attempts = j.attempts + 1,"
ASYNC = (
    "    -- This transaction's commit need not wait for the disk: a claim lost in a server"
    " crash\n    -- leaves the job claimable again. Local to the transaction, as in job_claim.\n"
    "    PERFORM set_config('synchronous_commit', 'off', true);\n"
)
CLAIM_AFTER = CLAIM_BEFORE.replace(COUNTED, "attempts = least(j.attempts, 2147483645) + 1,")
CLAIM_AFTER = CLAIM_AFTER.replace(ASYNC, "")
assert CLAIM_AFTER != CLAIM_BEFORE and COUNTED not in CLAIM_AFTER
assert "synchronous_commit" not in CLAIM_AFTER

SETTLE = f"""
CREATE FUNCTION pgqueue.settle_children(p_parents bigint[]) RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    -- The children waiting on p_parents: due now when every parent succeeded; cancelled,
    -- with their own waiting children in turn, when one is dead, cancelled or gone.
    WITH RECURSIVE waiting AS MATERIALIZED (
        SELECT k.id, k.depends_on FROM (
            SELECT c.id, c.depends_on FROM pgqueue.jobs AS c
            WHERE c.depends_on && p_parents AND c.state = 'queued'
              AND c.depends_on IS NOT NULL AND (c.run_at = {WAITING}) IS TRUE
            OFFSET 0
        ) AS k
        ORDER BY k.id
        LIMIT 5000
    ), doomed AS (
        SELECT w.id FROM waiting AS w
        WHERE EXISTS (
            SELECT 1 FROM unnest(w.depends_on) AS d(parent)
            WHERE coalesce((SELECT p.state FROM pgqueue.jobs AS p WHERE p.id = d.parent),
                           'deleted') NOT IN ('queued', 'running', 'succeeded'))
        UNION
        SELECT g.id FROM doomed AS d
        CROSS JOIN LATERAL (
            SELECT c.id FROM pgqueue.jobs AS c
            WHERE c.depends_on && ARRAY[d.id] AND c.state = 'queued'
              AND c.depends_on IS NOT NULL
            OFFSET 0
        ) AS g
    ), cancelled AS (
        UPDATE pgqueue.jobs AS j
        SET state = 'cancelled', finished_at = now(),
            last_error = 'Cancelled: a job it depends on ended dead or cancelled, or was deleted',
            unique_until = CASE WHEN j.unique_for IS NOT NULL
                THEN now() + make_interval(secs => least(greatest(j.unique_for, 0), 3153600000))
                END
        FROM doomed
        WHERE j.id = doomed.id AND j.state = 'queued'
        RETURNING j.id
    ), released AS (
        UPDATE pgqueue.jobs AS j
        SET run_at = now()
        FROM waiting AS w
        WHERE j.id = w.id
          AND NOT EXISTS (SELECT 1 FROM unnest(w.depends_on) AS d(parent)
                          WHERE (SELECT p.state FROM pgqueue.jobs AS p WHERE p.id = d.parent)
                                IS DISTINCT FROM 'succeeded')
        RETURNING j.id, j.queue
    )
    SELECT (SELECT count(*) FROM cancelled) + (SELECT count(*) FROM released)
           + 0 * (SELECT count(pg_notify('pgqueue_jobs', q.queue))
                  FROM (SELECT DISTINCT queue FROM released) AS q);
$$;
REVOKE EXECUTE ON FUNCTION pgqueue.settle_children(bigint[]) FROM PUBLIC;
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgqueue_producer') THEN
        GRANT EXECUTE ON FUNCTION pgqueue.settle_children(bigint[]) TO pgqueue_producer;
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgqueue_worker') THEN
        GRANT EXECUTE ON FUNCTION pgqueue.settle_children(bigint[]) TO pgqueue_worker;
    END IF;
END
$$;
"""

# The insert-defaults trigger (migration 0019's function, and its WHEN clause), with the
# waiting run_at for a job that depends on others.
DEFAULTS_BEFORE: str = _module("0019_task_timeout_default.py").FUNCTION % "t.timeout"
FILLED = "    RETURN NEW;\n"
DEFAULTS_AFTER = DEFAULTS_BEFORE.replace(
    FILLED,
    f"""    IF NEW.depends_on IS NOT NULL THEN
        NEW.run_at := {WAITING};  -- freed when its parents succeed
    END IF;
{FILLED}""",
)
assert DEFAULTS_AFTER != DEFAULTS_BEFORE
WHEN = "NEW.queue IS NULL OR NEW.priority IS NULL OR NEW.max_attempts IS NULL"


def _defaults_trigger(extra: str) -> str:
    return f"""
    DROP TRIGGER IF EXISTS jobs_fill_defaults ON pgqueue.jobs;
    CREATE TRIGGER jobs_fill_defaults BEFORE INSERT ON pgqueue.jobs
    FOR EACH ROW WHEN ({WHEN}{extra})
    EXECUTE FUNCTION pgqueue.jobs_fill_defaults();
    """


def upgrade() -> None:
    op.execute("ALTER TABLE pgqueue.jobs ADD COLUMN IF NOT EXISTS cancel_reason text")
    op.execute(CLAIM_AFTER)
    op.execute(SETTLE)
    op.execute(DEFAULTS_AFTER)
    op.execute(_defaults_trigger(" OR NEW.depends_on IS NOT NULL"))


def downgrade() -> None:
    op.execute(_defaults_trigger(""))
    op.execute(DEFAULTS_BEFORE)
    op.execute("DROP FUNCTION IF EXISTS pgqueue.settle_children(bigint[])")
    op.execute(CLAIM_BEFORE)
    op.execute("ALTER TABLE pgqueue.jobs DROP COLUMN IF EXISTS cancel_reason")
