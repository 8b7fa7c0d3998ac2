"""pgqueue side of the benchmark: the app the worker runs, and the producer calls."""

from __future__ import annotations

import os
import time

from latency_log import record
from progress_counter import tick

import pgqueue

app = pgqueue.App(os.environ["PGQUEUE_DSN"])


@app.task(name="bench_tasks.noop")
async def noop(i: int) -> None:
    tick()


@app.task(name="bench_tasks.stamp")
async def stamp(enqueued_at: float) -> None:
    record(enqueued_at)


def bulk_enqueue(n: int, chunk: int) -> float:
    """Insert n noop jobs with enqueue_many, `chunk` per call; return the seconds taken."""
    app.get_job(0)  # open the connection pool before the clock starts, as the peers do
    started = time.perf_counter()
    for low in range(0, n, chunk):
        app.enqueue_many(
            [{"task": "bench_tasks.noop", "args": [i]} for i in range(low, min(n, low + chunk))]
        )
    return time.perf_counter() - started


def enqueue_singles(n: int, interval: float, warmup: int) -> None:
    """Enqueue `warmup` noop jobs, then n stamp jobs, one transaction each."""
    for i in range(warmup):
        noop.enqueue(i)
        time.sleep(interval)
    for _ in range(n):
        stamp.enqueue(time.time())
        time.sleep(interval)
