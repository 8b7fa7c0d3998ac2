"""Eager mode: in tests, `enqueue` runs the job (and what it leads to) before it returns."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from pgqueue.errors import PgQueueError
from pgqueue.job import Job
from pgqueue.testing.drain import drain


class EagerJobFailed(AssertionError):
    """A job run by eager mode failed; the message carries the handler's error."""

    def __init__(self, job: Job) -> None:
        last = job.errors[-1] if job.errors else {}
        detail = last.get("traceback") or job.last_error
        super().__init__(f"job {job.id} ({job.task}) failed, now {job.state}: {detail}")
        self.job = job


def _inside_job() -> bool:
    from pgqueue.context import context

    try:
        context()
    except PgQueueError:
        return False
    return True


class _EagerPools:
    """An app's pools whose stores run each job they insert (see eager)."""

    def __init__(self, pools: Any, eager: _Eager) -> None:
        self._pools = pools
        self._eager = eager

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pools, name)

    def store(self) -> Any:
        return _EagerStore(self._pools.store(), self._eager)

    async def async_store(self) -> Any:
        return _AsyncEagerStore(await self._pools.async_store(), self._eager)


class _Eager:
    """What eager mode does after an insert."""

    def __init__(self, app: Any, propagate: bool, timeout: float) -> None:
        self.app = app
        self.propagate = propagate
        self.timeout = timeout

    def wanted(self, conn: Any) -> bool:
        # A job written in the caller's transaction cannot run before it commits; one
        # enqueued by a handler is run by the drain that runs that handler.
        return conn is None and not _inside_job()

    def after(self, ids: Sequence[int]) -> None:
        ran = {job.id: job for job in drain(self.app, timeout=self.timeout)}
        if self.propagate:
            for job_id in ids:
                job = ran.get(job_id)
                if job is not None and job.state != "succeeded" and job.errors:
                    raise EagerJobFailed(job)


class _EagerStore:
    def __init__(self, store: Any, eager: _Eager) -> None:
        self._store = store
        self._eager = eager

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def job_insert_many(self, specs: Any, conn: Any = None) -> list[int]:
        ids: list[int] = self._store.job_insert_many(specs, conn=conn)
        if self._eager.wanted(conn):
            self._eager.after(ids)
        return ids


class _AsyncEagerStore:
    def __init__(self, store: Any, eager: _Eager) -> None:
        self._store = store
        self._eager = eager

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def job_insert_many(self, specs: Any, conn: Any = None) -> list[int]:
        ids: list[int] = await self._store.job_insert_many(specs, conn=conn)
        if self._eager.wanted(conn):
            await asyncio.to_thread(self._eager.after, ids)
        return ids


@contextlib.contextmanager
def eager(app: Any, *, propagate: bool = True, timeout: float = 30.0) -> Iterator[Any]:
    """Within the block, every enqueue on `app` runs the job before returning its id.

    The job is inserted as usual and then run by `drain(app)`, by a real worker, in this
    process: the handler gets its arguments back from the database, its outcome is recorded,
    and jobs it enqueues (or releases) run too. With `propagate` (the default) a job that
    fails raises `EagerJobFailed` from the `enqueue` call, with the handler's traceback.
    A job enqueued inside your own transaction (`conn=`) cannot run before you commit:
    call `drain(app)` after the commit.
    """
    mode = _Eager(app, propagate, timeout)
    # An app's stores all come from its pools (pgqueue/pools.py): eager mode wraps them for
    # the duration of the block. Blocks may overlap (threads, fixtures): the innermost
    # open one acts, and the real pools come back when the last one closes.
    real = app._pools
    while isinstance(real, _EagerPools):
        real = real._pools
    opened: list[Any] = app.__dict__.setdefault("_eager_modes", [])
    opened.append(mode)
    app._pools = _EagerPools(real, mode)
    try:
        yield app
    finally:
        opened.remove(mode)
        app._pools = _EagerPools(real, opened[-1]) if opened else real
