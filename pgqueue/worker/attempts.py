"""The attempts this worker process holds: which run, which wait for a slot, what each was
asked to do. The one owner of slot accounting and of cancel, abandon and release marks.

Invariants (each kept here and nowhere else):
- At most `concurrency` attempts run at once. An attempt counts until its task ends: a sync
  handler still in its thread after a timeout, or a copy abandoned because the job was
  rescued elsewhere, keeps its slot until it returns.
- At most one attempt of a job runs in this process. A later attempt of a job whose earlier
  attempt is still here (the job was rescued while this worker was paused, then claimed here
  again) waits until the earlier one has ended.
- A mark (cancel, abandon, release) belongs to one attempt, named by (job id, attempt
  number), never to a job id: it can never reach the job's next attempt.
- Every attempt that got a slot ends through `_run`, which frees the slot: its task is
  never cancelled before it began (it would end without running anything, its outcome
  unwritten and the job left `running` until the rescue); it begins, sees the mark, and
  ends by it.
- Jobs claimed ahead wait in claim order; they are started as slots free, or handed back
  with `take_waiting` when the worker stops or learns they are not its own any more.
"""

from __future__ import annotations

import asyncio
import collections
import enum
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

from pgqueue.context import JobContext
from pgqueue.job import Job


class Mark(enum.Enum):
    """What the worker asked of a running attempt; the first mark wins."""

    CANCEL = "cancel"  # someone asked to cancel the job: it ends `cancelled`
    ABANDON = "abandon"  # the job was rescued from this worker: its outcome is not written
    RELEASE = "release"  # shutdown: the job goes back to the queue, the attempt given back


@dataclass(eq=False, slots=True)
class Attempt:
    """One attempt of one job, running in this process."""

    job: Job
    ctx: JobContext
    is_async: bool
    handler: Any = None  # the registered Task, None when this worker has no such task
    mark: Mark | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    started: bool = False  # its task has begun: from then on it ends through Attempts._run

    @property
    def key(self) -> tuple[int, int]:
        return (self.job.id, self.job.attempts)

    def ask(self, mark: Mark) -> bool:
        """Mark the attempt and interrupt it: async handlers are cancelled at their next
        await, sync ones see `ctx.cancelled`. False if it was already marked."""
        if self.mark is not None:
            return False
        self.mark = mark
        self.ctx._cancel()
        if self.is_async and self.started:
            self.interrupt()
        return True

    def interrupt(self) -> None:
        """Cancel the attempt's task at its current await. A task that has not begun is
        left alone: cancelled before its first step it would end without its bookkeeping
        (Attempts._run), and when it begins it sees the mark and does not run the handler."""
        if self.started and self.task is not None:
            self.task.cancel()


Execute = Callable[[Attempt], Coroutine[object, object, None]]
MakeAttempt = Callable[[Job], Attempt]


class Attempts:
    """Running and waiting attempts of one worker process (see the module's invariants)."""

    def __init__(self, concurrency: int, make: MakeAttempt, execute: Execute) -> None:
        self.concurrency = concurrency
        self._make = make
        self._execute = execute
        self._running: dict[tuple[int, int], Attempt] = {}
        self._by_job: dict[int, Attempt] = {}
        self._waiting: collections.deque[Job] = collections.deque()
        self._cancel_on_start: set[tuple[int, int]] = set()  # waiting jobs asked to cancel
        self.slot_freed = asyncio.Event()
        self.accepting = True
        self._loop = asyncio.get_running_loop()  # made by the worker, on its loop

    # -- counts ---------------------------------------------------------------------------------

    def running(self) -> int:
        return len(self._running)

    def waiting(self) -> int:
        return len(self._waiting)

    def held(self) -> int:
        """Jobs this process holds: running, or claimed and waiting for a slot."""
        return len(self._running) + len(self._waiting)

    def room(self) -> int:
        """Slots free to start a job right now."""
        return self.concurrency - len(self._running)

    def known(self) -> set[tuple[int, int]]:
        """(job id, attempt) of every job held here, running or waiting for a slot."""
        held = {(a.job.id, a.job.attempts) for a in self._running.values()}
        held.update((job.id, job.attempts) for job in self._waiting)
        return held

    def __iter__(self) -> Iterator[Attempt]:
        return iter(list(self._running.values()))

    # -- starting -------------------------------------------------------------------------------

    def submit(self, job: Job) -> None:
        """Start a claimed job now if a slot is free and no attempt of it runs here, else
        keep it waiting."""
        if self.accepting and self.room() > 0 and job.id not in self._by_job:
            self._launch(job)
        else:
            self._waiting.append(job)

    def _launch(self, job: Job) -> None:
        attempt = self._make(job)
        key = attempt.key
        if key in self._cancel_on_start:
            self._cancel_on_start.discard(key)
            attempt.mark = Mark.CANCEL  # asked while it waited: ends without running
        self._running[key] = attempt
        self._by_job[job.id] = attempt
        attempt.task = self._loop.create_task(self._run(attempt, key))

    async def _run(self, attempt: Attempt, key: tuple[int, int]) -> None:
        """The attempt's task: execute it, then free its slot, however it ended. (A done
        callback instead costs a loop turn per job: a quarter of the worker's own time per
        no-op job.)"""
        attempt.started = True
        try:
            await self._execute(attempt)
        finally:
            self._ended(attempt, key)

    def _ended(self, attempt: Attempt, key: tuple[int, int]) -> None:
        del self._running[key]
        if self._by_job.get(attempt.job.id) is attempt:
            del self._by_job[attempt.job.id]
        self._start_waiting()
        self.slot_freed.set()

    def _start_waiting(self) -> None:
        """Start waiting jobs while slots are free, skipping (for now) any job whose earlier
        attempt still runs here."""
        if not self.accepting:
            return
        blocked: list[Job] = []
        while self._waiting and self.room() > 0:
            job = self._waiting.popleft()
            if job.id in self._by_job:
                blocked.append(job)
            else:
                self._launch(job)
        self._waiting.extendleft(reversed(blocked))

    # -- asking -----------------------------------------------------------------------------------

    def cancel(self, job_id: int, attempt: int) -> bool:
        """Cancel this attempt if it is here (running, or waiting: then it ends as soon as
        it starts, without running); True if it was told now."""
        running = self._running.get((job_id, attempt))
        if running is not None:
            return running.ask(Mark.CANCEL)
        key = (job_id, attempt)
        if key not in self._cancel_on_start and any(
            (j.id, j.attempts) == key for j in self._waiting
        ):
            self._cancel_on_start.add(key)
            return True
        return False

    def abandon_all(self, still_ours: set[tuple[int, int]]) -> list[Job]:
        """This worker was declared lost, and the attempts that the table no longer says
        run here were rescued: stop their running copies (their outcomes will not be
        written) and give up their waiting jobs, which are returned. The attempts the table
        still gives this worker (claimed after the rescue that missed them, or after a
        rescue that did not happen) carry on: given up, they stayed `running` for good."""
        for attempt in self:
            if attempt.key not in still_ours:
                attempt.ask(Mark.ABANDON)
        kept = [job for job in self._waiting if (job.id, job.attempts) in still_ours]
        gone = [job for job in self._waiting if (job.id, job.attempts) not in still_ours]
        self._waiting = collections.deque(kept)
        self._cancel_on_start &= {(job.id, job.attempts) for job in kept}
        return gone

    def release_all(self) -> None:
        """Shutdown, grace over: interrupt every running attempt and give its job back. A
        sync handler's thread cannot be stopped: its job goes back all the same, and the
        thread ends with the process."""
        for attempt in self:
            attempt.ask(Mark.RELEASE)
            attempt.interrupt()

    def take_waiting(self) -> list[Job]:
        """Remove and return the jobs waiting for a slot."""
        jobs = list(self._waiting)
        self._waiting.clear()
        self._cancel_on_start.clear()
        return jobs

    async def wait_running(self, timeout: float | None) -> bool:
        """Wait until no attempt runs (or `timeout`); True if none does."""
        tasks = [a.task for a in self if a.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        return not self._running
