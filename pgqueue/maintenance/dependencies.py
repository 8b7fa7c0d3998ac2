"""The dependency sweep: a child whose parents finished while it was being enqueued (so no
outcome write saw it) is freed or cancelled here. Pages through every waiting job by id, so
a large backlog of children is covered in one round, not the same first page forever."""

from __future__ import annotations

import logging

from pgqueue.store import AsyncJobStore

log = logging.getLogger("pgqueue.maintenance")
PAGE = 5000  # the settle statement's page size
MAX_PAGES = 200  # one round looks at up to a million waiting jobs


class DependencySweeper:
    def __init__(self, store: AsyncJobStore) -> None:
        self.store = store

    async def run_once(self) -> tuple[int, int]:
        """Sweep every waiting job once; returns (released, cancelled)."""
        released = cancelled = 0
        after: int | None = None
        for _ in range(MAX_PAGES):
            c, r, last_id, seen = await self.store.job_settle_children(None, after)
            released += r
            cancelled += c
            if last_id is None or seen < PAGE:
                break
            after = last_id
        if released or cancelled:
            log.info("dependency sweep: %d job(s) freed, %d cancelled", released, cancelled)
        return released, cancelled
