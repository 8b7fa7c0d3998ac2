"""Polling helper for tests that wait on the database."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(
    predicate,
    timeout: float = 10.0,
    interval: float = 0.02,
    describe: Callable[[], str] | None = None,
):
    """Call `predicate` until it returns something true; fail the test after `timeout`,
    with what `describe` says of the state it was left in."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    detail = f": {describe()}" if describe is not None else ""
    raise AssertionError(f"condition not met in {timeout:g}s{detail}")
