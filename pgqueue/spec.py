"""Job options checked and turned into a JobSpec, the insert parameters of one job (pure)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pgqueue.errors import ConfigurationError, SerializationError
from pgqueue.store import JobSpec, dumps

DEFAULT_QUEUE = "default"
DEFAULT_MAX_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class EnqueueOptions:
    """Per-enqueue settings; unset fields fall back to the task's defaults."""

    conn: Any = None
    queue: str | None = None
    priority: int | None = None
    delay: float | timedelta | None = None
    run_at: datetime | None = None
    unique_key: str | None = None
    max_attempts: int | None = None
    timeout: float | None = None
    depends_on: Iterable[int] | None = None
    unique_for: float | timedelta | None = None


def seconds(value: float | timedelta, what: str) -> float:
    """A duration in seconds: finite and not negative."""
    n = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(n, bool) or not isinstance(n, int | float):
        raise ConfigurationError(f"{what} must be seconds (a number) or a timedelta")
    if not 0 <= n < math.inf:
        raise ConfigurationError(f"{what} must be >= 0 (and finite), got {n}")
    return float(n)


def positive_int(value: Any, what: str, minimum: int) -> int:
    """An integer (not a bool) of at least `minimum`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value


def build_spec(
    task: str,
    args: Iterable[Any] | None,
    kwargs: Mapping[str, Any] | None,
    *,
    queue: str,
    priority: int,
    max_attempts: int,
    delay: float | timedelta | None = None,
    run_at: datetime | None = None,
    unique_key: str | None = None,
    timeout: float | None = None,
    depends_on: Iterable[int] | None = None,
    unique_for: float | timedelta | None = None,
) -> JobSpec:
    """Validate and serialise one job; raises before anything touches the database."""
    if not isinstance(task, str) or not task:
        raise ConfigurationError("task name must be a non-empty string")
    if not isinstance(queue, str) or not queue:
        raise ConfigurationError("queue must be a non-empty string")
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ConfigurationError(f"priority must be an integer, got {priority!r}")
    if not -(2**31) <= priority < 2**31:
        raise ConfigurationError("priority must fit in 32 bits")
    positive_int(max_attempts, "max_attempts", 1)
    if delay is not None and run_at is not None:
        raise ConfigurationError("give delay or run_at, not both")
    delay_s = seconds(delay, "delay") if delay is not None else None
    if run_at is not None and (not isinstance(run_at, datetime) or run_at.tzinfo is None):
        raise ConfigurationError("run_at must be a timezone-aware datetime")
    if unique_key is not None and not isinstance(unique_key, str):
        raise ConfigurationError("unique_key must be a string")
    timeout_s = seconds(timeout, "timeout") if timeout is not None else None
    unique_for_s = seconds(unique_for, "unique_for") if unique_for is not None else None
    if unique_for_s is not None and unique_key is None:
        raise ConfigurationError("unique_for needs a unique_key")
    parents = None
    if depends_on is not None:
        if isinstance(depends_on, str | bytes) or not isinstance(depends_on, Iterable):
            raise ConfigurationError("depends_on must be a list of job ids")
        parents = tuple(depends_on)
        if not parents or not all(
            isinstance(p, int) and not isinstance(p, bool) and p > 0 for p in parents
        ):
            raise ConfigurationError("depends_on must be a non-empty list of job ids")
    if timeout_s == 0:
        raise ConfigurationError("timeout must be positive")
    if isinstance(args, str | bytes) or (args is not None and not isinstance(args, Iterable)):
        raise SerializationError(f"args must be a list of arguments, not {type(args).__name__}")
    args_list = list(args or ())
    kwargs_dict = dict(kwargs or {})
    if not all(isinstance(k, str) for k in kwargs_dict):
        raise SerializationError("kwargs keys must be strings")
    try:
        args_json, kwargs_json = dumps(args_list), dumps(kwargs_dict)
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"arguments of {task} are not JSON-serialisable: {exc}") from None
    return JobSpec(
        task=task,
        args_json=args_json,
        kwargs_json=kwargs_json,
        queue=queue,
        priority=priority,
        max_attempts=max_attempts,
        delay=delay_s,
        run_at=run_at,
        unique_key=unique_key,
        timeout=timeout_s,
        depends_on=parents,
        unique_for=unique_for_s,
    )
