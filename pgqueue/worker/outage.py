"""The database going away and coming back, told once in the log.

Every part of the worker (the claimer, the completer, the heartbeat, the cancel reader, the
listener, maintenance, the connection pool) meets an outage on its own retry loop. Each of
them saying so at every try made some 25 lines of a 10 s outage, most of them the same
news. Here the first part to meet the outage says so; while it lasts only the claimer says
each of its tries (one line a try, with its backoff) and the others log at DEBUG; the first
part whose statement succeeds again says the database is back, and after how long.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from pgqueue.store import is_unavailable

log = logging.getLogger("pgqueue.worker")


class Outage:
    """Whether the database is known to be away, for one worker process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, what: str = "database") -> None:
        self.clock = clock
        self.what = what  # as the log lines name it
        self.since: float | None = None
        self.ended = float("-inf")  # when the last outage was over

    @property
    def known(self) -> bool:
        return self.since is not None

    def level(self, exc: BaseException, began: float | None = None) -> int:
        """The level to log a part's failure at: DEBUG for a connection-class failure while
        an outage is already known (the news was told), or for one whose try `began` (on
        this clock) before the last outage was over (a wait for a connection that ran out
        just after); else WARNING. Any other connection-class failure starts an outage."""
        if not is_unavailable(exc):
            return logging.WARNING
        if began is not None and began < self.ended:
            return logging.DEBUG
        if self.since is None:
            self.since = self.clock()
            return logging.WARNING
        return logging.DEBUG

    def now(self) -> float:
        """When a try begins, to pass to `level` if it fails."""
        return self.clock()

    def answered(self) -> None:
        """A part's statement succeeded: an outage, if one was known, is over."""
        if self.since is None:
            return
        self.ended = self.clock()
        log.info("%s back after %.1fs", self.what, self.ended - self.since)
        self.since = None


class QuietWhileAway(logging.Filter):
    """Drops the connection pool's own warnings (each reconnection that failed) while an
    outage is known, and its word on each dead connection it throws away (after an outage,
    every one it kept): the worker's lines already tell it."""

    def __init__(self, outage: Outage) -> None:
        super().__init__()
        self.outage = outage

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.WARNING:
            return True
        return not (self.outage.known or str(record.msg).startswith("discarding"))
