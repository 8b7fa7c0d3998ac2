"""App: the task registry, enqueueing (sync and asyncio) and admin operations."""

from __future__ import annotations

import asyncio
import inspect
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Generic, ParamSpec, TypeVar, overload

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from pgqueue.errors import (
    ConfigurationError,
    DatabaseUnavailable,
    JobCancelled,
    JobFailed,
    SerializationError,
    UnknownTask,
)
from pgqueue.integrations.sqlalchemy import async_connection, sync_connection
from pgqueue.job import Job
from pgqueue.retry import DEFAULT_RETRY, RetryPolicy
from pgqueue.schedule import Schedule
from pgqueue.store import AsyncJobStore, JobSpec, JobStore, dumps, wrap_error

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_QUEUE = "default"
DEFAULT_MAX_ATTEMPTS = 3
_UNSET: Any = object()


def resolve_dsn(dsn: str | None) -> str:
    """The DSN given, else PGQUEUE_DSN, else DATABASE_URL, else "" (libpq's PG* variables)."""
    if dsn is not None:
        return dsn
    return os.environ.get("PGQUEUE_DSN") or os.environ.get("DATABASE_URL") or ""


def probe(dsn: str, timeout: int = 10) -> None:
    """Fail fast, with libpq's reason, when the database cannot be reached at all."""
    try:
        psycopg.connect(dsn, connect_timeout=timeout, autocommit=True).close()
    except psycopg.Error as exc:
        wrapped = wrap_error(exc)
        raise (wrapped or DatabaseUnavailable(f"database unavailable: {exc}")) from None


@dataclass(frozen=True, slots=True)
class EnqueueOptions:
    """Per-enqueue settings; unset fields fall back to the task's defaults."""

    conn: Any = None
    queue: str | None = None
    priority: int | None = None
    delay: float | timedelta | None = None
    run_at: datetime | None = None
    unique_key: str | None = None
    max_attempts: int | None = None
    timeout: float | None = None
    depends_on: Iterable[int] | None = None
    unique_for: float | timedelta | None = None


def _seconds(value: float | timedelta, what: str) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ConfigurationError(f"{what} must be seconds (a number) or a timedelta")
    if not 0 <= seconds < math.inf:
        raise ConfigurationError(f"{what} must be >= 0 (and finite), got {seconds}")
    return float(seconds)


def _positive_int(value: Any, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value


def build_spec(
    task: str,
    args: Iterable[Any] | None,
    kwargs: Mapping[str, Any] | None,
    *,
    queue: str,
    priority: int,
    max_attempts: int,
    delay: float | timedelta | None = None,
    run_at: datetime | None = None,
    unique_key: str | None = None,
    timeout: float | None = None,
    depends_on: Iterable[int] | None = None,
    unique_for: float | timedelta | None = None,
) -> JobSpec:
    """Validate and serialise one job; raises before anything touches the database."""
    if not isinstance(task, str) or not task:
        raise ConfigurationError("task name must be a non-empty string")
    if not isinstance(queue, str) or not queue:
        raise ConfigurationError("queue must be a non-empty string")
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ConfigurationError(f"priority must be an integer, got {priority!r}")
    if not -(2**31) <= priority < 2**31:
        raise ConfigurationError("priority must fit in 32 bits")
    _positive_int(max_attempts, "max_attempts", 1)
    if delay is not None and run_at is not None:
        raise ConfigurationError("give delay or run_at, not both")
    delay_s = _seconds(delay, "delay") if delay is not None else None
    if run_at is not None and (not isinstance(run_at, datetime) or run_at.tzinfo is None):
        raise ConfigurationError("run_at must be a timezone-aware datetime")
    if unique_key is not None and not isinstance(unique_key, str):
        raise ConfigurationError("unique_key must be a string")
    timeout_s = _seconds(timeout, "timeout") if timeout is not None else None
    unique_for_s = _seconds(unique_for, "unique_for") if unique_for is not None else None
    if unique_for_s is not None and unique_key is None:
        raise ConfigurationError("unique_for needs a unique_key")
    parents = None
    if depends_on is not None:
        if isinstance(depends_on, str | bytes) or not isinstance(depends_on, Iterable):
            raise ConfigurationError("depends_on must be a list of job ids")
        parents = tuple(depends_on)
        if not parents or not all(
            isinstance(p, int) and not isinstance(p, bool) and p > 0 for p in parents
        ):
            raise ConfigurationError("depends_on must be a non-empty list of job ids")
    if timeout_s == 0:
        raise ConfigurationError("timeout must be positive")
    if isinstance(args, str | bytes) or (args is not None and not isinstance(args, Iterable)):
        raise SerializationError(f"args must be a list of arguments, not {type(args).__name__}")
    args_list = list(args or ())
    kwargs_dict = dict(kwargs or {})
    if not all(isinstance(k, str) for k in kwargs_dict):
        raise SerializationError("kwargs keys must be strings")
    try:
        args_json, kwargs_json = dumps(args_list), dumps(kwargs_dict)
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"arguments of {task} are not JSON-serialisable: {exc}") from None
    return JobSpec(
        task=task,
        args_json=args_json,
        kwargs_json=kwargs_json,
        queue=queue,
        priority=priority,
        max_attempts=max_attempts,
        delay=delay_s,
        run_at=run_at,
        unique_key=unique_key,
        timeout=timeout_s,
        depends_on=parents,
        unique_for=unique_for_s,
    )


_PLAIN_JOB_KEYS = frozenset({"task", "args", "kwargs"})


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


def _sync_conn(conn: Any) -> Any:
    return None if conn is None else sync_connection(conn)


async def _async_conn(conn: Any) -> Any:
    return None if conn is None else await async_connection(conn)


class App:
    """A pgqueue application: where tasks are registered and jobs are enqueued.

    `dsn` defaults to PGQUEUE_DSN, then DATABASE_URL. Connections are opened on first use;
    `close()` (or leaving a `with App(...)` block) releases them.
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        pool_size: int = 4,
        default_queue: str = DEFAULT_QUEUE,
        default_max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        default_retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        self.dsn = resolve_dsn(dsn)
        self.pool_size = _positive_int(pool_size, "pool_size", 1)
        self.default_queue = default_queue
        self.default_max_attempts = _positive_int(default_max_attempts, "max_attempts", 1)
        self.default_retry = default_retry
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.schedules: dict[str, Schedule] = {}
        self._lock = threading.Lock()
        self._pool: ConnectionPool | None = None
        self._store: JobStore | None = None
        self._async_stores: dict[asyncio.AbstractEventLoop, AsyncJobStore] = {}

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
                max_attempts=_positive_int(
                    max_attempts if max_attempts is not None else self.default_max_attempts,
                    "max_attempts",
                    1,
                ),
                retry=retry or self.default_retry,
                timeout=_seconds(timeout, "timeout") if timeout is not None else None,
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
        with self._lock:
            if self._store is None:
                probe(self.dsn)
                self._pool = ConnectionPool(
                    self.dsn,
                    min_size=1,
                    max_size=self.pool_size,
                    open=True,
                    # Each of the app's own statements is its own transaction: one round trip.
                    kwargs={"autocommit": True},
                    name="pgqueue",
                )
                self._store = JobStore(self._pool)
            return self._store

    async def async_store(self) -> AsyncJobStore:
        """The asyncio store of the running event loop (a pool cannot cross loops)."""
        loop = asyncio.get_running_loop()
        store = self._async_stores.get(loop)
        if store is None:
            await asyncio.to_thread(probe, self.dsn)
            pool = AsyncConnectionPool(
                self.dsn,
                min_size=1,
                max_size=self.pool_size,
                open=False,
                name="pgqueue-async",
                kwargs={"autocommit": True},
            )
            store = self._async_stores[loop] = AsyncJobStore(pool)
            await pool.open()
        return store

    def close(self) -> None:
        """Release the app's connections."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
            self._store = None
        for loop, store in list(self._async_stores.items()):
            if not loop.is_closed() and not store.pool.closed:
                try:
                    if loop.is_running():
                        loop.create_task(store.pool.close())
                    else:
                        loop.run_until_complete(store.pool.close())
                except RuntimeError:
                    pass
        self._async_stores.clear()

    async def aclose(self) -> None:
        """Release the connections of the running loop (and the sync ones)."""
        store = self._async_stores.pop(asyncio.get_running_loop(), None)
        if store is not None:
            await store.pool.close()
        self.close()

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
        }
        if unknown:
            raise ConfigurationError(f"unknown job option(s): {', '.join(sorted(unknown))}")
        merged = {**self._defaults(task), **{k: v for k, v in options.items() if v is not None}}
        return build_spec(task, args, kwargs, **merged)

    def _defaults(self, task: str) -> dict[str, Any]:
        """Job options a task's jobs get unless given: the task's own, else the app's."""
        registered = self.tasks.get(task)
        return {
            "queue": registered.queue if registered else self.default_queue,
            "priority": registered.priority if registered else 0,
            "max_attempts": registered.max_attempts if registered else self.default_max_attempts,
            "timeout": registered.timeout if registered else None,
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

    def _specs(self, jobs: Iterable[Mapping[str, Any]]) -> list[JobSpec]:
        specs = []
        defaults: dict[str, dict[str, Any]] = {}  # per task, for jobs with no options
        for i, job in enumerate(jobs):
            if not isinstance(job, Mapping) or "task" not in job:
                raise ConfigurationError(f"job #{i} must be a dict with a 'task' key")
            try:
                if job.keys() <= _PLAIN_JOB_KEYS and isinstance(job["task"], str):
                    # The bulk case: task and arguments only, the task's defaults for the rest.
                    task = job["task"]
                    if task not in defaults:
                        defaults[task] = self._defaults(task)
                    specs.append(
                        build_spec(task, job.get("args"), job.get("kwargs"), **defaults[task])
                    )
                    continue
                rest = {k: v for k, v in job.items() if k not in _PLAIN_JOB_KEYS}
                specs.append(self._spec(job["task"], job.get("args"), job.get("kwargs"), rest))
            except (ConfigurationError, SerializationError) as exc:
                raise type(exc)(f"job #{i}: {exc}") from None
        return specs

    def enqueue_many(self, jobs: Iterable[Mapping[str, Any]], conn: Any = None) -> list[int]:
        """Insert many jobs in one statement; returns their ids in order.

        Each job is a dict: {"task": name, "args": [...], "kwargs": {...}} plus any of queue,
        priority, delay, run_at, unique_key, max_attempts, timeout. Nothing is inserted if
        any job is invalid.
        """
        return self.store.job_insert_many(self._specs(jobs), conn=_sync_conn(conn))

    async def enqueue_many_async(
        self, jobs: Iterable[Mapping[str, Any]], conn: Any = None
    ) -> list[int]:
        """The asyncio twin of `enqueue_many`."""
        specs = self._specs(jobs)
        store = await self.async_store()
        return await store.job_insert_many(specs, conn=await _async_conn(conn))

    # -- inspect and act --------------------------------------------------------------------

    def get_job(self, job_id: int, conn: Any = None) -> Job | None:
        """The job with this id, or None."""
        return self.store.job_get(job_id, conn=_sync_conn(conn))

    async def get_job_async(self, job_id: int) -> Job | None:
        return await (await self.async_store()).job_get(job_id)

    def cancel(self, job_id: int, reason: str | None = None) -> bool:
        """Cancel a job that has not finished; False if it already had.

        A queued job becomes `cancelled` at once; a running one is cancelled by its worker.
        """
        state = self.store.job_cancel(job_id, reason)
        return state in ("queued", "running")

    def retry(self, job_id: int) -> bool:
        """Queue a dead or cancelled job again, now; False if it is in another state."""
        return self.store.job_retry(job_id)

    # -- queues -----------------------------------------------------------------------------

    def pause_queue(self, name: str) -> None:
        """Stop claiming from `name` on every node (running jobs finish)."""
        self.store.queue_set(_queue_name(name), paused=True)

    def resume_queue(self, name: str) -> None:
        """Start claiming from `name` again on every node."""
        self.store.queue_set(_queue_name(name), paused=False)

    def set_queue_limits(
        self,
        name: str,
        *,
        concurrency: int | None = _UNSET,
        rate: int | None = _UNSET,
        per: float | None = None,
    ) -> None:
        """Cluster-wide limits for a queue: at most `concurrency` jobs running at once, at
        most `rate` starts per `per` seconds (a sliding window). None removes a limit;
        an omitted argument leaves it as it is."""
        settings: dict[str, Any] = {}
        if concurrency is not _UNSET:
            if concurrency is not None:
                _positive_int(concurrency, "concurrency", 0)
            settings["concurrency_limit"] = concurrency
        if rate is not _UNSET:
            if rate is not None:
                _positive_int(rate, "rate", 0)
            settings["rate_limit"] = rate
        if per is not None:
            settings["rate_period"] = _seconds(per, "per")
            if settings["rate_period"] == 0:
                raise ConfigurationError("per must be positive")
        self.store.queue_set(_queue_name(name), **settings)

    def set_queue_retention(
        self,
        name: str,
        *,
        succeeded: float | timedelta | None = _UNSET,
        dead: float | timedelta | None = _UNSET,
        cancelled: float | timedelta | None = _UNSET,
    ) -> None:
        """How long finished jobs of a queue are kept, in seconds (0: deleted at completion;
        None: the worker's default; omitted: unchanged)."""
        settings: dict[str, Any] = {}
        for state, value in (("succeeded", succeeded), ("dead", dead), ("cancelled", cancelled)):
            if value is not _UNSET:
                settings[f"retain_{state}"] = (
                    None if value is None else _seconds(value, f"retention of {state}")
                )
        self.store.queue_set(_queue_name(name), **settings)

    def queues(self) -> list[dict[str, Any]]:
        """Queues with settings (paused, limits)."""
        return self.store.queue_config()

    def wait(self, job_id: int, timeout: float | None = None, poll: float = 0.05) -> Any:
        """Block until the job is final; return its result.

        Raises JobFailed (dead), JobCancelled, TimeoutError, or JobNotFound.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = poll
        while True:
            row = self.store.job_outcome(job_id)
            result = _final_result(job_id, row)
            if result is not _UNSET:
                return result
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} did not finish within {timeout}s")
            pause = delay if deadline is None else min(delay, max(0.0, deadline - time.monotonic()))
            time.sleep(pause)
            delay = min(delay * 1.5, 0.5)

    async def wait_async(
        self, job_id: int, timeout: float | None = None, poll: float = 0.05
    ) -> Any:
        """The asyncio twin of `wait`."""
        store = await self.async_store()
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = poll
        while True:
            result = _final_result(job_id, await store.job_outcome(job_id))
            if result is not _UNSET:
                return result
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} did not finish within {timeout}s")
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.5)


def _queue_name(name: str) -> str:
    if not isinstance(name, str) or not name:
        raise ConfigurationError("queue name must be a non-empty string")
    return name


def _final_result(job_id: int, row: Mapping[str, Any] | None) -> Any:
    from pgqueue.errors import JobNotFound

    if row is None:
        raise JobNotFound(f"no job with id {job_id}")
    state = row["state"]
    if state == "succeeded":
        return row["result"]
    if state == "dead":
        raise JobFailed(job_id, row["last_error"])
    if state == "cancelled":
        raise JobCancelled(job_id)
    return _UNSET
