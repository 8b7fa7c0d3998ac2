"""The Job a row becomes, its states, and the outcomes of running it."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID


class JobState(enum.StrEnum):
    """Where a job is in its life."""

    QUEUED = "queued"  # waiting for run_at and a free worker (also between retries)
    RUNNING = "running"  # claimed by a worker, attempt in progress
    SUCCEEDED = "succeeded"  # handler returned; result stored
    DEAD = "dead"  # failed for good: attempts exhausted, discarded or poison
    CANCELLED = "cancelled"  # cancelled before it could finish

    @property
    def final(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED)


FINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED})


@dataclass(frozen=True, slots=True)
class Job:
    """A job as stored in `pgqueue.jobs`."""

    id: int
    queue: str
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    state: JobState
    priority: int
    run_at: datetime
    attempts: int
    max_attempts: int
    unique_key: str | None
    timeout: float | None
    last_error: str | None
    errors: list[dict[str, Any]]
    result: Any
    worker_id: UUID | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    depends_on: list[int] | None = None
    unique_for: float | None = None
    unique_until: datetime | None = None
    progress: float | None = None  # 0..1, what the handler last reported (ctx.progress)
    progress_message: str | None = None
    trace_context: dict[str, str] | None = None  # W3C trace context captured at enqueue
    concurrency_key: str | None = None  # capped per key where the queue has a per-key limit

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Job:
        fields = {name: row[name] for name in cls.__slots__ if name in row}
        fields["state"] = JobState(row["state"])
        if "errors" in fields:
            fields["errors"] = error_history(fields["errors"])
        return cls(**fields)


def error_history(value: Any) -> list[dict[str, Any]]:
    """The `errors` column as a list of entries with a text `at` and an int `attempt`
    whatever was stored there (plain SQL may write anything): readers sort and show them."""
    if value is None:
        return []
    if not isinstance(value, list):
        return [{"error": f"<errors is not a list: {value!r:.200}>"}]
    if all(
        type(e) is dict and type(e.get("at", "")) is str and type(e.get("attempt", 0)) is int
        for e in value
    ):
        return value  # as pgqueue writes them
    history: list[dict[str, Any]] = []
    for entry in value:
        entry = dict(entry) if isinstance(entry, dict) else {"error": str(entry)}
        if entry.get("at") is not None and not isinstance(entry["at"], str):
            entry["at"] = str(entry["at"])
        if not isinstance(entry.get("attempt"), int) or isinstance(entry.get("attempt"), bool):
            entry.pop("attempt", None)
        history.append(entry)
    return history


# Outcomes: what running one attempt came to. The completer writes them in batches.


@dataclass(frozen=True, slots=True)
class Succeeded:
    result_json: str | None


@dataclass(frozen=True, slots=True)
class Failed:
    """The attempt failed; `run_at_delay` is None when the job is dead for good."""

    error: dict[str, Any]
    retry_in: float | None


@dataclass(frozen=True, slots=True)
class Snoozed:
    """Handler raised Retry: run again later, the attempt is given back."""

    delay: float


@dataclass(frozen=True, slots=True)
class Released:
    """The worker is shutting down: back to queued, the attempt given back; due again at
    once, or after `delay` seconds when the handler still runs here (a sync thread cannot be
    stopped): never claimable elsewhere while this process may still run it."""

    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class Cancelled:
    reason: str


Outcome = Succeeded | Failed | Snoozed | Released | Cancelled
