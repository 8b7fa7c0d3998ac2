"""Apply pgqueue's alembic migrations (`pgqueue migrate`), from code or the CLI.

To run them from an application's own alembic `env.py`, call `upgrade(connection)` with the
SQLAlchemy connection alembic gives you: pgqueue keeps its own version table in its schema.
Called there, it follows the application's command: `alembic upgrade` also brings pgqueue to
its head, every other command (`current`, `downgrade`, `stamp`, `check`, autogenerate...)
leaves pgqueue's schema alone.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config

HEAD = "head"


def migrations_dir() -> Path:
    """The bundled alembic scripts: inside the wheel, or `migrations/` of a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_migrations", here.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError("pgqueue's migrations are missing from this installation")


def sqlalchemy_url(dsn: str) -> str:
    """A SQLAlchemy URL for a libpq DSN or URL, using the psycopg 3 driver."""
    if dsn.startswith(("postgresql+", "postgres+")):
        return dsn
    if dsn.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + dsn.split("://", 1)[1]
    # A key=value libpq string (or empty: libpq's PG* variables) goes through the query string.
    from urllib.parse import quote

    return "postgresql+psycopg:///?" + "&".join(
        f"{k}={quote(v)}" for k, v in (part.split("=", 1) for part in dsn.split())
    )


def alembic_config(dsn: str | None = None, connection: Any = None) -> Config:
    cfg = Config(stdout=io.StringIO())
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("pgqueue_schema", "pgqueue")
    if dsn is not None:
        # ConfigParser treats % as interpolation; URLs may hold %-escapes.
        cfg.set_main_option("sqlalchemy.url", sqlalchemy_url(dsn).replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _outer_command() -> str | None:
    """The alembic command whose `env.py` is running now (say "upgrade", "current"), or None
    outside alembic. Only alembic's own commands are named; another tool's run gives ""."""
    import alembic.context

    outer = getattr(alembic.context, "_proxy", None)
    fn = getattr(outer, "context_opts", {}).get("fn") if outer is not None else None
    if outer is None:
        return None
    if getattr(fn, "__module__", None) == "alembic.command":
        return str(fn.__name__)  # type: ignore[union-attr]
    return ""


def _nested(run: Any) -> None:
    """Run an alembic command, also from inside an application's own `env.py`.

    alembic keeps the running environment in module globals (`alembic.context`,
    `alembic.op`); a command run inside another installs its own and deletes them when done,
    so the outer run then fails on leaving (KeyError: 'script' or 'config'). Put the outer
    ones back."""
    import alembic.context
    import alembic.op

    outer_env = getattr(alembic.context, "_proxy", None)
    outer_op = getattr(alembic.op, "_proxy", None)
    try:
        run()
    finally:
        if outer_env is not None:
            outer_env._install_proxy()
        if outer_op is not None:
            outer_op._install_proxy()


def upgrade(target: Any, revision: str = HEAD) -> None:
    """Migrate up to `revision`. `target` is a DSN or a SQLAlchemy `Connection`.

    From an application's `env.py`, this runs only under `alembic upgrade` (and tools that
    run `env.py` their own way); `alembic current`, `downgrade`, `stamp` and autogenerate
    leave pgqueue's schema as it is."""
    if isinstance(target, str):
        _nested(lambda: command.upgrade(alembic_config(dsn=target), revision))
        return
    if _outer_command() not in (None, "", "upgrade"):
        return
    _nested(lambda: command.upgrade(alembic_config(connection=target), revision))


def downgrade(target: Any, revision: str) -> None:
    """Migrate down to `revision` (`base` removes every pgqueue table)."""
    if isinstance(target, str):
        _nested(lambda: command.downgrade(alembic_config(dsn=target), revision))
    else:
        _nested(lambda: command.downgrade(alembic_config(connection=target), revision))


def upgrade_sql(
    revision: str = HEAD, dsn: str = "postgresql://", current: str | None = None
) -> str:
    """The SQL that `upgrade` would run from revision `current` (None: an empty database),
    for review or for a DBA to apply."""
    cfg = alembic_config(dsn=dsn)
    out = io.StringIO()
    cfg.output_buffer = out
    command.upgrade(cfg, revision if current is None else f"{current}:{revision}", sql=True)
    return out.getvalue()


def downgrade_sql(revision: str, current: str = HEAD, dsn: str = "postgresql://") -> str:
    """The SQL that `downgrade` would run from revision `current`, for review."""
    cfg = alembic_config(dsn=dsn)
    out = io.StringIO()
    cfg.output_buffer = out
    command.downgrade(cfg, f"{current}:{revision}", sql=True)
    return out.getvalue()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


@dataclass(frozen=True)
class DowngradePlan:
    """What `downgrade(revision)` would do to the data: the revisions it would undo, whether
    that drops the jobs table, how many jobs it holds and how many workers are alive."""

    current: str | None
    undone: tuple[str, ...]
    drops_jobs: bool
    jobs: int
    live_workers: int


def downgrade_plan(dsn: str, revision: str) -> DowngradePlan:
    """Look before `downgrade`: read the current revision, jobs and live workers."""
    import re

    import psycopg
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        # to_regclass: NULL rather than an error when the schema is not there.
        has_version, has_jobs, has_workers = conn.execute(
            "SELECT to_regclass('pgqueue.alembic_version') IS NOT NULL,"
            " to_regclass('pgqueue.jobs') IS NOT NULL,"
            " to_regclass('pgqueue.workers') IS NOT NULL"
        ).fetchone() or (False, False, False)
        row = (
            conn.execute("SELECT version_num FROM pgqueue.alembic_version").fetchone()
            if has_version
            else None
        )
        current = row[0] if row else None
        undone: list[str] = []
        if current is not None:
            if match := re.fullmatch(r"-(\d+)", revision):
                rev: Any = script.get_revision(current)
                for _ in range(int(match.group(1))):
                    if rev is None:
                        break
                    undone.append(rev.revision)
                    down = rev.down_revision
                    rev = script.get_revision(down) if isinstance(down, str) else None
            else:
                lower = None if revision == "base" else revision
                undone = [
                    r.revision
                    for r in script.iterate_revisions(current, lower or "base")
                    if r is not None and r.revision != lower
                ]
        first = {r.revision for r in script.walk_revisions() if r.down_revision is None}
        drops_jobs = has_jobs and any(r in first for r in undone)
        jobs = (
            int(conn.execute("SELECT count(*) FROM pgqueue.jobs").fetchone()[0])  # type: ignore[index]
            if drops_jobs
            else 0
        )
        live = (
            int(
                conn.execute(
                    "SELECT count(*) FROM pgqueue.workers"
                    " WHERE heartbeat_at > now() - make_interval(secs => lease)"
                ).fetchone()[0]  # type: ignore[index]
            )
            if has_workers and undone
            else 0
        )
    return DowngradePlan(current, tuple(undone), drops_jobs, jobs, live)


# Group roles (NOLOGIN): grant one to each login role, e.g. `GRANT pgqueue_producer TO web`.
# Idempotent; run again after a migration adds tables (the default privileges cover tables
# created later by the role that runs this, usually the one that runs the migrations).
ROLES_SQL = """
DO $$
DECLARE
    name text;
BEGIN
    -- Roles belong to the whole server: `migrate roles` run for two databases at once may
    -- both find a role missing, and the second CREATE then fails; it exists, as wanted.
    FOREACH name IN ARRAY ARRAY['pgqueue_producer', 'pgqueue_worker', 'pgqueue_observer'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', name);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;
            END;
        END IF;
    END LOOP;
END
$$;

GRANT USAGE ON SCHEMA pgqueue TO pgqueue_producer, pgqueue_worker, pgqueue_observer;

-- Producers insert jobs: the columns a new job is made of, not what a worker writes later,
-- so a producer cannot insert a job already running, finished, holding a result or errors,
-- or with attempts spent (the table's defaults fill those; a table-wide INSERT right from
-- an earlier version is replaced). pgqueue's enqueue also reads back the ids it was given,
-- the job holding a unique key and whether depends_on names jobs: those columns only,
-- never arguments, results or errors. It frees unique keys whose unique_for has passed
-- through a function, not an UPDATE right, which would also let a producer change those
-- keys and lock rows (one granted by an earlier version is taken back).
REVOKE INSERT ON pgqueue.jobs FROM pgqueue_producer;
GRANT INSERT (id, queue, task, args, kwargs, priority, run_at, max_attempts, unique_key,
              timeout, depends_on, unique_for, trace_context, concurrency_key, created_at)
    ON pgqueue.jobs TO pgqueue_producer;
GRANT SELECT (id, queue, state, unique_key, unique_until) ON pgqueue.jobs TO pgqueue_producer;
REVOKE UPDATE (unique_until) ON pgqueue.jobs FROM pgqueue_producer;
GRANT EXECUTE ON FUNCTION pgqueue.release_unique_keys(text[]) TO pgqueue_producer;
-- Children enqueued after their parents finished are freed (or cancelled) through a
-- function too (migration 0027).
GRANT EXECUTE ON FUNCTION pgqueue.settle_children(bigint[]) TO pgqueue_producer;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA pgqueue TO pgqueue_producer;

-- Workers claim, run and record jobs, heartbeat, enqueue periodic jobs, prune: rows only,
-- never the schema.
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA pgqueue TO pgqueue_worker;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA pgqueue TO pgqueue_worker;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA pgqueue TO pgqueue_worker;
ALTER DEFAULT PRIVILEGES IN SCHEMA pgqueue
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO pgqueue_worker;
ALTER DEFAULT PRIVILEGES IN SCHEMA pgqueue GRANT USAGE, SELECT ON SEQUENCES TO pgqueue_worker;

-- Observers (the dashboard without actions, /metrics, `pgqueue stats`): read only.
GRANT SELECT ON ALL TABLES IN SCHEMA pgqueue TO pgqueue_observer;
ALTER DEFAULT PRIVILEGES IN SCHEMA pgqueue GRANT SELECT ON TABLES TO pgqueue_observer;
"""


def create_roles(dsn: str) -> None:
    """Create the group roles pgqueue_producer, pgqueue_worker and pgqueue_observer if
    missing, and grant each what it needs on the migrated schema (ROLES_SQL)."""
    import psycopg

    with psycopg.connect(dsn, connect_timeout=10) as conn:
        # The migrations' lock: roles are granted on a schema that is not changing under them.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('pgqueue.migrate:pgqueue'))")
        conn.execute(ROLES_SQL)
