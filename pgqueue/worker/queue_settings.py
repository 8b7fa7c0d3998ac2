"""The queue settings a worker acts on (pauses, cluster-wide limits, retention), read from
`pgqueue.queues` when told of a change and at least every poll interval."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from pgqueue.settings import WorkerSettings

FINAL_STATES = ("succeeded", "dead", "cancelled")


class QueueSettings:
    """A cached copy of pgqueue.queues, for the claimer, the completer and the pruner."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.ours = frozenset(settings.queues) if settings.queues else None
        self.poll_interval = settings.poll_interval
        self.default_retention: dict[str, float] = {
            "succeeded": settings.retain_succeeded,
            "dead": settings.retain_dead,
            "cancelled": settings.retain_cancelled,
        }
        self.retention: dict[str, dict[str, float]] = {}
        self.limited: list[str] = []  # our queues with limits: claimed through the limited path
        self.per_key: frozenset[str] = frozenset()  # those of them with a per-key limit
        self._read_at = 0.0
        self._stale = True

    def changed(self, queue: str) -> bool:
        """A queue's settings changed; True if it is one of ours (then re-read)."""
        if self.ours is None or queue in self.ours:
            self._stale = True
            return True
        return False

    def due(self) -> bool:
        return self._stale or time.monotonic() - self._read_at > self.poll_interval

    def load(self, rows: Sequence[Sequence[Any]]) -> None:
        """Take queue_config's rows (name, paused, concurrency, rate, period, updated, the
        three retentions, and the per-key limit)."""
        self.retention = {
            row[0]: {
                state: value if value is not None else self.default_retention[state]
                for state, value in zip(FINAL_STATES, row[6:9], strict=True)
            }
            for row in rows
        }
        self.limited = sorted(
            name
            for name, paused, conc, rate, *_, per_key in rows
            if not paused
            and (conc is not None or rate is not None or per_key is not None)
            and (self.ours is None or name in self.ours)
        )
        self.per_key = frozenset(row[0] for row in rows if row[9] is not None)
        self._read_at = time.monotonic()
        self._stale = False

    def delete_now(self, state: str, queue: str) -> bool:
        """Retention 0 for this queue and final state: delete at completion."""
        return self.retention.get(queue, self.default_retention).get(state, 1.0) == 0

    def shortest_retention(self, state: str) -> float:
        """The shortest retention of jobs finished in `state`, over every queue."""
        values = [self.default_retention[state]]
        values += [per_queue[state] for per_queue in self.retention.values()]
        return min(values)
