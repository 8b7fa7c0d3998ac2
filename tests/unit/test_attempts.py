"""The attempts registry: every attempt frees its slot, however early it is interrupted."""

from __future__ import annotations

import asyncio
import datetime
import uuid

from pgqueue.context import JobContext
from pgqueue.job import Job
from pgqueue.store.params import claimed_job
from pgqueue.worker.attempts import Attempt, Attempts, Mark

NOW = datetime.datetime.now(datetime.UTC)


def _job(job_id: int) -> Job:
    row = (job_id, "default", "t", "[]", None, 0, NOW, 1, 3, None, None, NOW, NOW, None, None)
    return claimed_job(row, uuid.uuid4())


def _registry(ran: list[int], ended: list[tuple[int, Mark | None]]) -> Attempts:
    def make(job: Job) -> Attempt:
        ctx = JobContext(job=job, attempt=job.attempts, logger=None)  # type: ignore[arg-type]
        return Attempt(job=job, ctx=ctx, is_async=True)

    async def execute(attempt: Attempt) -> None:
        try:
            if attempt.mark is None:
                ran.append(attempt.job.id)
                await asyncio.sleep(10)
        except asyncio.CancelledError:
            pass
        ended.append((attempt.job.id, attempt.mark))

    return Attempts(2, make, execute)


def test_attempts_released_before_their_task_began_still_free_their_slots() -> None:
    asyncio.run(_attempts_released_before_their_task_began_still_free_their_slots())


async def _attempts_released_before_their_task_began_still_free_their_slots() -> None:
    ran: list[int] = []
    ended: list[tuple[int, Mark | None]] = []
    attempts = _registry(ran, ended)
    attempts.submit(_job(1))
    attempts.submit(_job(2))
    attempts.release_all()  # shutdown in the same loop turn as the claim: no task has begun
    assert await attempts.wait_running(5)
    assert attempts.running() == 0 and attempts.room() == 2
    assert ran == []
    assert sorted(ended) == [(1, Mark.RELEASE), (2, Mark.RELEASE)]


def test_a_cancel_reaches_a_running_attempt_and_frees_its_slot() -> None:
    asyncio.run(_a_cancel_reaches_a_running_attempt_and_frees_its_slot())


async def _a_cancel_reaches_a_running_attempt_and_frees_its_slot() -> None:
    ran: list[int] = []
    ended: list[tuple[int, Mark | None]] = []
    attempts = _registry(ran, ended)
    attempts.submit(_job(1))
    await asyncio.sleep(0)  # the attempt's task begins and waits in its handler
    assert ran == [1]
    assert attempts.cancel(1, 1)
    assert await attempts.wait_running(5)
    assert ended == [(1, Mark.CANCEL)]
    assert attempts.room() == 2


def test_a_job_waiting_for_a_slot_starts_when_one_frees() -> None:
    asyncio.run(_a_job_waiting_for_a_slot_starts_when_one_frees())


async def _a_job_waiting_for_a_slot_starts_when_one_frees() -> None:
    ran: list[int] = []
    ended: list[tuple[int, Mark | None]] = []
    attempts = _registry(ran, ended)
    for job_id in (1, 2, 3):
        attempts.submit(_job(job_id))
    await asyncio.sleep(0)
    assert ran == [1, 2] and attempts.waiting() == 1
    attempts.cancel(1, 1)
    for _ in range(3):
        await asyncio.sleep(0)
    assert ran == [1, 2, 3] and attempts.waiting() == 0
    attempts.release_all()
    assert await attempts.wait_running(5)
