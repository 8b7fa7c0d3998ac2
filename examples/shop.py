"""The demo's tasks: a small shop's background work, some of it failing on purpose."""

from __future__ import annotations

import asyncio
import random
import time

import pgqueue

app = pgqueue.App()  # PGQUEUE_DSN or DATABASE_URL

quick_retries = pgqueue.RetryPolicy(base=0.2, factor=2, jitter=0.1)


@app.task(queue="emails", name="send_receipt")
def send_receipt(order_id: int, email: str) -> dict[str, object]:
    """A sync handler: runs in the worker's thread pool."""
    time.sleep(random.uniform(0.001, 0.01))  # talking to an SMTP server
    return {"order": order_id, "sent_to": email}


@app.task(queue="images", name="resize_image")
async def resize_image(path: str, sizes: list[int]) -> list[str]:
    """An async handler: runs on the worker's event loop."""
    await asyncio.sleep(random.uniform(0.001, 0.02))
    return [f"{path}@{size}" for size in sizes]


@app.task(queue="payments", name="charge_card", max_attempts=5, retry=quick_retries)
def charge_card(order_id: int, cents: int) -> str:
    """Flaky: the payment provider times out now and then; retries with backoff."""
    if random.random() < 0.4:
        raise ConnectionError("payment provider timed out")
    return f"charged {cents} cents for order {order_id}"


@app.task(queue="default", name="import_feed", max_attempts=3, retry=quick_retries)
async def import_feed(url: str) -> None:
    """Always fails: ends `dead` after 3 attempts with its error history kept."""
    raise ValueError(f"feed {url} is not valid XML")


@app.task(queue="default", name="wait_for_stock")
def wait_for_stock(sku: str) -> str:
    """Snoozes with Retry until it has been tried three times (no attempt used up)."""
    ctx = pgqueue.context()
    if (ctx.job.run_at.timestamp() - ctx.job.created_at.timestamp()) < 0.5:
        raise pgqueue.Retry(delay=0.3)
    return f"{sku} in stock"
