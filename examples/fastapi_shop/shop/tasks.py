"""The shop's background jobs. Run them with `pgqueue work shop.tasks:app`."""

from __future__ import annotations

from sqlalchemy.orm import Session

import pgqueue
from shop.models import Order, engine_for

app = pgqueue.App()  # PGQUEUE_DSN, then DATABASE_URL


@app.task(queue="emails", max_attempts=5, name="send_receipt")
def send_receipt(order_id: int) -> str:
    with Session(engine_for(app.dsn)) as session, session.begin():
        order = session.get_one(Order, order_id)
        # A real shop would call its mail provider here.
        order.receipt_sent = True
        return f"receipt for order {order_id} sent to {order.email}"
