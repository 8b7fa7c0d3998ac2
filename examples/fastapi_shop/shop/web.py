"""The shop's HTTP API: placing an order and enqueueing its receipt is one transaction."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel
from sqlalchemy.orm import Session

from shop.models import Order, engine_for
from shop.tasks import app as jobs
from shop.tasks import send_receipt


class NewOrder(BaseModel):
    email: str
    amount_cents: int
    coupon: str | None = None


def transaction(request: Request) -> Iterator[Session]:
    """One transaction per request: committed when the endpoint returns, rolled back when
    it raises (FastAPI throws the error into this generator)."""
    with Session(request.app.state.engine) as session, session.begin():
        yield session


Tx = Annotated[Session, Depends(transaction)]


def create_app(database: str | None = None) -> FastAPI:
    """The API on `database` (a DSN), by default the one the jobs use."""
    api = FastAPI(title="shop")
    api.state.engine = engine_for(database or jobs.dsn)

    @api.post("/orders", status_code=201)
    def place_order(new: NewOrder, session: Tx) -> dict[str, int]:
        order = Order(email=new.email, amount_cents=new.amount_cents)
        session.add(order)
        session.flush()  # the order gets its id
        # Written in this request's transaction: the worker sees the job only if the order
        # is committed, and never sees an order without its job.
        job_id = send_receipt.options(conn=session).enqueue(order.id)
        if new.coupon == "EXPIRED":
            raise HTTPException(409, "coupon expired")  # rollback: no order, no job
        return {"order": order.id, "receipt_job": job_id}

    @api.post("/orders/{order_id}/resend", status_code=202)
    def resend_receipt(order_id: int) -> dict[str, int]:
        return {"receipt_job": send_receipt.enqueue(order_id)}  # its own transaction

    return api
