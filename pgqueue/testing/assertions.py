"""Assertions on the jobs waiting in the table: what was enqueued, with which arguments."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import psycopg
from psycopg.rows import dict_row

from pgqueue.job import Job

_ANY: Any = object()

_QUEUED = """
SELECT * FROM pgqueue.jobs
WHERE state = 'queued' AND (%(task)s::text IS NULL OR task = %(task)s::text)
ORDER BY id
"""


def _app_and_name(task: Any, app: Any) -> tuple[Any, str | None]:
    if task is None or isinstance(task, str):
        if app is None:
            raise TypeError("give app= when the task is given by name")
        return app, task
    return (app if app is not None else task.app), task.name


def _as_json(value: Any) -> Any:
    """What `value` looks like after a trip through the jobs table (tuples become lists)."""
    return json.loads(json.dumps(value))


def enqueued_jobs(app: Any, task: Any = None) -> list[Job]:
    """Jobs waiting to run (state `queued`, due or scheduled), oldest first; of one task
    (a Task or its name) if given."""
    _, name = _app_and_name(task, app)
    with (
        psycopg.connect(app.dsn, autocommit=True) as conn,
        conn.cursor(row_factory=dict_row) as cur,
    ):
        return [Job.from_row(r) for r in cur.execute(_QUEUED, {"task": name}).fetchall()]


def _matches(job: Job, args: Any, kwargs: Any, options: Mapping[str, Any]) -> bool:
    if args is not _ANY and job.args != _as_json(list(args)):
        return False
    if kwargs is not _ANY and job.kwargs != _as_json(dict(kwargs)):
        return False
    return all(getattr(job, k) == v for k, v in options.items() if v is not _ANY)


def _describe(jobs: Iterable[Job]) -> str:
    lines = [
        f"  #{j.id} {j.task} args={j.args!r} kwargs={j.kwargs!r} queue={j.queue} "
        f"priority={j.priority} run_at={j.run_at:%Y-%m-%d %H:%M:%S}"
        for j in jobs
    ]
    return "\n".join(lines) if lines else "  (none)"


def assert_enqueued(
    task: Any,
    args: Iterable[Any] = _ANY,
    kwargs: Mapping[str, Any] = _ANY,
    *,
    queue: str = _ANY,
    priority: int = _ANY,
    unique_key: str | None = _ANY,
    count: int | None = None,
    app: Any = None,
) -> Job:
    """Assert that a job of `task` waits to run with these arguments; return it.

    `task` is a Task, or a task name with `app=`. Arguments left out match anything;
    `args` and `kwargs` are compared as they are stored (JSON). With `count` (1 or more),
    exactly that many jobs must match. The message of a failure lists the task's queued
    jobs.
    """
    if count is not None and count < 1:
        # It returns a matching job; that none waits is assert_not_enqueued's to say.
        raise ValueError(f"count={count}: use assert_not_enqueued() to check that none waits")
    app, name = _app_and_name(task, app)
    queued = enqueued_jobs(app, name)
    options = {"queue": queue, "priority": priority, "unique_key": unique_key}
    found = [j for j in queued if _matches(j, args, kwargs, options)]
    wanted = _wanted(name, args, kwargs, options)
    if count is not None and len(found) != count:
        raise AssertionError(
            f"expected {count} queued job(s) {wanted}, found {len(found)}; queued jobs of "
            f"{name}:\n{_describe(queued)}"
        )
    if not found:
        raise AssertionError(f"no queued job {wanted}; queued jobs of {name}:\n{_describe(queued)}")
    return found[0]


def assert_not_enqueued(
    task: Any,
    args: Iterable[Any] = _ANY,
    kwargs: Mapping[str, Any] = _ANY,
    *,
    queue: str = _ANY,
    app: Any = None,
) -> None:
    """Assert that no job of `task` (with these arguments, if given) waits to run."""
    app, name = _app_and_name(task, app)
    options = {"queue": queue}
    found = [j for j in enqueued_jobs(app, name) if _matches(j, args, kwargs, options)]
    if found:
        raise AssertionError(
            f"expected no queued job {_wanted(name, args, kwargs, options)}, found:\n"
            f"{_describe(found)}"
        )


def _wanted(name: str | None, args: Any, kwargs: Any, options: Mapping[str, Any]) -> str:
    parts = [f"of {name}" if name else "of any task"]
    if args is not _ANY:
        parts.append(f"args={list(args)!r}")
    if kwargs is not _ANY:
        parts.append(f"kwargs={dict(kwargs)!r}")
    parts += [f"{k}={v!r}" for k, v in options.items() if v is not _ANY]
    return " ".join(parts)
