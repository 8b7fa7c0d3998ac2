"""Cron fire times across daylight-saving changes, as cron itself has them: a job set for a
time in the hour that repeats when clocks go back runs once; one that runs every so many
minutes runs in both."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import pgqueue
from pgqueue.errors import ConfigurationError
from pgqueue.schedule import Schedule

# Europe/Paris goes back from 03:00 CEST to 02:00 CET on 2026-10-25: 02:00-03:00 twice.
START = datetime(2026, 10, 24, 12, tzinfo=UTC)
END = datetime(2026, 10, 26, 12, tzinfo=UTC)


def fires(schedule: Schedule) -> list[datetime]:
    times, t = [], schedule.next_fire(START)
    while t < END:
        times.append(t)
        t = schedule.next_fire(t)
    return times


def scheduled_by_the_minute(schedule: Schedule) -> list[datetime]:
    """What a scheduler loop waking every 10 minutes enqueues (due_since from its last)."""
    enqueued: list[datetime] = []
    last = schedule.previous_fire(START)
    now = START
    while now < END:
        for t in schedule.due_since(last, now):
            enqueued.append(t)
            last = t
        now += timedelta(minutes=10)
    return enqueued


def test_a_daily_job_in_the_repeated_hour_runs_once():
    # It ran twice: at 02:30 CEST and again at 02:30 CET.
    daily = Schedule("report", "report", "30 2 * * *", timezone="Europe/Paris")
    expected = [
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
        datetime(2026, 10, 26, 1, 30, tzinfo=UTC),
    ]
    assert fires(daily) == expected
    assert scheduled_by_the_minute(daily) == expected


def test_a_job_every_half_hour_runs_in_both_hours():
    every = Schedule("tick", "tick", "*/30 * * * *", timezone="Europe/Paris")
    times = [t for t in fires(every) if datetime(2026, 10, 24, 23, 59, tzinfo=UTC) < t
             < datetime(2026, 10, 25, 2, 1, tzinfo=UTC)]  # fmt: skip
    assert len(times) == 5  # 00:00, 00:30, 01:00, 01:30, 02:00 UTC: the hour twice
    assert scheduled_by_the_minute(every) == fires(every)


def test_a_second_schedule_of_a_task_needs_its_own_name():
    app = pgqueue.App("postgresql://unused")

    @app.task(name="report")
    def report(kind: str) -> None: ...

    app.schedule(report, cron="0 7 * * *", args=["daily"])
    with pytest.raises(ConfigurationError, match="already has a schedule named 'report'"):
        app.schedule(report, cron="0 7 * * 1", args=["weekly"])  # replaced the first before
    app.schedule(report, cron="0 7 * * 1", args=["weekly"], name="weekly report")
    assert sorted(app.schedules) == ["report", "weekly report"]
