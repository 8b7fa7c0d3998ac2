"""The worker's event loop: uvloop where installed, asyncio's on request, a clear error for
anything else."""

from __future__ import annotations

import asyncio

import pytest

from pgqueue.errors import ConfigurationError
from pgqueue.worker import loop

uvloop = pytest.importorskip("uvloop")


def test_uvloop_by_default(monkeypatch):
    monkeypatch.delenv("PGQUEUE_EVENT_LOOP", raising=False)
    seen: list[type] = []

    async def main() -> None:
        seen.append(type(asyncio.get_running_loop()))

    loop.run(main())
    assert seen == [uvloop.Loop]


def test_asyncio_on_request(monkeypatch):
    monkeypatch.setenv("PGQUEUE_EVENT_LOOP", "asyncio")
    assert loop.loop_factory() is None


def test_a_bad_choice_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PGQUEUE_EVENT_LOOP", "trio")
    with pytest.raises(ConfigurationError, match="PGQUEUE_EVENT_LOOP must be one of"):
        loop.loop_factory()
