"""The app bench/fairness.py runs: a no-op, and a stamp that records enqueue-to-start."""

from __future__ import annotations

import os
import time

import pgqueue

app = pgqueue.App(os.environ["PGQUEUE_DSN"])


@app.task(name="fair.noop")
async def noop(i: int) -> None:
    return None


@app.task(name="fair.stamp")
async def stamp(enqueued_at: float) -> None:
    started = time.time()
    with open(os.environ["FAIRNESS_SAMPLES"], "a") as out:
        out.write(f"{(started - enqueued_at) * 1000.0:.3f}\n")
