"""The three queue systems under test: how to install, run and observe each one."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchlib.db import Probe


@dataclass(frozen=True)
class Target:
    """Where one system runs: its interpreter's bin dir, its database, the concurrency."""

    bin_dir: Path
    dsn: str
    concurrency: int

    def tool(self, name: str) -> str:
        return str(self.bin_dir / name)


@dataclass(frozen=True)
class System:
    name: str
    label: str
    requirements: tuple[str, ...] | None  # None: the interpreter running the bench
    module: str  # task module under bench/apps
    schema: Callable[[Target], list[list[str]]]
    worker: Callable[[Target], list[str]]
    settings: Callable[[int], str]
    rows_sql: str  # every job row present after the bulk enqueue
    done_sql: str  # jobs finished successfully
    failed_sql: str  # jobs that ended in failure
    in_flight_sql: str  # jobs claimed by a worker and not yet recorded as finished
    # Backlog scenarios. `fill_sql` inserts no-op jobs %(low)s..%(high)s with plain SQL (the
    # system's own triggers fire as for any insert), ids 1..N in a fresh database.
    # `pending_sql` is true while a job with an id above %(low)s is unfinished: a range of the
    # primary key, so its cost does not grow with N (each system takes jobs in id order).
    fill_sql: str
    pending_sql: str

    @property
    def probe(self) -> Probe:
        return Probe(self.done_sql, self.in_flight_sql, self.failed_sql)

    @property
    def database(self) -> str:
        return f"bench_{self.name}"


def _pgqueuer_batch(concurrency: int) -> int:
    return max(1, concurrency // 2)


PGQUEUE = System(
    name="pgqueue",
    label="pgqueue",
    requirements=None,
    module="bench_tasks",
    schema=lambda t: [[t.tool("pgqueue"), "migrate", "--dsn", t.dsn]],
    worker=lambda t: [
        t.tool("pgqueue"),
        "work",
        "bench_tasks:app",
        "--dsn",
        t.dsn,
        "--concurrency",
        str(t.concurrency),
        "--log-level",
        "WARNING",
    ],
    settings=lambda c: f"pgqueue work --concurrency {c} --log-level WARNING (1 process)",
    rows_sql="SELECT count(*) FROM pgqueue.jobs",
    done_sql="SELECT count(*) FROM pgqueue.jobs WHERE state = 'succeeded'",
    failed_sql="SELECT count(*) FROM pgqueue.jobs WHERE state IN ('dead', 'cancelled')",
    in_flight_sql="SELECT count(*) FROM pgqueue.jobs WHERE state = 'running'",
    fill_sql=(
        "INSERT INTO pgqueue.jobs (task, args, queue, priority, max_attempts) "
        "SELECT 'bench_tasks.noop', jsonb_build_array(i), 'default', 0, 3 "
        "FROM generate_series(%(low)s::bigint, %(high)s::bigint) AS i"
    ),
    pending_sql=(
        "SELECT EXISTS (SELECT FROM pgqueue.jobs "
        "WHERE id > %(low)s AND state IN ('queued', 'running'))"
    ),
)

PROCRASTINATE = System(
    name="procrastinate",
    label="Procrastinate 3.10.0",
    requirements=("procrastinate==3.10.0", "psycopg[binary]", "psycopg-pool"),
    module="procrastinate_tasks",
    schema=lambda t: [
        [t.tool("procrastinate"), "--app=procrastinate_tasks.app", "schema", "--apply"]
    ],
    worker=lambda t: [
        t.tool("procrastinate"),
        "--app=procrastinate_tasks.app",
        "--log-level=warning",
        "worker",
        "--concurrency",
        str(t.concurrency),
    ],
    settings=lambda c: (
        f"worker --concurrency {c}, PsycopgConnector pool max_size {c + 1} "
        "(concurrency + 1, per its docs for short jobs), LISTEN/NOTIFY on, jobs kept"
    ),
    rows_sql="SELECT count(*) FROM procrastinate_jobs",
    done_sql="SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'",
    failed_sql="SELECT count(*) FROM procrastinate_jobs WHERE status IN ('failed', 'aborted')",
    in_flight_sql="SELECT count(*) FROM procrastinate_jobs WHERE status = 'doing'",
    fill_sql=(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, args) "
        "SELECT 'default', 'noop', jsonb_build_object('i', i) "
        "FROM generate_series(%(low)s::bigint, %(high)s::bigint) AS i"
    ),
    pending_sql=(
        "SELECT EXISTS (SELECT FROM procrastinate_jobs "
        "WHERE id > %(low)s AND status IN ('todo', 'doing'))"
    ),
)

PGQUEUER = System(
    name="pgqueuer",
    label="PgQueuer 1.6.0",
    requirements=("pgqueuer==1.6.0", "asyncpg", "typer<0.29"),
    module="pgqueuer_tasks",
    schema=lambda t: [
        [t.tool("pgq"), "--pg-dsn", t.dsn, "install"],
        [t.tool("pgq"), "--pg-dsn", t.dsn, "autovac"],
    ],
    worker=lambda t: [
        t.tool("pgq"),
        "run",
        "pgqueuer_tasks:create",
        "--batch-size",
        str(_pgqueuer_batch(t.concurrency)),
        "--max-concurrent-tasks",
        str(max(t.concurrency, 2 * _pgqueuer_batch(t.concurrency))),
    ],
    settings=lambda c: (
        f"pgq run --max-concurrent-tasks {max(c, 2 * _pgqueuer_batch(c))} "
        f"--batch-size {_pgqueuer_batch(c)} (largest batch its docs allow: "
        "max_concurrent_tasks >= 2 x batch_size), one asyncpg connection, "
        "`pgq autovac` applied, durability 'durable' (default)"
    ),
    rows_sql="SELECT count(*) FROM pgqueuer",
    done_sql="SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'",
    failed_sql="SELECT count(*) FROM pgqueuer_log WHERE status IN ('exception', 'failed')",
    in_flight_sql="SELECT count(*) FROM pgqueuer WHERE status = 'picked'",
    fill_sql=(
        "INSERT INTO pgqueuer (priority, entrypoint, payload, status) "
        "SELECT 0, 'noop', convert_to(i::text, 'UTF8'), 'queued' "
        "FROM generate_series(%(low)s::bigint, %(high)s::bigint) AS i"
    ),
    # Finished jobs leave `pgqueuer` (moved to pgqueuer_log in the same statement).
    pending_sql="SELECT EXISTS (SELECT FROM pgqueuer WHERE id > %(low)s)",
)

ALL = (PGQUEUE, PROCRASTINATE, PGQUEUER)


def own_bin_dir() -> Path:
    return Path(sys.executable).parent
