"""Progress that handlers report with `ctx.progress`, written to their jobs' rows.

A handler's call only records the value in memory (it never waits on the database, from a
thread or from the event loop); one writer per worker writes what changed, in one guarded
statement for all its jobs, at most once a second per job. Internal API.

Throttling: a job's first report is written at once, later ones at most once a second,
the latest value winning. The value still unwritten when the attempt ends is written just
before its outcome (`finish`), so a job's row keeps the last progress its handler reported.
A write is guarded like outcomes (still `running`, same attempt, same worker), so a late
report never lands on a rescued job. A failed write is logged and never fails the job.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any
from uuid import UUID

import orjson

from pgqueue.errors import ConfigurationError
from pgqueue.store import AsyncJobStore, first_line

log = logging.getLogger("pgqueue.worker")
INTERVAL = 1.0  # seconds between two writes of one job's progress
MAX_MESSAGE = 1000  # characters of a progress message
FINAL_WRITE_TIMEOUT = 5.0  # an outcome waits at most this long for the last progress write

Key = tuple[int, int]  # (job id, attempt)
Report = tuple[float, str | None]


def checked(fraction: Any, message: Any) -> Report:
    """The report as stored, or ConfigurationError saying what is wrong with it."""
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        raise ConfigurationError(
            f"progress must be a number from 0 to 1, not {type(fraction).__name__}"
        )
    if not 0 <= fraction <= 1:  # NaN fails this too
        raise ConfigurationError(f"progress must be from 0 to 1, got {fraction!r}")
    if message is not None:
        if not isinstance(message, str):
            raise ConfigurationError(
                f"progress message must be a string, not {type(message).__name__}"
            )
        if len(message) > MAX_MESSAGE:
            raise ConfigurationError(
                f"progress message must be at most {MAX_MESSAGE} characters, got {len(message)}"
            )
        if "\x00" in message:
            raise ConfigurationError("progress message must not contain a NUL character")
        try:
            message.encode()
        except UnicodeEncodeError:
            raise ConfigurationError(
                "progress message must be valid text (it has a lone surrogate)"
            ) from None
    return float(fraction), message


class ProgressWriter:
    """Collects the reports of one worker's running attempts and writes them (see above)."""

    def __init__(self, store: AsyncJobStore, worker_id: UUID) -> None:
        self.store = store
        self.worker_id = worker_id
        self.writes = 0  # statements sent, for tests and debugging
        self._loop = asyncio.get_running_loop()
        # Touched by handler threads and the loop alike: a lock, held for dict operations only.
        self._lock = threading.Lock()
        self._pending: dict[Key, Report] = {}
        self._written_at: dict[Key, float] = {}  # when each attempt's last write was sent
        self._wake_scheduled = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def report(self, key: Key, fraction: float, message: str | None) -> None:
        """Record a report; safe from any thread, never waits on the database."""
        with self._lock:
            known = key in self._pending
            self._pending[key] = (fraction, message)
            # A report replacing one not yet written changes no due time: the writer knows.
            if known or self._wake_scheduled:
                return
            self._wake_scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._start)
        except RuntimeError:
            pass  # the worker's loop is closed (a thread outliving its worker): nobody writes

    def _start(self) -> None:
        with self._lock:
            self._wake_scheduled = False
        if self._task is None:
            self._task = self._loop.create_task(self._run(), name="pgqueue-progress")
        else:
            self._wake.set()

    async def _run(self) -> None:
        """Write what is due, sleep until the next report is due; end when none is left."""
        try:
            while True:
                self._wake.clear()
                with self._lock:
                    if not self._pending:
                        return
                    now = time.monotonic()
                    due = {
                        key: report
                        for key, report in self._pending.items()
                        if now - self._written_at.get(key, -INTERVAL) >= INTERVAL
                    }
                    for key in due:
                        del self._pending[key]
                        self._written_at[key] = now
                    later = [self._written_at[key] + INTERVAL for key in self._pending]
                if due:
                    await self._write(due)
                elif later:
                    try:
                        await asyncio.wait_for(self._wake.wait(), min(later) - now)
                    except TimeoutError:
                        pass
        finally:
            self._task = None

    async def finish(self, key: Key) -> None:
        """The attempt is over: write its unwritten report, if any, and forget it. Called
        before its outcome is handed to the completer, which then comes after it."""
        with self._lock:
            report = self._pending.pop(key, None)
            self._written_at.pop(key, None)
        if report is not None:
            try:
                await asyncio.wait_for(self._write({key: report}), FINAL_WRITE_TIMEOUT)
            except TimeoutError:
                log.warning("job %d: last progress not written (database too slow)", key[0])

    def forget(self, key: Key) -> None:
        """The attempt is over and its progress is not to be written (it was abandoned)."""
        with self._lock:
            self._pending.pop(key, None)
            self._written_at.pop(key, None)

    async def _write(self, reports: dict[Key, Report]) -> None:
        rows = [
            {"id": job_id, "attempt": attempt, "progress": fraction, "message": message}
            for (job_id, attempt), (fraction, message) in reports.items()
        ]
        self.writes += 1
        try:
            await self.store.job_progress_many(self.worker_id, orjson.dumps(rows).decode())
        except Exception as exc:
            ids = sorted(job_id for job_id, _ in reports)
            log.warning("progress of job(s) %s not written: %s", ids, first_line(exc))
