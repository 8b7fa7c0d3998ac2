"""Maintenance services, one per duty, run by every worker without a leader: each statement
is race-free (SKIP LOCKED, compare-and-set), so any number of nodes may run them at once.

Each service has `run_once()`, which tests call directly, and `every()` runs it in a loop.
A failing round is logged and tried again next time: maintenance never stops a worker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

from pgqueue.maintenance.dependencies import DependencySweeper
from pgqueue.maintenance.prune import Pruner
from pgqueue.maintenance.rescue import Rescuer
from pgqueue.maintenance.scheduler import Scheduler
from pgqueue.store import first_line, is_unavailable
from pgqueue.worker.outage import Outage

log = logging.getLogger("pgqueue.maintenance")

__all__ = ["DependencySweeper", "Pruner", "Rescuer", "Scheduler", "every"]


async def every(
    interval: float,
    name: str,
    run_once: Callable[[], Awaitable[Any]],
    outage: Outage | None = None,
) -> None:
    """Run `run_once` every `interval` seconds until cancelled. A database error is logged
    at the level the worker's `outage` says (quiet while an outage it told goes on)."""
    outage = outage or Outage()
    while True:
        await asyncio.sleep(interval)
        began = outage.now()
        try:
            await run_once()
        except Exception as exc:
            if is_unavailable(exc) or isinstance(exc, psycopg.Error):
                log.log(outage.level(exc, began), "%s: %s", name, first_line(exc))
            else:
                log.exception("%s: unexpected error", name)
