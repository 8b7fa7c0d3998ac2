"""Test helpers for applications that use pgqueue.

- `drain(app)` runs every due job in the test's process, with pgqueue's own worker, and
  returns the jobs it ran; `drain_async` for async tests.
- `assert_enqueued(task, args=[...])`, `assert_not_enqueued`, `enqueued_jobs(app)` look at
  the jobs waiting in the table.
- `eager(app)`: within the block, `enqueue` runs the job before it returns.
- `postgres_server()`, `migrated_database(server_dsn)`, `reset_database(dsn)` and
  `use_database(app, dsn)` give tests a real, migrated, empty database.

The pytest plugin (registered when pgqueue is installed) turns these into fixtures:
`pgqueue_database`, `pgqueue_dsn`, `pgqueue_app` and `pgqueue_eager`; see
`pgqueue.testing.plugin`.
"""

from __future__ import annotations

from pgqueue.testing.assertions import assert_enqueued, assert_not_enqueued, enqueued_jobs
from pgqueue.testing.database import (
    migrated_database,
    postgres_server,
    reset_database,
    use_database,
)
from pgqueue.testing.drain import drain, drain_async
from pgqueue.testing.eager import EagerJobFailed, eager

__all__ = [
    "EagerJobFailed",
    "assert_enqueued",
    "assert_not_enqueued",
    "drain",
    "drain_async",
    "eager",
    "enqueued_jobs",
    "migrated_database",
    "postgres_server",
    "reset_database",
    "use_database",
]
