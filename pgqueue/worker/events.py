"""Waiting on asyncio events with a timeout, shared by the worker's parts."""

from __future__ import annotations

import asyncio


async def wait_any(timeout: float, *events: asyncio.Event) -> None:
    """Sleep `timeout` seconds, cut short when any of `events` is set."""
    if any(e.is_set() for e in events):
        return
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
