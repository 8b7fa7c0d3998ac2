"""The scheduler service: enqueues each fire time of the app's periodic tasks.

Each fire time enqueues exactly one job however many nodes run the scheduler: a node
enqueues fire time T only by moving the schedule row's `last_fire_at` forward to T with a
compare-and-set, in the same transaction as the job insert. The scheduler starts from the
`last_fire_at` on record, so fire times missed while every node was down are caught up:
those within a short look-back one by one, older ones as the latest, once. A schedule whose
fire times cannot be computed is turned off with one error line; the others go on."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime

from pgqueue.schedule import Schedule
from pgqueue.store import AsyncJobStore, JobSpec

log = logging.getLogger("pgqueue.scheduler")
MAX_SLEEP = 30.0  # re-read the clock at least this often (clock changes, new schedules)


class Scheduler:
    def __init__(self, store: AsyncJobStore, schedules: list[tuple[Schedule, JobSpec]]) -> None:
        self.store = store
        self.schedules = list(schedules)
        self.last: dict[str, datetime] = {}  # the last fire time handled, per schedule
        self.registered = False

    def _drop(self, sched: Schedule, exc: Exception) -> None:
        log.error("schedule %s (%s) turned off: %s", sched.name, sched.cron, exc)
        self.schedules = [(s, spec) for s, spec in self.schedules if s.name != sched.name]

    async def _register(self, now: datetime) -> None:
        for sched, _ in list(self.schedules):
            try:
                previous, upcoming = sched.previous_fire(now), sched.next_fire(now)
            except ValueError as exc:
                self._drop(sched, exc)
                continue
            recorded = await self.store.schedule_register(sched, previous, upcoming)
            self.last[sched.name] = recorded or previous
        self.registered = True

    async def run_once(self, now: datetime | None = None) -> list[int]:
        """Enqueue what is due at `now`; returns the ids of the jobs enqueued here."""
        now = now or datetime.now(UTC)
        if not self.registered:
            await self._register(now)
        fired: list[int] = []
        for sched, spec in list(self.schedules):
            try:
                due = sched.due_since(self.last.get(sched.name), now)
            except ValueError as exc:
                self._drop(sched, exc)
                continue
            for fire_at in due:
                # The fire time in the unique key: visible in SQL, and a second guard.
                job = replace(spec, unique_key=f"{sched.name}@{fire_at.isoformat()}")
                job_id = await self.store.schedule_fire(
                    sched.name, fire_at, sched.next_fire(fire_at), job
                )
                self.last[sched.name] = fire_at
                if job_id is not None:
                    fired.append(job_id)
                    log.info(
                        "schedule %s fired for %s: job %d", sched.name, fire_at.isoformat(), job_id
                    )
        return fired

    def delay(self, now: datetime | None = None) -> float:
        """Seconds until the next fire time of any schedule (at most MAX_SLEEP)."""
        now = now or datetime.now(UTC)
        upcoming = []
        for sched, _ in self.schedules:
            try:
                upcoming.append(sched.next_fire(now))
            except ValueError:
                continue
        if not upcoming:
            return MAX_SLEEP
        return min(MAX_SLEEP, max(0.0, (min(upcoming) - now).total_seconds()) + 0.001)
