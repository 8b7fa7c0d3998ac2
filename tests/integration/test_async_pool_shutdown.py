"""`asyncio.run(main())` ends even when the App's pool for that loop is still connecting.

The cause of a CI run that hung in `asyncio.run` → `_cancel_all_tasks` with psycopg.pool's
"error connecting in 'pgqueue-async'": the App opens a pool per event loop and leaves it open.
When the loop ends, asyncio cancels every task; a psycopg_pool maintenance task that is
connecting at that moment takes the cancellation for a failed connection (it catches
`CancelledError`), schedules a retry and waits for its next task, forever. A slow connection
(a busy machine) is all it takes, so here the App connects through a proxy that answers a
second late.
"""

from __future__ import annotations

import subprocess
import sys
import time

import psycopg
import pytest

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
