"""Exceptions raised by pgqueue, and the two a handler raises to steer its job."""

from __future__ import annotations

from datetime import timedelta


class PgQueueError(Exception):
    """Base class of every error pgqueue raises."""


class ConfigurationError(PgQueueError):
    """A setting, DSN or option is invalid."""


class SerializationError(PgQueueError, TypeError):
    """Job arguments or a result cannot be stored as JSON."""


class DatabaseUnavailable(PgQueueError):
    """The database cannot be reached."""


class SchemaNotMigrated(PgQueueError):
    """The pgqueue schema is missing or out of date: run `pgqueue migrate`."""


class PermissionDenied(PgQueueError, PermissionError):
    """The database role lacks a right pgqueue needs for this (see `pgqueue migrate roles`)."""


class UnknownTask(PgQueueError, LookupError):
    """No task is registered under that name."""


class JobNotFound(PgQueueError, LookupError):
    """No job has that id."""


class InvalidJobState(PgQueueError):
    """The job is not in a state that allows the operation."""


class JobFailed(PgQueueError):
    """The awaited job ended `dead`."""

    def __init__(self, job_id: int, error: str | None) -> None:
        super().__init__(f"job {job_id} is dead: {error}")
        self.job_id = job_id
        self.error = error


class JobCancelled(PgQueueError):
    """The awaited job ended `cancelled`."""

    def __init__(self, job_id: int, reason: str | None = None) -> None:
        # `reason`: the job's last_error, which says why (the reason given to cancel).
        super().__init__(f"job {job_id} was cancelled" + (f": {reason}" if reason else ""))
        self.job_id = job_id
        self.reason = reason


class Retry(Exception):
    """Raised by a handler: run the job again after `delay` seconds, without using an attempt."""

    def __init__(self, delay: float | timedelta = 0.0, reason: str | None = None) -> None:
        from pgqueue.spec import seconds

        # Checked as an enqueue's delay is: NaN, Infinity or a negative time ran the job again
        # at once, for ever; a time past the table's dates failed its outcome.
        self.delay = seconds(delay, "Retry delay")
        super().__init__(reason or f"retry in {self.delay:g}s")
        self.reason = reason


class Discard(Exception):
    """Raised by a handler: the job goes straight to `dead`, whatever attempts are left."""

    def __init__(self, reason: str = "discarded") -> None:
        super().__init__(reason)
        self.reason = reason
