"""The dependency sweep: a child whose parents finished while it was being enqueued (so no
outcome write saw it) is freed or cancelled here.

Each round reads the newest waiting jobs, where such a child is found, and then one page of
the others, resuming where the last round stopped and starting over at the end. Its cost is
bounded whatever the number of waiting jobs (a million children waiting on a parent due
tomorrow cost each round the same as a hundred); a child missed by the newest look waits at
most one cycle through the pages."""

from __future__ import annotations

import logging

from pgqueue.store import AsyncJobStore

log = logging.getLogger("pgqueue.maintenance")
PAGE = 5000  # the settle statement's page size


class DependencySweeper:
    def __init__(self, store: AsyncJobStore) -> None:
        self.store = store
        self._after: int | None = None  # the last id of the previous round's page

    async def run_once(self) -> tuple[int, int]:
        """One round: the newest waiting jobs, then the next page; (released, cancelled)."""
        c1, r1, _, _ = await self.store.job_settle_children(None, newest=True)
        c2, r2, last_id, seen = await self.store.job_settle_children(None, self._after)
        self._after = last_id if seen >= PAGE else None
        released, cancelled = r1 + r2, c1 + c2
        if released or cancelled:
            log.info("dependency sweep: %d job(s) freed, %d cancelled", released, cancelled)
        return released, cancelled
