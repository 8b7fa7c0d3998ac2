"""What a running handler can know about its job: `pgqueue.context()`."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any

from pgqueue.errors import PgQueueError
from pgqueue.job import Job
from pgqueue.progress import checked
from pgqueue.tracing import capture


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
    # The worker's ProgressWriter (None outside a worker), and whether this attempt reported.
    _progress: Any = field(default=None, repr=False)
    _reported: bool = field(default=False, repr=False)
    # ctx.transaction(): the worker's connections for it, and this attempt's open one.
    _connections: Any = field(default=None, repr=False)
    _tx: Any = field(default=None, repr=False)
    # Set when the attempt's outcome is decided: a thread that outlives it (a sync attempt
    # that timed out or was cancelled) can open no transaction any more.
    _ended: bool = field(default=False, repr=False)
    # A sync handler's thread (a concurrent.futures.Future), set when it starts.
    _thread: Any = field(default=None, repr=False)

    def _cancel(self) -> None:
        self._cancelled = True

    def transaction(self) -> Any:
        """A psycopg connection whose transaction commits together with this job's success:
        `with ctx.transaction() as conn:` in a sync handler, `async with` in an async one.
        What the handler writes through it exists if and only if the job ends `succeeded`
        (an error, a retry, a cancel or a lost worker rolls it back). Do not commit it."""
        from pgqueue.worker.transactions import TransactionScope

        return TransactionScope(self)

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report how far the job is, from 0 to 1, with an optional short message.

        Stored on the job's row (`progress`, `progress_message`), where `get_job`, the
        dashboard and `app.wait(on_progress=...)` see it. Cheap to call often: it never
        waits on the database; the worker writes at most once a second per job, the latest
        value winning, and the last one before the job's outcome. Each call replaces both
        values (no message: none shown). Bad values raise ConfigurationError.
        """
        fraction, message = checked(fraction, message)
        self._reported = True
        if self._progress is not None:
            self._progress.report((self.job.id, self.attempt), fraction, message)

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
        spec = self._app._spec(name, args, kwargs, options)
        # Captured now, inside the attempt's span: the completer inserts it outside of it.
        trace = capture()
        if trace is not None:
            spec = replace(spec, trace_context=trace)
        self._followups.append(spec)


_current: ContextVar[JobContext] = ContextVar("pgqueue_job_context")


def context() -> JobContext:
    """The context of the job this code runs in."""
    try:
        return _current.get()
    except LookupError:
        raise PgQueueError("pgqueue.context() is only available inside a running job") from None
