"""What a running handler can know about its job: `pgqueue.context()`."""

from __future__ import annotations

import logging
from contextvars import ContextVar
from dataclasses import dataclass, field

from pgqueue.errors import PgQueueError
from pgqueue.job import Job


@dataclass(slots=True)
class JobContext:
    """The job being run, its attempt (1-based), a logger, and whether it was cancelled."""

    job: Job
    attempt: int
    logger: logging.Logger
    # A plain flag: set on the worker's loop, read by the handler's thread (one bool store
    # is atomic), and cheaper than a threading.Event for every job.
    _cancelled: bool = field(default=False, repr=False)

    @property
    def cancelled(self) -> bool:
        """True once the job was cancelled or the worker gave it up; check it in long loops."""
        return self._cancelled

    def _cancel(self) -> None:
        self._cancelled = True


_current: ContextVar[JobContext] = ContextVar("pgqueue_job_context")


def context() -> JobContext:
    """The context of the job this code runs in."""
    try:
        return _current.get()
    except LookupError:
        raise PgQueueError("pgqueue.context() is only available inside a running job") from None
