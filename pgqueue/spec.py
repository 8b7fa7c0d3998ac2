"""Job options checked and turned into a JobSpec, the insert parameters of one job (pure)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pgqueue.errors import ConfigurationError, SerializationError
from pgqueue.store import JobSpec, dumps

DEFAULT_QUEUE = "default"
DEFAULT_MAX_ATTEMPTS = 3
MAX_SECONDS = 100 * 365 * 86400.0  # durations beyond a century are mistakes (and overflow)
MAX_NAME_BYTES = {"queue": 200, "task": 500, "unique_key": 500, "concurrency_key": 500}
INT4 = 2**31
INT8 = 2**63
RUN_AT_FIRST = datetime(2, 1, 1, tzinfo=UTC)
RUN_AT_END = datetime(9999, 12, 31, tzinfo=UTC)  # the run_at of jobs waiting on others
# JSON escapes PostgreSQL's jsonb refuses: NUL, and UTF-16 surrogates (checked precisely when
# one appears, since a valid pair is fine).
_SUSPECT_ESCAPE = re.compile(r"\\u(0000|d[89a-f])", re.IGNORECASE)


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
    concurrency_key: str | None = None


def seconds(value: float | timedelta, what: str) -> float:
    """A duration in seconds: finite, not negative, at most a century."""
    n = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(n, bool) or not isinstance(n, int | float):
        raise ConfigurationError(f"{what} must be seconds (a number) or a timedelta")
    if not 0 <= n < math.inf:
        raise ConfigurationError(f"{what} must be >= 0 (and finite), got {n}")
    if n > MAX_SECONDS:
        raise ConfigurationError(f"{what} must be at most {MAX_SECONDS:g} seconds (100 years)")
    return float(n)


def name(value: Any, what: str) -> str:
    """A queue, task or unique key: text PostgreSQL can store, of a sensible length."""
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{what} must be a non-empty string")
    if "\x00" in value:
        raise ConfigurationError(f"{what} must not contain a NUL character")
    try:
        size = len(value.encode())
    except UnicodeEncodeError:
        raise ConfigurationError(f"{what} must be valid text (it has a lone surrogate)") from None
    if size > MAX_NAME_BYTES[what]:
        raise ConfigurationError(f"{what} must be at most {MAX_NAME_BYTES[what]} bytes")
    if what == "task" and not value.strip():
        raise ConfigurationError(f"task {value!r}: a task name is not blank")
    if what == "queue" and (
        "," in value or value != value.strip() or not value.isprintable() or value == "*"
    ):
        # `pgqueue work --queues a,b` splits at commas and strips spaces, and `*` stands for
        # every queue: a job in such a queue could be served by no worker that names queues.
        raise ConfigurationError(
            f"queue {value!r}: a queue name has no comma, no space at either end, no control "
            "character, and is not `*`"
        )
    return value


def storable_json(text: str, what: str) -> str:
    """JSON text jsonb will take: no NUL character and no lone surrogate in any string."""
    if ("\\u" in text or "\\U" in text) and _SUSPECT_ESCAPE.search(text):
        for piece in _strings(json.loads(text)):
            if "\x00" in piece:
                raise SerializationError(f"{what} contain a NUL character, which jsonb refuses")
            try:
                piece.encode()
            except UnicodeEncodeError:
                raise SerializationError(
                    f"{what} contain a lone surrogate (invalid text)"
                ) from None
    return text


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)


def positive_int(value: Any, what: str, minimum: int) -> int:
    """An integer (not a bool) of at least `minimum`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value


def serialise(
    task: str, args: Iterable[Any] | None, kwargs: Mapping[str, Any] | None
) -> tuple[str, str]:
    """A job's arguments as the JSON texts stored in args and kwargs, checked."""
    if type(args) is list:
        args_list = args
    elif isinstance(args, str | bytes) or (args is not None and not isinstance(args, Iterable)):
        raise SerializationError(f"args must be a list of arguments, not {type(args).__name__}")
    else:
        args_list = list(args or ())
    kwargs_dict = dict(kwargs) if kwargs else {}
    if kwargs_dict and not all(isinstance(k, str) for k in kwargs_dict):
        raise SerializationError("kwargs keys must be strings")
    try:
        args_json = dumps(args_list)
        kwargs_json = dumps(kwargs_dict) if kwargs_dict else "{}"
    except (TypeError, ValueError, RecursionError) as exc:
        raise SerializationError(f"arguments of {task} are not JSON-serialisable: {exc}") from None
    storable_json(args_json, f"arguments of {task}")
    if kwargs_dict:
        storable_json(kwargs_json, f"keyword arguments of {task}")
    return args_json, kwargs_json


def build_spec(
    task: str,
    args: Iterable[Any] | None,
    kwargs: Mapping[str, Any] | None,
    *,
    queue: str | None,
    priority: int | None,
    max_attempts: int | None,
    delay: float | timedelta | None = None,
    run_at: datetime | None = None,
    unique_key: str | None = None,
    timeout: float | None = None,
    depends_on: Iterable[int] | None = None,
    unique_for: float | timedelta | None = None,
    concurrency_key: str | None = None,
) -> JobSpec:
    """Validate and serialise one job; raises before anything touches the database."""
    # A None queue, priority or max_attempts is filled by the database from the task's
    # declaration (pgqueue.tasks), else 'default', 0 and 3.
    name(task, "task")
    if queue is not None:
        name(queue, "queue")
    if priority is not None:
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise ConfigurationError(f"priority must be an integer, got {priority!r}")
        if not -(2**31) <= priority < 2**31:
            raise ConfigurationError("priority must fit in 32 bits")
    if max_attempts is not None:
        positive_int(max_attempts, "max_attempts", 1)
        if max_attempts >= INT4:
            raise ConfigurationError("max_attempts must fit in 32 bits")
    if delay is not None and run_at is not None:
        raise ConfigurationError("give delay or run_at, not both")
    delay_s = seconds(delay, "delay") if delay is not None else None
    if run_at is not None and (not isinstance(run_at, datetime) or run_at.tzinfo is None):
        raise ConfigurationError("run_at must be a timezone-aware datetime")
    if run_at is not None and not RUN_AT_FIRST <= run_at < RUN_AT_END:
        # The table refuses the rest (migration 0020): a worker could not read it back.
        raise ConfigurationError(f"run_at must be between the years 2 and 9999, got {run_at}")
    if unique_key is not None:
        name(unique_key, "unique_key")
    if concurrency_key is not None:
        name(concurrency_key, "concurrency_key")
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
            isinstance(p, int) and not isinstance(p, bool) and 0 < p < INT8 for p in parents
        ):
            raise ConfigurationError("depends_on must be a non-empty list of job ids")
    if timeout_s == 0:
        raise ConfigurationError("timeout must be positive")
    args_json, kwargs_json = serialise(task, args, kwargs)
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
        concurrency_key=concurrency_key,
    )
