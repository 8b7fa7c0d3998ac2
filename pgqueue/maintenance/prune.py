"""Retention: finished jobs past their queue's retention are deleted in short batches, and the
statistics rollups are folded and trimmed."""

from __future__ import annotations

import time

from pgqueue.store import AsyncJobStore
from pgqueue.worker.queue_settings import FINAL_STATES, QueueSettings

ROUND_SECONDS = 1.0  # at most about this long per round: the rest waits for the next one


class Pruner:
    def __init__(self, store: AsyncJobStore, queues: QueueSettings, batch: int) -> None:
        self.store = store
        self.queues = queues
        self.batch = batch

    async def run_once(self) -> int:
        """Delete a few batches of each final state (each batch its own short transaction,
        SKIP LOCKED); how many."""
        deleted = 0
        deadline = time.monotonic() + ROUND_SECONDS
        # A batch of each state in turn: a state with much to prune takes no round whole.
        pending = {state: self.queues.shortest_retention(state) for state in FINAL_STATES}
        while pending and time.monotonic() < deadline:
            for state, horizon in list(pending.items()):
                n = await self.store.job_prune(
                    self.queues.default_retention, state, horizon, self.batch
                )
                deleted += n
                if n < self.batch:
                    del pending[state]
                if time.monotonic() >= deadline:
                    break
        # The statistics rollups: fold in what changed (deletions included) and forget the
        # minutes no figure reads. Readers add what is not folded in yet, so this only keeps
        # what they read short.
        await self.store.stats_compact()
        return deleted
