"""/metrics in Prometheus text format, read from the database (so it is right whatever the
number of worker processes and nodes)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from pgqueue.app import App

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800)
# The states of `pgqueue stats`: `queued` jobs are due, `scheduled` ones wait for a later run_at.
STATES = ("queued", "scheduled", "running", "succeeded", "dead", "cancelled")


def _labels(**labels: str) -> str:
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in labels.items()) + "}"


def _histogram(
    out: list[str],
    name: str,
    help_: str,
    buckets: tuple[float, ...],
    samples: dict[str, dict[float, tuple[int, float]]],
) -> None:
    """A histogram per queue from the rollups' buckets (le -> count, sum): every bound of
    `buckets` is one of theirs (pgqueue.stats.BUCKETS), so the counts are exact."""
    out.append(f"# HELP {name} {help_}")
    out.append(f"# TYPE {name} histogram")
    for queue, counted in sorted(samples.items()):
        for bound in buckets:
            below = sum(n for le, (n, _) in counted.items() if le <= bound)
            out.append(f"{name}_bucket{_labels(queue=queue, le=str(bound))} {below}")
        count = sum(n for n, _ in counted.values())
        out.append(f"{name}_bucket{_labels(queue=queue, le='+Inf')} {count}")
        out.append(f"{name}_sum{_labels(queue=queue)} {sum(t for _, t in counted.values())}")
        out.append(f"{name}_count{_labels(queue=queue)} {count}")


# Server health an operator alerts on. To move into pgqueue/sql/stats.sql as `server_health`
# with a JobStore method; until then the one query outside the store.
def server_health(app: App) -> tuple[float, float]:
    """(NOTIFY queue usage 0..1, age in seconds of the oldest open transaction in this
    database). Other roles' transactions are visible with pg_monitor or pg_read_all_stats."""
    row = app.store.server_health()
    return float(row["notify_queue_usage"]), float(row["oldest_xact_age"])


def render(app: App) -> str:
    """The metrics page, from rollups kept in the database as jobs finish (not counters in
    one process): gauges of the table and of the last hour, counters and histograms of
    everything that ever finished."""
    jobs = app.store.metrics_jobs()
    workers = app.store.worker_list()
    notify_usage, oldest_xact = server_health(app)
    out: list[str] = []
    out.append(
        "# HELP pgqueue_notify_queue_usage Fraction of PostgreSQL's NOTIFY queue in use "
        "(at 1, every NOTIFY fails: a listener is stuck)."
    )
    out.append("# TYPE pgqueue_notify_queue_usage gauge")
    out.append(f"pgqueue_notify_queue_usage {notify_usage}")
    out.append(
        "# HELP pgqueue_oldest_transaction_age_seconds Age of the oldest open transaction in "
        "the database (long ones keep dead job rows from being vacuumed)."
    )
    out.append("# TYPE pgqueue_oldest_transaction_age_seconds gauge")
    out.append(f"pgqueue_oldest_transaction_age_seconds {oldest_xact}")
    out.append(
        "# HELP pgqueue_jobs Jobs in the table, by queue and state (queued: due; scheduled: "
        "queued with a later run_at)."
    )
    out.append("# TYPE pgqueue_jobs gauge")
    counts: dict[tuple[str, str], int] = {(r["queue"], r["state"]): r["n"] for r in jobs}
    for queue in sorted({q for q, _ in counts}):
        for state in STATES:
            out.append(
                f"pgqueue_jobs{_labels(queue=queue, state=state)} {counts.get((queue, state), 0)}"
            )
    out.append("# HELP pgqueue_oldest_queued_age_seconds Age of the oldest due job per queue.")
    out.append("# TYPE pgqueue_oldest_queued_age_seconds gauge")
    ages: dict[str, float] = defaultdict(float)
    for r in jobs:
        if r["oldest_waiting_age"] is not None:
            ages[r["queue"]] = max(ages[r["queue"]], float(r["oldest_waiting_age"]))
    for queue in sorted({q for q, _ in counts}):
        out.append(f"pgqueue_oldest_queued_age_seconds{_labels(queue=queue)} {ages[queue]}")
    out.append("# HELP pgqueue_workers_alive Worker processes heartbeating within their lease.")
    out.append("# TYPE pgqueue_workers_alive gauge")
    out.append(f"pgqueue_workers_alive {sum(1 for w in workers if w['alive'])}")
    out.append(
        "# HELP pgqueue_jobs_without_worker Due jobs of a task that workers declared but no "
        "live worker serves: they wait for one that has it."
    )
    out.append("# TYPE pgqueue_jobs_without_worker gauge")
    for unserved in app.store.task_unserved():
        labels = _labels(task=unserved["name"])
        out.append(f"pgqueue_jobs_without_worker{labels} {unserved['due']}")
    _finished(out, app.store.metrics_recent(), app.store.metrics_lifetime())
    return "\n".join(out) + "\n"


class _Finished:
    """Rollup rows (queue, task, state, measure, le, n, total) sorted by what they count."""

    def __init__(self, rows: list[Any]) -> None:
        self.latency: dict[str, dict[float, tuple[int, float]]] = defaultdict(dict)
        self.duration: dict[str, dict[float, tuple[int, float]]] = defaultdict(dict)
        self.jobs: dict[tuple[str, str, str], int] = defaultdict(int)
        self.retries: dict[str, int] = defaultdict(int)
        self.rescues: dict[str, int] = defaultdict(int)
        for r in rows:
            queue, measure, n = r["queue"], r["measure"], int(r["n"])
            if measure == "jobs":
                self.jobs[(queue, r["task"], r["state"])] += n
                self.retries[queue] += 0  # every queue with finished jobs has a line, 0 too
                self.rescues[queue] += 0
            elif measure == "retries":
                self.retries[queue] += n
            elif measure == "rescued":
                self.rescues[queue] += n
            elif measure in ("latency", "duration"):
                buckets = self.latency[queue] if measure == "latency" else self.duration[queue]
                count, total = buckets.get(r["le"], (0, 0.0))
                buckets[r["le"]] = (count + n, total + r["total"])

    def outcomes(self) -> dict[tuple[str, str], int]:
        by_task: dict[tuple[str, str], int] = defaultdict(int)
        for (_, task, state), n in self.jobs.items():
            by_task[(task, state)] += n
        return by_task


def _finished(out: list[str], recent_rows: list[Any], lifetime_rows: list[Any]) -> None:
    """Finished jobs: the last hour as gauges (what a glance at the page wants), and since
    the schema was made as counters and histograms (what rate() and histogram_quantile()
    need: they never go down; a job a retry takes back out of a final state stays counted)."""
    recent, ever = _Finished(recent_rows), _Finished(lifetime_rows)
    _histogram(
        out,
        "pgqueue_job_latency_seconds",
        "Enqueue (or due time) to start of the last attempt, jobs ever finished.",
        LATENCY_BUCKETS,
        ever.latency,
    )
    _histogram(
        out,
        "pgqueue_job_duration_seconds",
        "Run time of the last attempt, jobs ever finished.",
        DURATION_BUCKETS,
        ever.duration,
    )
    out.append("# HELP pgqueue_jobs_finished_total Jobs that reached a final state.")
    out.append("# TYPE pgqueue_jobs_finished_total counter")
    for (queue, task, state), n in sorted(ever.jobs.items()):
        labels = _labels(queue=queue, task=task, state=state)
        out.append(f"pgqueue_jobs_finished_total{labels} {n}")
    out.append("# HELP pgqueue_job_retries_total Extra attempts of the jobs ever finished.")
    out.append("# TYPE pgqueue_job_retries_total counter")
    for queue, n in sorted(ever.retries.items()):
        out.append(f"pgqueue_job_retries_total{_labels(queue=queue)} {n}")
    out.append("# HELP pgqueue_job_rescues_total Jobs ever finished after a rescue.")
    out.append("# TYPE pgqueue_job_rescues_total counter")
    for queue, n in sorted(ever.rescues.items()):
        out.append(f"pgqueue_job_rescues_total{_labels(queue=queue)} {n}")
    out.append("# HELP pgqueue_job_outcomes Jobs finished in the last hour, by task and state.")
    out.append("# TYPE pgqueue_job_outcomes gauge")
    for (task, state), n in sorted(recent.outcomes().items()):
        out.append(f"pgqueue_job_outcomes{_labels(task=task, state=state)} {n}")
    out.append("# HELP pgqueue_job_retries Extra attempts of jobs finished in the last hour.")
    out.append("# TYPE pgqueue_job_retries gauge")
    for queue, n in sorted(recent.retries.items()):
        out.append(f"pgqueue_job_retries{_labels(queue=queue)} {n}")
    out.append("# HELP pgqueue_job_rescues Jobs finished in the last hour after a rescue.")
    out.append("# TYPE pgqueue_job_rescues gauge")
    for queue, n in sorted(recent.rescues.items()):
        out.append(f"pgqueue_job_rescues{_labels(queue=queue)} {n}")
