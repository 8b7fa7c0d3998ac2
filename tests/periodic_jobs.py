"""An app with a periodic task, kept apart from tests.jobs so that other tests' workers do
not run its scheduler."""

from __future__ import annotations

import pgqueue

app = pgqueue.App()


@app.periodic(cron="* * * * * *", name="every_second", args=["tick"])
async def every_second(label: str) -> str:
    return label


@app.periodic(cron="0 0 1 1 *", timezone="Europe/Paris", name="new_year")
def new_year() -> None:
    """Never fires during a test: shows up in `pgqueue schedules` only."""
