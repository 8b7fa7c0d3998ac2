"""CPU-bound jobs: give each one a process of its own with `--processes`.

A sync handler runs in a thread of its worker process, so CPU-heavy handlers in one process
share one core (the GIL). `--processes N` starts N worker processes under a supervisor, each
with `--concurrency` slots: with `--concurrency 1`, N jobs crunch on N cores at once.

    pgqueue work examples.cpu_bound:app --processes 2 --concurrency 1 &
    python -m examples.cpu_bound
"""

from __future__ import annotations

import os

import pgqueue

app = pgqueue.App()


@app.task(queue="cpu", name="count_primes", timeout=300)
def count_primes(limit: int) -> dict[str, int]:
    """Primes below `limit`, by trial division: plain Python, all CPU."""
    count = sum(1 for n in range(2, limit) if all(n % d for d in range(2, int(n**0.5) + 1)))
    return {"limit": limit, "primes": count, "pid": os.getpid()}


if __name__ == "__main__":
    ids = [count_primes.enqueue(200_000) for _ in range(4)]
    for job_id in ids:
        print(app.wait(job_id, timeout=300))
    app.close()
