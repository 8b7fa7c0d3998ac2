"""Tasks used by the tests, importable by worker subprocesses as `tests.jobs:app`."""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import os
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

import pgqueue

app = pgqueue.App()  # DSN from PGQUEUE_DSN, set by the fixtures
fast = pgqueue.RetryPolicy(base=0.05, factor=2, jitter=0)

# What in-process handlers saw, in order.
calls: list[tuple[str, Any]] = []
_lock = threading.Lock()
counters: dict[int, int] = {}
running = {"now": 0, "peak": 0}


def reset() -> None:
    calls.clear()
    counters.clear()
    running.update(now=0, peak=0)


def record(name: str, value: Any) -> None:
    with _lock:
        calls.append((name, value))


def effect(job_id: int, attempt: int, note: str = "") -> None:
    """Record in the database that this attempt ran (for multi-process tests)."""
    with psycopg.connect(app.dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO public.effects (job_id, attempt, pid, note) VALUES (%s, %s, %s, %s)",
            (job_id, attempt, os.getpid(), note),
        )


def ended(job_id: int, attempt: int, patience: float = 60.0) -> None:
    """Record that this attempt's work ended, stamped now, even if the database is away for a
    while: the chaos tests read a start without an end as an attempt still running."""
    at = time.time()
    deadline = time.monotonic() + patience
    while True:
        try:
            with psycopg.connect(app.dsn, autocommit=True, connect_timeout=2) as conn:
                conn.execute(
                    "INSERT INTO public.effects (job_id, attempt, pid, note, at) "
                    "VALUES (%s, %s, %s, 'end', to_timestamp(%s))",
                    (job_id, attempt, os.getpid(), at),
                )
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


if os.environ.get("PGQUEUE_TEST_ATEXIT"):  # test_shutdown: a clean stop runs exit handlers
    atexit.register(lambda: Path(os.environ["PGQUEUE_TEST_ATEXIT"]).write_text("ran"))


@app.task(name="add")
def add(a: int, b: int) -> int:
    return a + b


@app.task(name="echo")
async def echo(value: Any) -> Any:
    return value


@app.task(name="note")
def note(label: str) -> None:
    record("note", label)


@app.task(name="stamp")
async def stamp(label: str) -> None:
    record("stamp", (label, time.time()))


@app.task(name="flaky", max_attempts=3, retry=fast)
def flaky(fail_times: int) -> str:
    ctx = pgqueue.context()
    if ctx.attempt <= fail_times:
        raise RuntimeError(f"failure {ctx.attempt}")
    return f"ok after {ctx.attempt}"


@app.task(name="always_fails", max_attempts=3, retry=fast)
async def always_fails() -> None:
    raise ValueError("it never works")


@app.task(name="snooze")
def snooze(times: int, ctx: pgqueue.JobContext) -> int:
    with _lock:
        counters[ctx.job.id] = counters.get(ctx.job.id, 0) + 1
        seen = counters[ctx.job.id]
    if seen <= times:
        raise pgqueue.Retry(delay=0.05)
    return seen


@app.task(name="discard", max_attempts=5)
def discard() -> None:
    raise pgqueue.Discard("not worth it")


class Exploding(BaseException):
    """Not an Exception: handlers raising these must not take the worker down."""


@app.task(name="base_exception", max_attempts=1)
async def base_exception() -> None:
    raise Exploding("kaboom")


@app.task(name="system_exit", max_attempts=1)
def system_exit() -> None:
    raise SystemExit(3)


@app.task(name="sync_raises", max_attempts=2, retry=fast)
def sync_raises(name: str) -> None:
    # Exceptions with a meaning to generators and futures, raised by a plain sync handler.
    raise {"StopIteration": StopIteration, "GeneratorExit": GeneratorExit}[name]("from a handler")


@app.task(name="keyboard_interrupt", max_attempts=1)
async def keyboard_interrupt() -> None:
    raise KeyboardInterrupt


@app.task(name="own_cancelled", max_attempts=2, retry=fast)
async def own_cancelled() -> None:
    """Awaits a future that something else cancelled: CancelledError, raised by the handler
    itself while nobody cancelled the attempt."""
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.cancel()
    await future


@app.task(name="cancelled_future", max_attempts=2, retry=fast)
def cancelled_future() -> None:
    """A sync handler reading the result of a cancelled concurrent future."""
    future: concurrent.futures.Future[None] = concurrent.futures.Future()
    future.cancel()
    future.result()


class Unprintable(Exception):
    """An exception whose message cannot be made (a client library's bug)."""

    def __str__(self) -> str:
        raise AttributeError("'NoneType' object has no attribute 'status'")


@app.task(name="unprintable", max_attempts=2, retry=fast)
def unprintable() -> None:
    raise Unprintable()


@app.task(name="nul_error", max_attempts=2, retry=fast)
def nul_error(text: str) -> None:
    """Fails with a message jsonb cannot hold as it is (NUL, a lone surrogate)."""
    raise ValueError(text.replace("NUL", "\x00").replace("SURROGATE", "\ud800"))


class BrokenRetry(pgqueue.RetryPolicy):
    """An application's retry policy with a bug in it."""

    def delay(self, attempt: int, rng: Any = None) -> float:
        raise RuntimeError("broken policy")


@app.task(name="broken_retry", max_attempts=3, retry=BrokenRetry())
def broken_retry() -> None:
    raise ValueError("fails, and its policy too")


@app.task(name="bad_snooze", max_attempts=1)
def bad_snooze(delay: str) -> None:
    raise pgqueue.Retry(delay=float(delay))


@app.task(name="late_async", timeout=0.2, max_attempts=1)
async def late_async() -> str:
    """Catches the cancellation of its timeout and returns anyway."""
    try:
        await asyncio.sleep(5)
    except asyncio.CancelledError:
        return "swallowed"
    return "in time"


@app.task(name="bad_result", max_attempts=3)
def bad_result() -> object:
    return object()


@app.task(name="deep_result", max_attempts=3)
def deep_result() -> object:
    value: list = []
    for _ in range(5000):  # deeper than json can write
        value = [value]
    return value


@app.task(name="stubborn")
async def stubborn() -> None:
    """Never ends, even when cancelled: it swallows every cancellation."""
    ctx = pgqueue.context()
    effect(ctx.job.id, ctx.attempt, "start")
    while True:
        try:
            await asyncio.sleep(0.1)
        except asyncio.CancelledError:
            pass


@app.task(name="sleep")
def sleep(seconds: float) -> str:
    ctx = pgqueue.context()
    effect(ctx.job.id, ctx.attempt, "start")
    time.sleep(seconds)
    effect(ctx.job.id, ctx.attempt, "end")
    return "slept"


@app.task(name="async_sleep")
async def async_sleep(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "slept"


@app.task(name="work_item", max_attempts=5)
def work_item(n: int) -> int:
    ctx = pgqueue.context()
    effect(ctx.job.id, ctx.attempt)
    return n


@app.task(name="cooperative")
def cooperative(limit: float) -> str:
    """A sync handler that checks ctx.cancelled, as long-running sync handlers should."""
    ctx = pgqueue.context()
    effect(ctx.job.id, ctx.attempt, "start")
    try:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if ctx.cancelled:
                return "stopped early"
            time.sleep(0.01)
        return "ran to the end"
    finally:
        ended(ctx.job.id, ctx.attempt)


@app.task(name="async_forever", timeout=0.3, max_attempts=1)
async def async_forever() -> None:
    await asyncio.sleep(3600)


@app.task(name="sync_slow", timeout=0.3, max_attempts=2, retry=fast)
def sync_slow(seconds: float) -> str:
    time.sleep(seconds)
    return "done"


_local = threading.local()


def _effects_conn() -> psycopg.Connection:
    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed or conn.broken:
        conn = _local.conn = psycopg.connect(app.dsn, autocommit=True, connect_timeout=5)
    return conn


@app.task(name="chaos_item", max_attempts=50, retry=pgqueue.RetryPolicy(base=0.1, jitter=0.5))
def chaos_item(n: int) -> int:
    """Records (job id, attempt) on a per-thread connection, then does a little work."""
    ctx = pgqueue.context()
    try:
        _effects_conn().execute(
            "INSERT INTO public.effects (job_id, attempt, pid) VALUES (%s, %s, %s)",
            (ctx.job.id, ctx.attempt, os.getpid()),
        )
    except psycopg.OperationalError:
        _local.conn = None
        raise
    time.sleep(0.005)
    return n


@app.task(name="quick")
async def quick(i: int) -> int:
    """A very short job that counts how many run at once."""
    running["now"] += 1
    running["peak"] = max(running["peak"], running["now"])
    try:
        await asyncio.sleep(0)
    finally:
        running["now"] -= 1
    return i


@app.task(name="nap", queue="limited")
async def nap(seconds: float) -> None:
    await asyncio.sleep(seconds)


@app.task(name="tick", queue="rated")
async def tick(i: int) -> int:
    return i


@app.task(name="step")
def step(label: str) -> str:
    record("step", label)
    time.sleep(0.02)
    return label


@app.task(name="spawner", max_attempts=2, retry=fast)
def spawner(fail_first: bool) -> str:
    ctx = pgqueue.context()
    ctx.enqueue("note", args=[f"follow-up of attempt {ctx.attempt}"])
    if fail_first and ctx.attempt == 1:
        raise RuntimeError("first attempt fails after enqueueing")
    return "spawned"


@app.task(name="big_result")
async def big_result(size: int) -> str:
    """A result of `size` bytes of JSON text (give or take the quotes)."""
    return "x" * size


@app.task(name="nul_result", max_attempts=1)
async def nul_result() -> str:
    """A result PostgreSQL's jsonb refuses (a NUL character)."""
    return "a\u0000b"


@app.task(name="nap_logged", max_attempts=20, retry=fast)
def nap_logged(seconds: float) -> str:
    """Sleeps, recording its start and end when the database lets it (it may be down)."""
    ctx = pgqueue.context()
    with contextlib.suppress(psycopg.Error):
        effect(ctx.job.id, ctx.attempt, "start")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not ctx.cancelled:
        time.sleep(0.02)
    ended(ctx.job.id, ctx.attempt)
    return "napped"


# -- ctx.transaction(): writes that commit with the job's success ---------------------------


def _tx_row(conn: Any, ctx: pgqueue.JobContext, note: str) -> None:
    conn.execute(
        "INSERT INTO public.effects (job_id, attempt, pid, note) VALUES (%s, %s, %s, %s)",
        (ctx.job.id, ctx.attempt, os.getpid(), note),
    )


@app.task(name="tx_insert", max_attempts=3, retry=fast)
def tx_insert(n: int, fail_first: bool = False) -> int:
    """Writes a row through ctx.transaction(); optionally fails its first attempt after."""
    ctx = pgqueue.context()
    with ctx.transaction() as conn:
        _tx_row(conn, ctx, "tx")
    if fail_first and ctx.attempt == 1:
        raise RuntimeError("failed after writing")
    return n


@app.task(name="tx_insert_async", max_attempts=3, retry=fast)
async def tx_insert_async(n: int, fail_first: bool = False) -> int:
    ctx = pgqueue.context()
    async with ctx.transaction() as conn:
        await conn.execute(
            "INSERT INTO public.effects (job_id, attempt, pid, note) VALUES (%s, %s, %s, 'tx')",
            (ctx.job.id, ctx.attempt, os.getpid()),
        )
    if fail_first and ctx.attempt == 1:
        raise RuntimeError("failed after writing")
    return n


@app.task(name="tx_then_wait", max_attempts=1)
def tx_then_wait(seconds: float) -> str:
    """Writes through ctx.transaction(), then waits (for a cancel, or for the test)."""
    ctx = pgqueue.context()
    with ctx.transaction() as conn:
        _tx_row(conn, ctx, "tx")
    effect(ctx.job.id, ctx.attempt, "written")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not ctx.cancelled:
        time.sleep(0.01)
    return "done"


@app.task(name="tx_outlives_timeout", timeout=0.3, max_attempts=1)
def tx_outlives_timeout(seconds: float) -> None:
    """Keeps writing through its transaction after its attempt timed out, then tries to
    open another: none of it may reach the database, nor another job's transaction."""
    ctx = pgqueue.context()
    with ctx.transaction() as conn:
        _tx_row(conn, ctx, "tx")
        time.sleep(seconds)  # the attempt times out meanwhile; its thread goes on
        _tx_row(conn, ctx, "late")
    try:
        with ctx.transaction() as again:
            _tx_row(again, ctx, "late")
    except pgqueue.PgQueueError:
        effect(ctx.job.id, ctx.attempt, "refused")
    effect(ctx.job.id, ctx.attempt, "thread done")


@app.task(name="tx_sync_in_async", max_attempts=1)
async def tx_sync_in_async() -> None:
    with pgqueue.context().transaction():
        pass


@app.task(name="tx_chaos", max_attempts=50, retry=pgqueue.RetryPolicy(base=0.1, jitter=0.5))
def tx_chaos(n: int) -> int:
    """The exactly-once chaos test's handler: one row per job, through ctx.transaction()."""
    ctx = pgqueue.context()
    with ctx.transaction() as conn:
        _tx_row(conn, ctx, "tx")
    time.sleep(0.005)
    return n


@app.task(name="tx_with_followup", max_attempts=2, retry=fast)
async def tx_with_followup(fail_first: bool) -> str:
    """A write through ctx.transaction() and a follow-up job: both exist, or neither."""
    ctx = pgqueue.context()
    async with ctx.transaction() as conn:
        await conn.execute(
            "INSERT INTO public.effects (job_id, attempt, pid, note) VALUES (%s, %s, %s, 'tx')",
            (ctx.job.id, ctx.attempt, os.getpid()),
        )
    ctx.enqueue("echo", [f"after {ctx.job.id}.{ctx.attempt}"])
    if fail_first and ctx.attempt == 1:
        raise RuntimeError("failed after writing")
    return "ok"
