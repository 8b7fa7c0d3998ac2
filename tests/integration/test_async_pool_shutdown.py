"""`asyncio.run(main())` ends even when the App's pool for that loop is still connecting, and
leaves no connection open; concurrent first calls on a loop share one pool.

The cause of a CI run that hung in `asyncio.run` → `_cancel_all_tasks` with psycopg.pool's
"error connecting in 'pgqueue-async'": the App opens a pool per event loop and leaves it open.
When the loop ends, asyncio cancels every task; a psycopg_pool maintenance task that is
connecting at that moment takes the cancellation for a failed connection (it catches
`CancelledError`), schedules a retry and waits for its next task, forever. A slow connection
(a busy machine) is all it takes, so here the App connects through a proxy that answers a
second late.
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import time
import uuid

import psycopg
import pytest

import pgqueue
from tests.waiting import wait_for

SCRIPT = r"""
import asyncio, sys, threading
import psycopg
import pgqueue

direct = sys.argv[1]
info = psycopg.conninfo.conninfo_to_dict(direct)
host, port = info.get("host") or "/tmp", int(info.get("port") or 5432)


async def handle(client_r, client_w):
    await asyncio.sleep(1.0)  # a slow server, or a busy machine
    if host.startswith("/"):
        server_r, server_w = await asyncio.open_unix_connection(f"{host}/.s.PGSQL.{port}")
    else:
        server_r, server_w = await asyncio.open_connection(host, port)

    async def pipe(r, w):
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        except OSError:
            pass
        finally:
            w.close()

    await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w))


def proxy(ready, bound):
    async def serve():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        bound.append(server.sockets[0].getsockname()[1])
        ready.set()
        await server.serve_forever()

    asyncio.run(serve())


ready, bound = threading.Event(), []
threading.Thread(target=proxy, args=(ready, bound), daemon=True).start()
ready.wait()
slow = psycopg.conninfo.make_conninfo(direct, host="127.0.0.1", port=str(bound[0]))
app = pgqueue.App(slow)


@app.task
def add(a: int, b: int) -> int:
    return a + b


async def main() -> None:
    # In the caller's transaction: the job does not wait for the App's own pool, which is
    # still connecting when main() returns.
    async with await psycopg.AsyncConnection.connect(direct) as conn:
        await add.options(conn=conn).enqueue_async(1, 2)


asyncio.run(main())
print("done")
"""


def test_asyncio_run_ends_while_the_pool_is_connecting(dsn: str, db: psycopg.Connection) -> None:
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT, dsn], capture_output=True, text=True, timeout=12
        )
    except subprocess.TimeoutExpired:
        pytest.fail("asyncio.run() did not return: the loop's pool kept it from closing")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "done"
    assert time.monotonic() - started < 10  # about 2 s: a second late, then done
    assert db.execute("SELECT count(*) FROM pgqueue.jobs").fetchone()[0] == 1


def _named(dsn: str) -> str:
    """`dsn` with an application name of its own, to count that App's connections alone."""
    return psycopg.conninfo.make_conninfo(dsn, application_name=f"pools-{uuid.uuid4().hex}")


def _connections(db: psycopg.Connection, dsn: str) -> int:
    """Server connections made with `dsn`'s application name."""
    name = psycopg.conninfo.conninfo_to_dict(dsn)["application_name"]
    return db.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,)
    ).fetchone()[0]


def test_concurrent_first_enqueues_open_one_pool(dsn: str, db: psycopg.Connection) -> None:
    # Each of the first callers found no pool for the loop and opened its own while the
    # others were opening theirs; all but one were never closed.
    named = _named(dsn)
    app = pgqueue.App(named, pool_size=2)

    async def main() -> int:
        await asyncio.gather(*(app.enqueue_async("add", args=[i, i]) for i in range(10)))
        return _connections(db, named)

    try:
        assert asyncio.run(main()) <= 2
    finally:
        app.close()
    assert db.execute("SELECT count(*) FROM pgqueue.jobs").fetchone()[0] == 10


def test_each_asyncio_run_leaves_no_connection_open(dsn: str, db: psycopg.Connection) -> None:
    # The pool's close at the loop's end stopped at its own cancelled tasks, its idle
    # connections already taken out: they stayed open until a garbage collection.
    gc.disable()
    named = _named(dsn)
    # One connection at most: a pool that grows has a connection being made when the loop
    # ends, which psycopg_pool abandons half made (the garbage collector closes that one).
    app = pgqueue.App(named, pool_size=1)
    try:
        for i in range(4):
            asyncio.run(app.enqueue_async("add", args=[i, i]))
            # (A server process ends a moment after its client closes the connection.)
            wait_for(
                lambda: _connections(db, named) == 0,
                timeout=5,
                describe=lambda: f"{_connections(db, named)} open after asyncio.run() #{i + 1}",  # noqa: B023
            )
    finally:
        app.close()
        gc.enable()


FORKED = r"""
import os, sys
import pgqueue

app = pgqueue.App(sys.argv[1], pool_size=2)
app.enqueue("add", args=[0, 0])  # the parent's pool is open (gunicorn --preload, say)
children = []
for n in range(3):
    pid = os.fork()
    if pid == 0:
        try:
            for i in range(10):
                app.enqueue("add", args=[n, i])
        except BaseException as exc:
            print(f"child {n}: {type(exc).__name__}: {exc}", flush=True)
            os._exit(1)
        os._exit(0)
    children.append(pid)
codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
app.enqueue("add", args=[9, 9])  # the parent's own connections still work
print(codes, flush=True)
"""


def test_forked_children_open_their_own_connections(dsn: str, db: psycopg.Connection) -> None:
    # Children forked after the App was used shared its pool: two processes on one
    # connection corrupt its protocol ("server sent data without prior row description").
    done = subprocess.run(
        [sys.executable, "-c", FORKED, dsn], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[0, 0, 0]", done.stdout + done.stderr
    assert db.execute("SELECT count(*) FROM pgqueue.jobs").fetchone()[0] == 32
