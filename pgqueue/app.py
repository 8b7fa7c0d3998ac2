"""App: the task registry, connections, and enqueueing (sync and asyncio); the operations
on existing jobs and queues come from pgqueue.operations."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, ParamSpec, TypeVar, overload

from pgqueue.dsn import probe, resolve_dsn, resolve_pooler
from pgqueue.errors import ConfigurationError, SerializationError, UnknownTask
from pgqueue.operations import Operations, _async_conn, _sync_conn
from pgqueue.pools import Pools
from pgqueue.retry import DEFAULT_RETRY, RetryPolicy
from pgqueue.schedule import Schedule
from pgqueue.spec import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_QUEUE,
    EnqueueOptions,
    build_spec,
    positive_int,
    seconds,
    serialise,
)
from pgqueue.store import AsyncJobStore, Batch, JobSpec, JobStore
from pgqueue.task import BoundTask, Task

P = ParamSpec("P")
R = TypeVar("R")

_PLAIN_JOB_KEYS = frozenset({"task", "args", "kwargs"})

__all__ = [
    "App",
    "BoundTask",
    "EnqueueOptions",
    "Task",
    "build_spec",
    "probe",
    "resolve_dsn",
]


class App(Operations):
    """A pgqueue application: where tasks are registered and jobs are enqueued.

    `dsn` defaults to PGQUEUE_DSN, then DATABASE_URL. Connections are opened on first use;
    `close()` (or leaving a `with App(...)` block) releases them. `pooler=True` says the DSN
    goes through a pooler in transaction mode (pgbouncer's `pool_mode = transaction`): the
    app's connections then prepare no statements (default: PGQUEUE_POOLER, else False).
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        pool_size: int = 4,
        pool_timeout: float = 30.0,
        default_queue: str = DEFAULT_QUEUE,
        default_max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        default_retry: RetryPolicy = DEFAULT_RETRY,
        pooler: bool | None = None,
    ) -> None:
        self.dsn = resolve_dsn(dsn)
        self.pooler = resolve_pooler(pooler)
        self.pool_size = positive_int(pool_size, "pool_size", 1)
        # How long a call waits for one of the pool's connections (the database down, or every
        # connection busy) before DatabaseUnavailable.
        self.pool_timeout = seconds(pool_timeout, "pool_timeout")
        if not self.pool_timeout:
            raise ConfigurationError("pool_timeout must be more than 0 seconds")
        self.default_queue = default_queue
        self.default_max_attempts = positive_int(default_max_attempts, "max_attempts", 1)
        self.default_retry = default_retry
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.schedules: dict[str, Schedule] = {}
        self._pools = Pools(self)

    # -- registry ---------------------------------------------------------------------------

    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self,
        *,
        name: str | None = None,
        queue: str | None = None,
        priority: int = 0,
        max_attempts: int | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def task(  # type: ignore[misc]
        self,
        fn: Callable[P, R] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str | None = None,
        priority: int = 0,
        max_attempts: int | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
    ) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
        """Register a function (sync or `async def`) as a task. Usable bare or with options."""

        def register(func: Callable[P, R]) -> Task[P, R]:
            task_name = name or f"{func.__module__}.{func.__qualname__}"
            t = Task(
                self,
                func,
                name=task_name,
                queue=queue or self.default_queue,
                priority=priority,
                max_attempts=positive_int(
                    max_attempts if max_attempts is not None else self.default_max_attempts,
                    "max_attempts",
                    1,
                ),
                retry=retry or self.default_retry,
                timeout=seconds(timeout, "timeout") if timeout is not None else None,
            )
            # Validate the defaults once, at import time, rather than at the first enqueue.
            build_spec(
                t.name, (), {}, queue=t.queue, priority=t.priority, max_attempts=t.max_attempts
            )
            if task_name in self.tasks and self.tasks[task_name].fn is not func:
                raise ConfigurationError(f"a task named {task_name!r} is already registered")
            self.tasks[task_name] = t
            return t

        return register(fn) if fn is not None else register

    def periodic(
        self,
        *,
        cron: str,
        timezone: str = "UTC",
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        name: str | None = None,
        queue: str | None = None,
        priority: int = 0,
        max_attempts: int | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
    ) -> Callable[[Callable[P, R]], Task[P, R]]:
        """Register a task that the scheduler enqueues on every fire time of `cron`.

        Five cron fields, or six with leading seconds; fire times are read in `timezone`.
        """
        # Check the cron expression and time zone before anything is registered.
        Schedule(name=name or "periodic", task=name or "periodic", cron=cron, timezone=timezone)

        def register(fn: Callable[P, R]) -> Task[P, R]:
            task = self.task(
                name=name,
                queue=queue,
                priority=priority,
                max_attempts=max_attempts,
                retry=retry,
                timeout=timeout,
            )(fn)
            self.schedule(task.name, cron=cron, timezone=timezone, args=args, kwargs=kwargs)
            return task

        return register

    def schedule(
        self,
        task: str | Task[Any, Any],
        *,
        cron: str,
        timezone: str = "UTC",
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        name: str | None = None,
    ) -> Schedule:
        """Enqueue `task` on every fire time of `cron` (see `periodic`). Several schedules
        of one task need distinct `name`s."""
        task_name = task.name if isinstance(task, Task) else task
        sched = Schedule(
            name=name or task_name,
            task=task_name,
            cron=cron,
            timezone=timezone,
            args=list(args or ()),
            kwargs=dict(kwargs or {}),
        )
        self._spec(task_name, sched.args, sched.kwargs, {})  # arguments must serialise now
        if sched.name in self.schedules:
            # A second schedule of one task replaced the first without a word.
            raise ConfigurationError(
                f"the app already has a schedule named {sched.name!r}: give this one a name="
            )
        self.schedules[sched.name] = sched
        return sched

    def schedule_specs(self) -> list[tuple[Schedule, JobSpec]]:
        """Each schedule with the job it enqueues (the task's current defaults)."""
        return [(s, self._spec(s.task, s.args, s.kwargs, {})) for s in self.schedules.values()]

    def get_task(self, name: str) -> Task[Any, Any]:
        try:
            return self.tasks[name]
        except KeyError:
            raise UnknownTask(f"unknown task {name!r}") from None

    # -- connections ------------------------------------------------------------------------

    @property
    def store(self) -> JobStore:
        return self._pools.store()

    async def async_store(self) -> AsyncJobStore:
        """The asyncio store of the running event loop (a pool cannot cross loops)."""
        return await self._pools.async_store()

    def close(self) -> None:
        """Release the app's connections."""
        self._pools.close()

    async def aclose(self) -> None:
        """Release the connections of the running loop (and the sync ones)."""
        await self._pools.aclose()

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> App:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- enqueue ----------------------------------------------------------------------------

    def _spec(
        self,
        task: str,
        args: Iterable[Any] | None,
        kwargs: Mapping[str, Any] | None,
        options: Mapping[str, Any],
    ) -> JobSpec:
        unknown = set(options) - {
            "queue",
            "priority",
            "delay",
            "run_at",
            "unique_key",
            "max_attempts",
            "timeout",
            "depends_on",
            "unique_for",
            "concurrency_key",
        }
        if unknown:
            raise ConfigurationError(f"unknown job option(s): {', '.join(sorted(unknown))}")
        merged = {**self._defaults(task), **{k: v for k, v in options.items() if v is not None}}
        return build_spec(task, args, kwargs, **merged)

    def _defaults(self, task: str) -> dict[str, Any]:
        """Job options a task's jobs get unless given: the task's own when it is registered
        here. Otherwise the database fills them from the task's declaration by a worker
        (pgqueue.tasks), else 'default', 0 and 3, unless this app was given its own."""
        registered = self.tasks.get(task)
        if registered is not None:
            return {
                "queue": registered.queue,
                "priority": registered.priority,
                "max_attempts": registered.max_attempts,
                "timeout": registered.timeout,
            }
        return {
            "queue": None if self.default_queue == DEFAULT_QUEUE else self.default_queue,
            "priority": None,
            "max_attempts": (
                None
                if self.default_max_attempts == DEFAULT_MAX_ATTEMPTS
                else self.default_max_attempts
            ),
            "timeout": None,
        }

    def enqueue(
        self,
        task: str,
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        conn: Any = None,
        **options: Any,
    ) -> int:
        """Insert a job by task name (the task need not be importable here); returns its id."""
        spec = self._spec(task, args, kwargs, options)
        return self.store.job_insert_many([spec], conn=_sync_conn(conn))[0]

    async def enqueue_async(
        self,
        task: str,
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        conn: Any = None,
        **options: Any,
    ) -> int:
        """The asyncio twin of `enqueue`."""
        spec = self._spec(task, args, kwargs, options)
        store = await self.async_store()
        return (await store.job_insert_many([spec], conn=await _async_conn(conn)))[0]

    def _specs(self, jobs: Iterable[Mapping[str, Any]]) -> Batch:
        specs = Batch()
        plain: dict[str, JobSpec] = {}  # per task, its job with no options and no arguments
        for i, job in enumerate(jobs):
            if not (type(job) is dict or isinstance(job, Mapping)) or "task" not in job:
                raise ConfigurationError(f"job #{i} must be a dict with a 'task' key")
            try:
                if job.keys() <= _PLAIN_JOB_KEYS and isinstance(job["task"], str):
                    # The bulk case: task and arguments only, the task's defaults for the rest,
                    # which are checked once per task.
                    task = job["task"]
                    shape = plain.get(task)
                    if shape is None:
                        shape = plain[task] = build_spec(task, (), {}, **self._defaults(task))
                    specs.add(shape, *serialise(task, job.get("args"), job.get("kwargs")))
                    continue
                rest = {k: v for k, v in job.items() if k not in _PLAIN_JOB_KEYS}
                specs.add(self._spec(job["task"], job.get("args"), job.get("kwargs"), rest))
            except (ConfigurationError, SerializationError) as exc:
                raise type(exc)(f"job #{i}: {exc}") from None
        return specs

    def enqueue_many(self, jobs: Iterable[Mapping[str, Any]], conn: Any = None) -> list[int]:
        """Insert many jobs at once; returns their ids in order.

        Each job is a dict: {"task": name, "args": [...], "kwargs": {...}} plus any of queue,
        priority, delay, run_at, unique_key, max_attempts, timeout, depends_on, unique_for,
        concurrency_key. Every job is checked before anything is sent, and the batch is
        written whole or not at all (in the caller's transaction, given `conn`): nothing is
        inserted if any job is invalid.

        A batch of 200 jobs or more, none of them with a unique_key or depends_on, is written
        with COPY (binary format, the ids drawn from the sequence first), which is cheaper
        per job than the one INSERT statement that smaller batches, and batches with unique
        keys or dependencies, go through. The rows, the triggers that fire and the wake-ups
        are the same either way. (COPY needs a psycopg 3 connection: a SQLAlchemy session on
        psycopg2 gets the INSERT.)
        """
        return self.store.job_insert_many(self._specs(jobs), conn=_sync_conn(conn))

    async def enqueue_many_async(
        self, jobs: Iterable[Mapping[str, Any]], conn: Any = None
    ) -> list[int]:
        """The asyncio twin of `enqueue_many`."""
        specs = self._specs(jobs)
        store = await self.async_store()
        return await store.job_insert_many(specs, conn=await _async_conn(conn))
