"""Plain psycopg: a sign-up and its welcome email in one transaction, then the result.

export PGQUEUE_DSN=postgresql://localhost/shop
pgqueue migrate
pgqueue work examples.psycopg_script:app &      # a worker, from the repository root
python -m examples.psycopg_script ada@example.com
"""

from __future__ import annotations

import sys

import psycopg

import pgqueue

app = pgqueue.App()  # PGQUEUE_DSN, then DATABASE_URL


@app.task(queue="emails", name="send_welcome")
def send_welcome(user_id: int, email: str) -> str:
    return f"welcome mail for user {user_id} sent to {email}"


def sign_up(conn: psycopg.Connection, email: str) -> tuple[int, int]:
    """Insert the user and enqueue the welcome mail in the caller's transaction."""
    row = conn.execute("INSERT INTO users (email) VALUES (%s) RETURNING id", (email,)).fetchone()
    assert row is not None
    user_id = row[0]
    job_id = send_welcome.options(conn=conn).enqueue(user_id, email)
    return user_id, job_id


def main(emails: list[str]) -> None:
    with psycopg.connect(app.dsn) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS users (id serial PRIMARY KEY, email text)")
        conn.commit()

        # A sign-up that fails half-way leaves neither a user nor a job behind.
        try:
            with conn.transaction():
                _, job_id = sign_up(conn, "declined@example.com")
                raise RuntimeError("payment declined")
        except RuntimeError:
            pass
        print(f"rolled back: job {job_id} exists: {app.get_job(job_id) is not None}")

        jobs = []
        for email in emails:
            with conn.transaction():  # the user and the job commit together
                jobs.append(sign_up(conn, email)[1])
    for job_id in jobs:
        print(app.wait(job_id, timeout=30))  # a worker runs them
    app.close()


if __name__ == "__main__":
    main(sys.argv[1:] or ["ada@example.com"])
