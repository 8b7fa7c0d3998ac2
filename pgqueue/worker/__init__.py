"""The worker: claims jobs, runs them with bounded concurrency, records outcomes, and stops
gracefully. Written once, for asyncio; sync handlers run in a thread pool. See lifecycle.py
for its parts."""

from __future__ import annotations

from pgqueue.worker.daemon import run_worker
from pgqueue.worker.lifecycle import NEEDS_REVISION, Worker

__all__ = ["NEEDS_REVISION", "Worker", "run_worker"]
