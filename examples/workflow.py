"""Fan-out / fan-in: price every line of an order in parallel, then total them.

`checkout` fans out one `price_line` job per line and a `total` job that depends on all of
them: the total runs once every line has succeeded, and reads their results. If a line
ends dead (say, an unknown product), the total is cancelled instead of running on partial
data.

    pgqueue work examples.workflow:app &
    python -m examples.workflow
"""

from __future__ import annotations

import pgqueue

app = pgqueue.App()

PRICES = {"apple": 30, "pear": 45, "plum": 20}


@app.task(name="price_line", max_attempts=1)
def price_line(product: str, quantity: int) -> int:
    if product not in PRICES:
        raise pgqueue.Discard(f"unknown product {product!r}")
    return PRICES[product] * quantity


@app.task(name="total")
def total() -> int:
    # This job's parents are the line jobs; their results are in the table.
    me = app.get_job(pgqueue.context().job.id)
    assert me is not None and me.depends_on
    return sum(app.wait(parent, timeout=0) for parent in me.depends_on)


def checkout(lines: dict[str, int]) -> tuple[list[int], int]:
    """Fan out one job per line, fan in with a total that waits for all of them."""
    line_jobs = app.enqueue_many(
        [{"task": "price_line", "args": [product, qty]} for product, qty in lines.items()]
    )
    return line_jobs, total.options(depends_on=line_jobs).enqueue()


if __name__ == "__main__":
    _, total_job = checkout({"apple": 3, "pear": 2, "plum": 5})
    print("total:", app.wait(total_job, timeout=30))  # 30*3 + 45*2 + 20*5 = 280
    app.close()
