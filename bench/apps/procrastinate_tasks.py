"""Procrastinate side of the benchmark: the app the worker runs, and the producer calls."""

from __future__ import annotations

import asyncio
import os
import time

from latency_log import record
from procrastinate import App, PsycopgConnector
from progress_counter import tick

# The docs ask for a pool as large as the concurrency plus one when jobs are short.
app = App(
    connector=PsycopgConnector(
        conninfo=os.environ["BENCH_DSN"],
        max_size=int(os.environ.get("BENCH_POOL_SIZE", "51")),
    )
)


@app.task(name="noop")
async def noop(i: int) -> None:
    tick()


@app.task(name="stamp")
async def stamp(enqueued_at: float) -> None:
    record(enqueued_at)


def bulk_enqueue(n: int, chunk: int) -> float:
    return asyncio.run(_bulk_enqueue(n, chunk))


async def _bulk_enqueue(n: int, chunk: int) -> float:
    async with app.open_async():
        started = time.perf_counter()
        for low in range(0, n, chunk):
            await noop.batch_defer_async(*({"i": i} for i in range(low, min(n, low + chunk))))
        return time.perf_counter() - started


def enqueue_singles(n: int, interval: float, warmup: int) -> None:
    asyncio.run(_enqueue_singles(n, interval, warmup))


async def _enqueue_singles(n: int, interval: float, warmup: int) -> None:
    async with app.open_async():
        for i in range(warmup):
            await noop.defer_async(i=i)
            await asyncio.sleep(interval)
        for _ in range(n):
            await stamp.defer_async(enqueued_at=time.time())
            await asyncio.sleep(interval)
