"""Waiting on asyncio events with a timeout, shared by the worker's parts."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any


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


async def cancel_and_wait(
    tasks: Sequence[asyncio.Task[Any]], patience: float = 6.0, rounds: int = 5
) -> list[asyncio.Task[Any]]:
    """Cancel `tasks` and wait for them to end, cancelling again those that go on.

    A cancellation can be lost: on Python 3.11, `asyncio.wait_for` returns the result
    instead of raising when its inner wait ends in the same loop turn as the cancel, and
    psycopg_pool waits for a free connection that way. A part cancelled while a connection
    was being handed to it then carries on (to its next sleep), and a single cancel plus
    `gather` waits for ever. Each round waits `patience` seconds: more than the 5 s psycopg
    gives the server to cancel a running query, which a second cancel would cut short
    (closing the connection, with a warning). Returns the tasks still running after
    `rounds` tries."""
    pending = [t for t in tasks if not t.done()]
    for _ in range(rounds):
        if not pending:
            break
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=patience)
        pending = [t for t in pending if not t.done()]
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: the caller stops anyway, asyncio need not log it
    return pending


class Wakeup:
    """A flag one task sleeps on and any code sets: cheaper than an Event waited on beside
    others (no helper tasks), so a notification wakes the claimer in one loop turn."""

    def __init__(self) -> None:
        self._flag = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        self._flag = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def clear(self) -> None:
        self._flag = False

    def is_set(self) -> bool:
        return self._flag

    async def wait(self, timeout: float) -> None:
        """Until set (now or later) or `timeout` seconds pass."""
        if self._flag:
            return
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(timeout, _resolve, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
