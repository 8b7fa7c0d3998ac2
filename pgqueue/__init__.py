"""pgqueue: a durable job queue on PostgreSQL."""

from __future__ import annotations

from pgqueue.app import App, BoundTask, Task
from pgqueue.context import JobContext, context
from pgqueue.errors import (
    ConfigurationError,
    DatabaseUnavailable,
    Discard,
    JobCancelled,
    JobFailed,
    JobNotFound,
    PermissionDenied,
    PgQueueError,
    Retry,
    SchemaNotMigrated,
    SerializationError,
    UnknownTask,
)
from pgqueue.job import Job, JobState
from pgqueue.retry import RetryPolicy
from pgqueue.settings import WorkerSettings
from pgqueue.worker import Worker

__all__ = [
    "App",
    "BoundTask",
    "ConfigurationError",
    "DatabaseUnavailable",
    "Discard",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobFailed",
    "JobNotFound",
    "JobState",
    "PermissionDenied",
    "PgQueueError",
    "Retry",
    "RetryPolicy",
    "SchemaNotMigrated",
    "SerializationError",
    "Task",
    "UnknownTask",
    "Worker",
    "WorkerSettings",
    "context",
]
__version__ = "0.1.0"
