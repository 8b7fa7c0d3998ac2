"""The least a notified worker does: LISTEN, and on each notification one round trip
(`SELECT 1`, where a worker would read the table), then append (now - the payload, a
time.time() taken before the insert) in milliseconds to the file named by argv[2].
argv[1] is the DSN. Used by bench/latency_floor.py."""

from __future__ import annotations

import asyncio
import sys
import time

import psycopg

CHANNEL = "pgqueue_bench_bare"


async def main(dsn: str, out_path: str) -> None:
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    await conn.execute(f"LISTEN {CHANNEL}")
    with open(out_path, "a", buffering=1) as out:
        while True:
            notes = conn.notifies()
            note = await anext(notes)
            await notes.aclose()
            await (await conn.execute("SELECT 1")).fetchall()
            out.write(f"{(time.time() - float(note.payload)) * 1000.0:.3f}\n")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
