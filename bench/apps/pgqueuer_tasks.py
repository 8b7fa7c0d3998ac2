"""PgQueuer side of the benchmark: the factory `pgq run` loads, and the producer calls."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from latency_log import record
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job
from pgqueuer.queries import Queries
from progress_counter import tick


@asynccontextmanager
async def create() -> AsyncIterator[PgQueuer]:
    """Factory for `pgq run pgqueuer_tasks:create`: one dedicated asyncpg connection."""
    connection = await asyncpg.connect(os.environ["BENCH_DSN"])
    pgq = PgQueuer(AsyncpgDriver(connection))

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        tick()

    @pgq.entrypoint("stamp")
    async def stamp(job: Job) -> None:
        record(float(job.payload or b"0"))

    try:
        yield pgq
    finally:
        await connection.close()


def bulk_enqueue(n: int, chunk: int) -> float:
    return asyncio.run(_bulk_enqueue(n, chunk))


async def _bulk_enqueue(n: int, chunk: int) -> float:
    connection = await asyncpg.connect(os.environ["BENCH_DSN"])
    try:
        queries = Queries(AsyncpgDriver(connection))
        started = time.perf_counter()
        for low in range(0, n, chunk):
            ids = range(low, min(n, low + chunk))
            await queries.enqueue(
                ["noop"] * len(ids), [str(i).encode() for i in ids], [0] * len(ids)
            )
        return time.perf_counter() - started
    finally:
        await connection.close()


def enqueue_singles(n: int, interval: float, warmup: int) -> None:
    asyncio.run(_enqueue_singles(n, interval, warmup))


async def _enqueue_singles(n: int, interval: float, warmup: int) -> None:
    connection = await asyncpg.connect(os.environ["BENCH_DSN"])
    try:
        queries = Queries(AsyncpgDriver(connection))
        for i in range(warmup):
            await queries.enqueue("noop", str(i).encode())
            await asyncio.sleep(interval)
        for _ in range(n):
            await queries.enqueue("stamp", repr(time.time()).encode())
            await asyncio.sleep(interval)
    finally:
        await connection.close()
