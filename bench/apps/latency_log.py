"""Shared by every system's `stamp` handler: append enqueue→start latency in ms."""

from __future__ import annotations

import os
import time


def record(enqueued_at: float) -> None:
    """Append (now - enqueued_at) in milliseconds to $BENCH_LATENCY_FILE."""
    started = time.time()
    with open(os.environ["BENCH_LATENCY_FILE"], "a") as out:
        out.write(f"{(started - enqueued_at) * 1000.0:.3f}\n")
