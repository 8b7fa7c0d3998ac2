"""What a running handler can know about its job: `pgqueue.context()`."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

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

    _app: Any = field(default=None, repr=False)
    _followups: list[Any] = field(default_factory=list, repr=False)

    def _cancel(self) -> None:
        self._cancelled = True

    def enqueue(
        self,
        task: Any,
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> None:
        """Enqueue a follow-up job that exists if and only if this job succeeds.

        It is written in the same transaction as this job's success; if the job fails,
        is retried or cancelled, it is dropped (a retry that succeeds enqueues it then).
        `task` is a Task or a task name; options as for `App.enqueue`.
        """
        name = task if isinstance(task, str) else task.name
        self._followups.append(self._app._spec(name, args, kwargs, options))


_current: ContextVar[JobContext] = ContextVar("pgqueue_job_context")


def context() -> JobContext:
    """The context of the job this code runs in."""
    try:
        return _current.get()
    except LookupError:
        raise PgQueueError("pgqueue.context() is only available inside a running job") from None
