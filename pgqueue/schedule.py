"""Periodic jobs: cron schedules, and the scheduler loop every worker runs.

Each fire time enqueues exactly one job however many nodes run the scheduler: a node
enqueues fire time T only by moving the schedule row's `last_fire_at` forward to T, with a
compare-and-set, in the same transaction as the job insert. Missed fire times (everything
was down) are not replayed one by one: the latest one is enqueued, once.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg

from pgqueue.errors import ConfigurationError, DatabaseUnavailable
from pgqueue.store import JobSpec

if TYPE_CHECKING:
    from croniter import croniter

log = logging.getLogger("pgqueue.scheduler")
MAX_SLEEP = 30.0  # re-read the clock at least this often (clock changes, new schedules)
LOOK_BACK = 60.0  # seconds: fire times missed by less than this are still enqueued
MAX_CATCH_UP = 100


@dataclass(frozen=True, slots=True)
class Schedule:
    """A task enqueued on every fire time of a cron expression."""

    name: str
    task: str
    cron: str
    timezone: str = "UTC"
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    priority: int | None = None

    def __post_init__(self) -> None:
        from croniter import croniter  # imported when used: every worker start pays otherwise

        fields = self.cron.split()
        if len(fields) not in (5, 6) or not croniter.is_valid(
            self.cron, second_at_beginning=len(fields) == 6
        ):
            raise ConfigurationError(
                f"invalid cron expression {self.cron!r} for {self.name}: five fields "
                "(minute hour day month weekday), or six with leading seconds"
            )
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigurationError(f"unknown time zone {self.timezone!r}") from None

    def _iter(self, start: datetime) -> croniter:
        from croniter import croniter

        local = start.astimezone(ZoneInfo(self.timezone))
        return croniter(self.cron, local, second_at_beginning=len(self.cron.split()) == 6)

    def previous_fire(self, now: datetime) -> datetime:
        """The latest fire time at or before `now` (UTC)."""
        # croniter's get_prev is strictly before its start: a fire time equal to `now` counts.
        prev: datetime = self._iter(now).get_prev(datetime)
        after: datetime = self._iter(prev).get_next(datetime)
        return (after if after <= now else prev).astimezone(UTC)

    def due_since(self, last: datetime | None, now: datetime) -> list[datetime]:
        """Fire times to enqueue now: those after `last` (the one this node handled last)
        up to `now`, within a short look-back, so a loop that ran late catches up; when
        more were missed than that (everything was down), only the latest one."""
        latest = self.previous_fire(now)
        if last is None or latest <= last:
            return [latest] if last is None else []
        times: list[datetime] = []
        t = self.next_fire(max(last, now - timedelta(seconds=LOOK_BACK)))
        while t <= latest and len(times) < MAX_CATCH_UP:
            times.append(t)
            t = self.next_fire(t)
        return times or [latest]

    def next_fire(self, now: datetime) -> datetime:
        """The first fire time strictly after `now` (UTC)."""
        nxt: datetime = self._iter(now).get_next(datetime)
        return nxt.astimezone(UTC)


async def run_scheduler(
    store: Any, schedules: list[tuple[Schedule, JobSpec]], stop: asyncio.Event
) -> None:
    """Register the schedules, then enqueue each fire time as it comes, until `stop`.

    Each schedule comes with the JobSpec of its job (the task's defaults applied)."""
    registered = False
    seen: dict[str, datetime] = {}  # the last fire time this node handled, per schedule
    while not stop.is_set():
        now = datetime.now(UTC)
        try:
            if not registered:
                for sched, _ in schedules:
                    await store.schedule_register(
                        sched, sched.previous_fire(now), sched.next_fire(now)
                    )
                    seen[sched.name] = sched.previous_fire(now)
                registered = True
            for sched, spec in schedules:
                for fire_at in sched.due_since(seen.get(sched.name), now):
                    # The fire time in the unique key: visible in SQL, and a second guard.
                    fired = replace(spec, unique_key=f"{sched.name}@{fire_at.isoformat()}")
                    job_id = await store.schedule_fire(
                        sched.name, fire_at, sched.next_fire(fire_at), fired
                    )
                    seen[sched.name] = fire_at
                    if job_id is not None:
                        log.info(
                            "schedule %s fired for %s: job %d",
                            sched.name,
                            fire_at.isoformat(),
                            job_id,
                        )
        except (DatabaseUnavailable, psycopg.Error, OSError) as exc:
            log.warning("scheduler: %s", exc)
        except Exception:
            log.exception("scheduler: unexpected error")
        now = datetime.now(UTC)
        upcoming = min(s.next_fire(now) for s, _ in schedules)
        delay = min(MAX_SLEEP, max(0.0, (upcoming - now).total_seconds()) + 0.001)
        try:
            await asyncio.wait_for(stop.wait(), delay)
        except TimeoutError:
            pass
