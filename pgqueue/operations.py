"""What an App does with jobs and queues once they exist: inspect, cancel, retry, pause,
limit, wait. A mixin of App, over the same stores."""

from __future__ import annotations

import asyncio
import inspect
import math
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from pgqueue.errors import (
    ConfigurationError,
    DatabaseUnavailable,
    JobCancelled,
    JobFailed,
    JobNotFound,
)
from pgqueue.integrations.sqlalchemy import async_connection, sync_connection
from pgqueue.job import Job
from pgqueue.spec import INT8, name, positive_int, seconds
from pgqueue.store import AsyncJobStore, JobStore

_UNSET: Any = object()


def _sync_conn(conn: Any) -> Any:
    return None if conn is None else sync_connection(conn)


async def _async_conn(conn: Any) -> Any:
    return None if conn is None else await async_connection(conn)


class Operations:
    """Job and queue operations; App provides the stores."""

    @property
    def store(self) -> JobStore:
        raise NotImplementedError

    async def async_store(self) -> AsyncJobStore:
        raise NotImplementedError

    def get_job(self, job_id: int, conn: Any = None) -> Job | None:
        """The job with this id, or None."""
        if not _possible_id(job_id):
            return None
        return self.store.job_get(job_id, conn=_sync_conn(conn))

    async def get_job_async(self, job_id: int) -> Job | None:
        if not _possible_id(job_id):
            return None
        return await (await self.async_store()).job_get(job_id)

    def cancel(self, job_id: int, reason: str | None = None) -> bool:
        """Cancel a job that has not finished; False if it already had.

        A queued job becomes `cancelled` at once; a running one is cancelled by its worker.
        """
        if not _possible_id(job_id):
            return False
        state = self.store.job_cancel(job_id, reason)
        return state in ("queued", "running")

    async def cancel_async(self, job_id: int, reason: str | None = None) -> bool:
        """The asyncio twin of `cancel`."""
        if not _possible_id(job_id):
            return False
        state = await (await self.async_store()).job_cancel(job_id, reason)
        return state in ("queued", "running")

    def retry(self, job_id: int) -> bool:
        """Queue a dead or cancelled job again, now; False if it is in another state."""
        return _possible_id(job_id) and self.store.job_retry(job_id)

    async def retry_async(self, job_id: int) -> bool:
        """The asyncio twin of `retry`."""
        return _possible_id(job_id) and await (await self.async_store()).job_retry(job_id)

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
        per_key: int | None = _UNSET,
    ) -> None:
        """Cluster-wide limits for a queue: at most `concurrency` jobs running at once, at
        most `rate` starts per `per` seconds (a sliding window), at most `per_key` running
        jobs of any one `concurrency_key` (keys then take turns). None removes a limit
        (`rate=None` also puts the window back to 1 s); an omitted argument leaves it as it
        is."""
        settings: dict[str, Any] = {}
        if per_key is not _UNSET:
            if per_key is not None:
                positive_int(per_key, "per_key", 1)
                if per_key >= 2**31:
                    raise ConfigurationError("per_key must fit in 32 bits")
            settings["per_key_limit"] = per_key
        if concurrency is not _UNSET:
            if concurrency is not None:
                positive_int(concurrency, "concurrency", 0)
            settings["concurrency_limit"] = concurrency
        if rate is not _UNSET:
            if rate is not None:
                positive_int(rate, "rate", 0)
            settings["rate_limit"] = rate
        if per is not None:
            settings["rate_period"] = seconds(per, "per")
            if settings["rate_period"] == 0:
                raise ConfigurationError("per must be positive")
        elif rate is None:
            # A rate limit removed takes its window with it: a rate set later without `per`
            # gets the default second, not a window left from before.
            settings["rate_period"] = 1.0
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
                    None if value is None else seconds(value, f"retention of {state}")
                )
        self.store.queue_set(_queue_name(name), **settings)

    def queues(self) -> list[dict[str, Any]]:
        """Queues with settings (paused, limits)."""
        return self.store.queue_config()

    def wait(
        self,
        job_id: int,
        timeout: float | None = None,
        poll: float = 0.05,
        *,
        on_progress: Callable[[float, str | None], object] | None = None,
    ) -> Any:
        """Block until the job is final; return its result.

        `on_progress(fraction, message)` is called whenever the job's stored progress
        changes (once at first if it already has some), in this thread, before returning.
        Raises JobFailed (dead), JobCancelled, TimeoutError, or JobNotFound. The database
        away for a while (a restart, a failover) is waited out within the timeout; past it,
        the TimeoutError says so.
        """
        timeout, poll = _wait_times(timeout, poll)
        if not _possible_id(job_id):
            raise JobNotFound(f"no job with id {job_id}")
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = poll
        seen: tuple[float, str | None] | None = None
        while True:
            try:
                row = self.store.job_outcome(job_id, _left(deadline))
            except DatabaseUnavailable as exc:
                _still_waiting(job_id, timeout, deadline, exc)
                time.sleep(_pause(delay, deadline))
                delay = min(delay * 1.5, 0.5)
                continue
            if on_progress is not None and (news := _progress_news(row, seen)) is not None:
                seen = news
                on_progress(*news)
            result = _final_result(job_id, row)
            if result is not _UNSET:
                return result
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} did not finish within {timeout}s")
            time.sleep(_pause(delay, deadline))
            delay = min(delay * 1.5, 0.5)

    async def wait_async(
        self,
        job_id: int,
        timeout: float | None = None,
        poll: float = 0.05,
        *,
        on_progress: Callable[[float, str | None], object] | None = None,
    ) -> Any:
        """The asyncio twin of `wait`; `on_progress` may be a coroutine function."""
        timeout, poll = _wait_times(timeout, poll)
        if not _possible_id(job_id):
            raise JobNotFound(f"no job with id {job_id}")
        store = await self.async_store()
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = poll
        seen: tuple[float, str | None] | None = None
        while True:
            try:
                row = await store.job_outcome(job_id, _left(deadline))
            except DatabaseUnavailable as exc:
                _still_waiting(job_id, timeout, deadline, exc)
                await asyncio.sleep(_pause(delay, deadline))
                delay = min(delay * 1.5, 0.5)
                continue
            if on_progress is not None and (news := _progress_news(row, seen)) is not None:
                seen = news
                called = on_progress(*news)
                if inspect.isawaitable(called):
                    await called
            result = _final_result(job_id, row)
            if result is not _UNSET:
                return result
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} did not finish within {timeout}s")
            await asyncio.sleep(_pause(delay, deadline))
            delay = min(delay * 1.5, 0.5)


def _left(deadline: float | None) -> float | None:
    """How long a call may wait for a connection: what is left of the timeout (at least a
    moment, for the last look)."""
    return None if deadline is None else max(0.1, deadline - time.monotonic())


def _pause(delay: float, deadline: float | None) -> float:
    return delay if deadline is None else min(delay, max(0.0, deadline - time.monotonic()))


def _still_waiting(
    job_id: int, timeout: float | None, deadline: float | None, exc: DatabaseUnavailable
) -> None:
    """Raise TimeoutError, saying why, if the time to wait is over."""
    if deadline is not None and time.monotonic() >= deadline:
        raise TimeoutError(
            f"job {job_id} did not finish within {timeout}s (the database: {exc})"
        ) from exc


def _possible_id(job_id: Any) -> bool:
    """Whether `job_id` can name a job (a bigint id); anything but an integer is refused."""
    if isinstance(job_id, bool) or not isinstance(job_id, int):
        raise ConfigurationError(f"a job id is an integer, got {job_id!r}")
    return 0 < job_id < INT8


def _wait_times(timeout: float | None, poll: float) -> tuple[float | None, float]:
    """`wait`'s timeout (None or inf: none) and poll interval, checked: a NaN timeout would
    never expire and poll the database without a pause."""
    no_limit = timeout is None or timeout == math.inf
    timeout = None if no_limit else seconds(timeout, "timeout")  # type: ignore[arg-type]
    poll = seconds(poll, "poll")
    if poll == 0:
        raise ConfigurationError("poll must be positive")
    return timeout, poll


def _queue_name(queue: str) -> str:
    return name(queue, "queue")


def _progress_news(
    row: Mapping[str, Any] | None, seen: tuple[float, str | None] | None
) -> tuple[float, str | None] | None:
    """The job's progress if it is there and differs from what was last reported."""
    if row is None or row["progress"] is None:
        return None
    current = (row["progress"], row["progress_message"])
    return None if current == seen else current


def _final_result(job_id: int, row: Mapping[str, Any] | None) -> Any:
    if row is None:
        raise JobNotFound(f"no job with id {job_id}")
    state = row["state"]
    if state == "succeeded":
        return row["result"]
    if state == "dead":
        raise JobFailed(job_id, row["last_error"])
    if state == "cancelled":
        raise JobCancelled(job_id, row["last_error"])
    return _UNSET


def retry_refusal(job: Job) -> str:
    """Why `retry` left this job where it is, as "job N ..." ends."""
    if job.state in ("dead", "cancelled"):
        return f"is {job.state}, but another live job holds its unique key {job.unique_key!r}"
    return f"is {job.state}, not dead or cancelled"
