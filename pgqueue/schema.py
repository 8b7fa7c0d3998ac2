"""pgqueue's tables as SQLAlchemy metadata, for queries and joins from an application.

The schema itself is created by the alembic migrations (`pgqueue migrate`), not from this
metadata; keep `include_schemas` off for the `pgqueue` schema in your own autogenerate.
"""

from __future__ import annotations

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    Table,
    Text,
    Uuid,
)
from sqlalchemy.dialects.postgresql import JSONB

SCHEMA = "pgqueue"
metadata = MetaData(schema=SCHEMA)

jobs = Table(
    "jobs",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("queue", Text, nullable=False),  # omitted: the task's queue, else "default"
    Column("task", Text, nullable=False),
    Column("args", JSONB, nullable=False, server_default="[]"),
    Column("kwargs", JSONB, nullable=False, server_default="{}"),
    Column("state", Text, nullable=False, server_default="queued"),
    Column("priority", Integer, nullable=False),  # omitted: the task's, else 0
    Column("run_at", DateTime(timezone=True), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("max_attempts", Integer, nullable=False),  # omitted: the task's, else 3
    Column("unique_key", Text),
    Column("timeout", Float),
    Column("last_error", Text),
    Column("errors", JSONB, nullable=False, server_default="[]"),
    Column("result", JSONB),
    Column("worker_id", Uuid),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("depends_on", ARRAY(BigInteger)),
    Column("unique_for", Float),
    Column("unique_until", DateTime(timezone=True)),
    Column("cancel_requested_at", DateTime(timezone=True)),
    Column("cancel_reason", Text),  # given with the request, shown when it ends cancelled
    Column("progress", Float),  # 0..1, what the handler last reported (ctx.progress)
    Column("progress_message", Text),
    Column("trace_context", JSONB),  # W3C traceparent/tracestate captured at enqueue
    Column("concurrency_key", Text),  # capped per key where the queue has a per-key limit
)

workers = Table(
    "workers",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("host", Text, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("queues", ARRAY(Text), nullable=False),
    Column("concurrency", Integer, nullable=False),
    Column("lease", Float, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("heartbeat_at", DateTime(timezone=True), nullable=False),
    Column("tasks", ARRAY(Text)),
    Column("version", Text),  # the pgqueue version the worker runs
    Column("waiting", Boolean),  # waits for jobs: inserts wake it (NULL: older, always)
)

tasks = Table(
    "tasks",
    metadata,
    Column("name", Text, primary_key=True),
    Column("queue", Text, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("timeout", Float),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

queues = Table(
    "queues",
    metadata,
    Column("name", Text, primary_key=True),
    Column("paused", Boolean, nullable=False, server_default="false"),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("concurrency_limit", Integer),
    Column("rate_limit", Integer),
    Column("rate_period", Float, nullable=False, server_default="1"),
    Column("per_key_limit", Integer),  # most running jobs per concurrency_key
    Column("key_cursor", Text),  # the key served last: the next claim starts after it
    Column("retain_succeeded", Float),
    Column("retain_dead", Float),
    Column("retain_cancelled", Float),
)

queue_starts = Table(
    "queue_starts",
    metadata,
    Column("queue", Text, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("n", Integer, nullable=False),
)

schedules = Table(
    "schedules",
    metadata,
    Column("name", Text, primary_key=True),
    Column("task", Text, nullable=False),
    Column("cron", Text, nullable=False),
    Column("timezone", Text, nullable=False, server_default="UTC"),
    Column("args", JSONB, nullable=False, server_default="[]"),
    Column("kwargs", JSONB, nullable=False, server_default="{}"),
    Column("queue", Text),
    Column("priority", Integer),
    Column("last_fire_at", DateTime(timezone=True)),
    Column("last_job_id", BigInteger),
    Column("next_fire_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
