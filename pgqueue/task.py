"""Task: a registered handler and its defaults; BoundTask: a task with enqueue options."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from pgqueue.operations import _async_conn, _sync_conn
from pgqueue.retry import RetryPolicy
from pgqueue.spec import EnqueueOptions, build_spec
from pgqueue.store import JobSpec

if TYPE_CHECKING:
    from pgqueue.app import App

P = ParamSpec("P")
R = TypeVar("R")


class Task(Generic[P, R]):
    """A registered handler. Call it to run it here; `enqueue` it to run it on a worker."""

    def __init__(
        self,
        app: App,
        fn: Callable[P, R],
        *,
        name: str,
        queue: str,
        priority: int,
        max_attempts: int,
        retry: RetryPolicy,
        timeout: float | None,
    ) -> None:
        self.app = app
        self.fn = fn
        self.name = name
        self.queue = queue
        self.priority = priority
        self.max_attempts = max_attempts
        self.retry = retry
        self.timeout = timeout
        self.is_async = inspect.iscoroutinefunction(fn)
        self.signature = inspect.signature(fn)
        self.wants_ctx = "ctx" in self.signature.parameters
        # Where a positional `ctx` sits among the positional parameters (None: keyword-only
        # or absent): `def f(ctx, x)` gets the context first and the job's args after it.
        positional = [
            p.name
            for p in self.signature.parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        self.ctx_position = positional.index("ctx") if "ctx" in positional else None
        # Handlers taking plain positional parameters (no defaults, no ctx, no *args) are
        # called without Signature.bind when the job's args match: the common, hot case.
        params = list(self.signature.parameters.values())
        plain = all(
            p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
            for p in params
        )
        self.plain_arity = len(params) if plain and not self.wants_ctx else -1
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", name)
        self.__wrapped__ = fn

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Task {self.name} queue={self.queue}>"

    def options(
        self,
        *,
        conn: Any = None,
        queue: str | None = None,
        priority: int | None = None,
        delay: float | timedelta | None = None,
        run_at: datetime | None = None,
        unique_key: str | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
        depends_on: Iterable[int] | None = None,
        unique_for: float | timedelta | None = None,
        concurrency_key: str | None = None,
    ) -> BoundTask[P, R]:
        """The same task with per-enqueue settings (connection, queue, delay, ...)."""
        opts = EnqueueOptions(
            conn=conn,
            queue=queue,
            priority=priority,
            delay=delay,
            run_at=run_at,
            unique_key=unique_key,
            max_attempts=max_attempts,
            timeout=timeout,
            depends_on=depends_on,
            unique_for=unique_for,
            concurrency_key=concurrency_key,
        )
        return BoundTask(self, opts)

    def spec(self, args: tuple[Any, ...], kwargs: dict[str, Any], opts: EnqueueOptions) -> JobSpec:
        return build_spec(
            self.name,
            args,
            kwargs,
            queue=opts.queue if opts.queue is not None else self.queue,
            priority=opts.priority if opts.priority is not None else self.priority,
            max_attempts=opts.max_attempts if opts.max_attempts is not None else self.max_attempts,
            delay=opts.delay,
            run_at=opts.run_at,
            unique_key=opts.unique_key,
            timeout=opts.timeout if opts.timeout is not None else self.timeout,
            depends_on=opts.depends_on,
            unique_for=opts.unique_for,
            concurrency_key=opts.concurrency_key,
        )

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> int:
        """Insert a job for this task in its own transaction; returns its id."""
        return BoundTask(self, EnqueueOptions()).enqueue(*args, **kwargs)

    async def enqueue_async(self, *args: P.args, **kwargs: P.kwargs) -> int:
        """The asyncio twin of `enqueue`."""
        return await BoundTask(self, EnqueueOptions()).enqueue_async(*args, **kwargs)


class BoundTask(Generic[P, R]):
    """A task with enqueue options applied; made by `Task.options`."""

    def __init__(self, task: Task[P, R], opts: EnqueueOptions) -> None:
        self.task = task
        self.opts = opts

    def options(self, **changes: Any) -> BoundTask[P, R]:
        return BoundTask(self.task, replace(self.opts, **changes))

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> int:
        spec = self.task.spec(args, kwargs, self.opts)
        return self.task.app.store.job_insert_many([spec], conn=_sync_conn(self.opts.conn))[0]

    async def enqueue_async(self, *args: P.args, **kwargs: P.kwargs) -> int:
        spec = self.task.spec(args, kwargs, self.opts)
        conn = await _async_conn(self.opts.conn)
        return (await (await self.task.app.async_store()).job_insert_many([spec], conn=conn))[0]
