"""What the dashboard's views show, assembled from the store's rows: the overview (queues,
tasks, workers, running jobs, warnings, chart series) and a job's timeline. Pure functions.
Internal API."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime
from typing import Any

from pgqueue.job import Job

Row = dict[str, Any]

# Chart buckets: the smallest of these steps giving at most MAX_BUCKETS points.
STEPS = (5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800)
MAX_BUCKETS = 90
SERIES_FIGURES: tuple[str, ...] = ("succeeded", "dead", "cancelled", "latency_p50")
SERIES_FIGURES += ("latency_p95", "duration_p50", "duration_p95")
# A job waiting for its parents has this run_at (see job_insert_many).
WAITING_FOR_PARENTS = 9999


def step_for(window: float) -> int:
    """Bucket width in seconds for a chart over `window` seconds."""
    for step in STEPS:
        if window / step <= MAX_BUCKETS:
            return step
    return STEPS[-1]


def _ratio(dead: int, succeeded: int) -> float | None:
    return None if dead + succeeded == 0 else dead / (dead + succeeded)


def _recent(row: Row | None, window: float) -> Row:
    """The finished-in-the-window figures of one queue or task (zeros when none)."""
    row = row or {}
    succeeded, dead = int(row.get("succeeded", 0)), int(row.get("dead", 0))
    return {
        "succeeded": succeeded,
        "dead": dead,
        "cancelled": int(row.get("cancelled", 0)),
        "throughput": round(succeeded / window, 3),
        "failure_ratio": _ratio(dead, succeeded),
        "duration_p50": row.get("duration_p50"),
        "duration_p95": row.get("duration_p95"),
        "latency_p50": row.get("latency_p50"),
        "latency_p95": row.get("latency_p95"),
        "last_error": row.get("last_error"),
    }


def _serves_queue(worker: Row, queue: str) -> bool:
    queues = worker.get("queues") or ()
    return "*" in queues or queue in queues  # a worker without --queues is registered as "*"


def _serves_task(worker: Row, task: str) -> bool:
    tasks = worker.get("tasks")
    return tasks is None or task in tasks


def overview(rows: dict[str, list[Row]], window: float, step: int | None) -> dict[str, Any]:
    """The dashboard's one poll: every panel from the same snapshot."""
    live = {r["queue"]: r for r in rows["live"]}
    recent = {(r["by"], r["key"]): r for r in rows["breakdown"]}
    settings = {r["name"]: r for r in rows["settings"]}
    workers = [_worker(w) for w in rows["workers"]]
    alive = [w for w in workers if w["alive"]]
    names = sorted({*live, *settings, *(k for by, k in recent if by == "queue")})
    queues = []
    for name in names:
        counts = live.get(name, {})
        config = settings.get(name, {})
        queues.append(
            {
                "queue": name,
                "queued": int(counts.get("queued", 0)),
                "scheduled": int(counts.get("scheduled", 0)),
                "running": int(counts.get("running", 0)),
                "capped": bool(counts.get("capped", False)),
                "oldest_waiting_age": counts.get("oldest_waiting_age"),
                **_recent(recent.get(("queue", name)), window),
                "paused": bool(config.get("paused", False)),
                "concurrency_limit": config.get("concurrency_limit"),
                "rate_limit": config.get("rate_limit"),
                "per_key_limit": config.get("per_key_limit"),
                "rate_period": config.get("rate_period"),
                "workers": [w["id"] for w in alive if _serves_queue(w, name)],
            }
        )
    declared = {r["name"]: r for r in rows["tasks"]}
    task_names = sorted({*declared, *(k for by, k in recent if by == "task")})
    tasks, warnings = [], []
    for name in task_names:
        row = declared.get(name, {})
        due = int(row.get("due", 0))
        # As `pgqueue stats` and /metrics: a declared task whose due jobs no live worker takes.
        without = row.get("queue") is not None and due > 0 and not row.get("workers")
        tasks.append(
            {
                "task": name,
                "queue": row.get("queue"),
                "priority": row.get("priority"),
                "max_attempts": row.get("max_attempts"),
                "timeout": row.get("timeout"),
                "declared": row.get("queue") is not None,
                "due": due,
                "running": int(row.get("running", 0)),
                "without_worker": without,
                **_recent(recent.get(("task", name)), window),
                "workers": [w["id"] for w in alive if _serves_task(w, name)],
            }
        )
        if without:
            warnings.append(
                {
                    "kind": "no_worker",
                    "task": name,
                    "due": due,
                    "text": f"no worker serves task {name}: {due} due "
                    f"job{'s' if due != 1 else ''} wait for one that has it",
                }
            )
    now = float(rows["now"][0]["now"])
    out: dict[str, Any] = {
        "now": now,
        "window": window,
        "queues": queues,
        "tasks": tasks,
        "workers": workers,
        "running": rows["running"],
        "failures": rows["failures"],
        "warnings": warnings,
    }
    if step is not None and "series" in rows:
        out["series"] = series(rows["series"], now, window, step)
    return out


def _worker(row: Row) -> Row:
    return {**row, "id": str(row["id"]), "running": int(row["running"])}


def series(rows: list[Row], now: float, window: float, step: int) -> dict[str, Any]:
    """Chart data: one list per figure and key, over every bucket of the window (an empty
    bucket is 0 jobs, and no latency)."""
    first = math.floor((now - window) / step) * step
    buckets = list(range(first, math.floor(now / step) * step + 1, step))
    index = {b: i for i, b in enumerate(buckets)}
    kept = sorted({r["key"] for r in rows if not r["other"]})
    # The rest of the keys, under a name none of the kept ones has.
    other = "(other)"
    while other in kept:
        other += "*"
    keys = kept + ([other] if any(r["other"] for r in rows) else [])
    rows = [{**r, "key": other} if r["other"] else r for r in rows]
    figures: dict[str, dict[str, list[float | None]]] = defaultdict(dict)
    for figure in SERIES_FIGURES:
        empty: float | None = 0 if figure in ("succeeded", "dead", "cancelled") else None
        for key in keys:
            figures[figure][key] = [empty] * len(buckets)
    for r in rows:
        i = index.get(int(r["bucket"]))
        if i is None:
            continue
        for figure in SERIES_FIGURES:
            figures[figure][r["key"]][i] = r[figure]
    return {"step": step, "buckets": buckets, "keys": keys, **figures}


def timeline(job: Job, extra: Row | None) -> list[Row]:
    """A job's life as events, oldest first: enqueued, each failed attempt with its error and
    traceback, the retry it waits for, the current attempt's start, the cancel request and
    the end."""
    events: list[Row] = [{"at": job.created_at, "kind": "enqueued", "text": "enqueued"}]
    if job.depends_on and job.run_at.year == WAITING_FOR_PARENTS:
        events.append({"at": job.created_at, "kind": "waiting", "text": "waits for its parents"})
    # Before the errors: at the same instant, an attempt starts before it fails.
    if job.started_at is not None:
        events.append(
            {
                "at": job.started_at,
                "kind": "started",
                "attempt": job.attempts,
                "text": f"attempt {job.attempts} started"
                + (f" on worker {job.worker_id}" if job.worker_id else ""),
            }
        )
    errors = sorted(job.errors, key=lambda e: (e.get("at") or "", e.get("attempt") or 0))
    for e in errors:
        events.append(
            {
                "at": e.get("at"),
                "kind": "error",
                "attempt": e.get("attempt"),
                "text": f"attempt {e.get('attempt')} failed: {e.get('error')}",
                "traceback": e.get("traceback"),
            }
        )
    if job.state == "queued" and job.attempts > 0 and job.run_at.year != WAITING_FOR_PARENTS:
        last = errors[-1].get("at") if errors else None
        backoff = _seconds_between(last, job.run_at)
        events.append(
            {
                "at": job.run_at,
                "kind": "retry",
                "text": f"attempt {job.attempts + 1} due"
                + (f" (backoff {backoff:.1f} s after the error)" if backoff is not None else ""),
            }
        )
    if extra and extra.get("cancel_requested_at"):
        events.append(
            {"at": extra["cancel_requested_at"], "kind": "cancel", "text": "cancel requested"}
        )
    if job.finished_at is not None:
        events.append({"at": job.finished_at, "kind": str(job.state), "text": str(job.state)})
    return sorted(events, key=lambda e: _sort_key(e["at"]))


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def _seconds_between(start: Any, end: Any) -> float | None:
    a, b = _as_datetime(start), _as_datetime(end)
    if a is None or b is None or a.tzinfo is None or b.tzinfo is None:
        return None
    return (b - a).total_seconds()


def _sort_key(value: Any) -> float:
    moment = _as_datetime(value)
    return moment.timestamp() if moment is not None and moment.tzinfo is not None else 0.0


def actions(state: str) -> list[str]:
    """The actions that fit a job in `state`."""
    if state in ("queued", "running"):
        return ["cancel"]
    if state in ("dead", "cancelled"):
        return ["retry", "delete"]
    return ["delete"]
