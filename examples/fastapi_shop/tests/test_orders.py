"""The shop's tests, written with pgqueue.testing: no worker process, a real database."""

from __future__ import annotations

from shop.models import Order, engine_for
from shop.tasks import send_receipt
from sqlalchemy.orm import Session

from pgqueue.testing import assert_enqueued, assert_not_enqueued, drain


def test_an_order_enqueues_its_receipt(client, pgqueue_app):
    response = client.post("/orders", json={"email": "ada@example.com", "amount_cents": 1200})
    assert response.status_code == 201
    order_id = response.json()["order"]

    job = assert_enqueued(send_receipt, args=[order_id], queue="emails")
    assert job.id == response.json()["receipt_job"]

    (ran,) = drain(pgqueue_app)  # runs the job here, with pgqueue's own worker
    assert ran.state == "succeeded"
    assert ran.result == f"receipt for order {order_id} sent to ada@example.com"
    with Session(engine_for(pgqueue_app.dsn)) as session:
        assert session.get_one(Order, order_id).receipt_sent


def test_a_rejected_order_leaves_no_job(client, pgqueue_app):
    response = client.post(
        "/orders", json={"email": "bob@example.com", "amount_cents": 500, "coupon": "EXPIRED"}
    )
    assert response.status_code == 409
    assert_not_enqueued(send_receipt)  # rolled back with the order
    assert drain(pgqueue_app) == []


def test_eager_mode_runs_the_job_inside_the_request(client, pgqueue_eager):
    order_id = client.post("/orders", json={"email": "cy@example.com", "amount_cents": 1}).json()[
        "order"
    ]
    # This endpoint enqueues in its own transaction, so eager mode runs the job at once.
    job_id = client.post(f"/orders/{order_id}/resend").json()["receipt_job"]
    assert pgqueue_eager.get_job(job_id).state == "succeeded"
