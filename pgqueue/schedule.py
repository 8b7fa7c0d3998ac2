"""Periodic jobs: a cron schedule and its fire times (pure; the scheduler service that
enqueues them is pgqueue.maintenance.scheduler)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pgqueue.errors import ConfigurationError

if TYPE_CHECKING:
    from croniter import croniter

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
        try:
            now = datetime.now(UTC)
            self.next_fire(now)
            self.previous_fire(now)
        except ValueError:  # croniter's CroniterBadDateError: no date matches
            raise ConfigurationError(
                f"cron expression {self.cron!r} for {self.name} never fires (no date matches it)"
            ) from None

    def _iter(self, start: datetime) -> croniter:
        from croniter import croniter

        local = start.astimezone(ZoneInfo(self.timezone))
        return croniter(self.cron, local, second_at_beginning=len(self.cron.split()) == 6)

    def previous_fire(self, now: datetime) -> datetime:
        """The latest fire time at or before `now` (UTC)."""
        # croniter's get_prev is strictly before its start: a fire time equal to `now` counts.
        prev: datetime = self._iter(now).get_prev(datetime)
        after: datetime = self._iter(prev).get_next(datetime)
        latest = (after if after <= now else prev).astimezone(UTC)
        while self._repeated(latest):
            latest = self._iter(latest).get_prev(datetime).astimezone(UTC)
        return latest

    def _repeated(self, fire: datetime) -> bool:
        """A fire time at a wall-clock time the zone's clocks show twice (they went back),
        the second time, when the expression names its hours: cron runs such a job once,
        at the first (a job every so many minutes runs in both hours, as in cron)."""
        local = fire.astimezone(ZoneInfo(self.timezone))
        if not local.fold:
            return False
        fields = self.cron.split()
        hours = fields[2 if len(fields) == 6 else 1]
        if hours.startswith("*"):
            return False
        first = local.replace(fold=0)
        return first.astimezone(UTC) != fire  # the same wall time, an hour before

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
        nxt: datetime = self._iter(now).get_next(datetime).astimezone(UTC)
        while self._repeated(nxt):
            nxt = self._iter(nxt).get_next(datetime).astimezone(UTC)
        return nxt
