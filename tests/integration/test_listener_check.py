"""A LISTEN connection whose server stops answering is noticed and replaced: wake-ups come
again without waiting for the safety poll."""

from __future__ import annotations

import os
import signal
import time

import pytest

from pgqueue.worker import listener
from tests.waiting import wait_for


@pytest.mark.timeout(120)
def test_a_listener_whose_server_stops_answering_is_replaced(app, worker, db, monkeypatch):
    monkeypatch.setattr(listener, "CHECK_EVERY", 0.5, raising=False)
    monkeypatch.setattr(listener, "CHECK_TIMEOUT", 1.0, raising=False)
    with worker(poll_interval=60):
        stuck = wait_for(
            lambda: db.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND (query LIKE 'LISTEN pgqueue_jobs%%' OR query LIKE '%%listener_check')"
            ).fetchone(),
            timeout=20,
        )[0]
        os.kill(stuck, signal.SIGSTOP)  # the server process no longer answers
        try:
            # The check fails and the listener connects again; and the claimer is past its
            # catch-up claims (the last 6.4 s after it began to wait), asleep until woken.
            time.sleep(8)
            # By plain SQL: an enqueue through this process's App would wake its worker
            # without the database.
            (job_id,) = db.execute(
                "INSERT INTO pgqueue.jobs (task, args) VALUES ('add', '[2, 3]') RETURNING id"
            ).fetchone()
            # Only the notification can start it before the 60 s poll.
            assert app.wait(job_id, timeout=20) == 5
        finally:
            os.kill(stuck, signal.SIGCONT)


def test_a_listen_dsn_that_cannot_be_reached_delays_nothing_and_is_no_outage(app, dsn, caplog):
    # The DSN (a pooler, say) answers; the listen DSN does not. The worker waited 10 s
    # before it started, and its listener's failures made an outage of the database that
    # every other statement "ended": "database back after 0.0s" every 5 s, for good.
    import logging

    from tests import jobs
    from tests.conftest import running_worker

    caplog.set_level(logging.INFO, logger="pgqueue")
    began = time.monotonic()
    with running_worker(dsn, listen_dsn="postgresql://postgres@127.0.0.1:1/none",
                        poll_interval=0.5, heartbeat_interval=0.5):  # fmt: skip
        assert time.monotonic() - began < 5, "started without waiting for the listener"
        job_id = jobs.add.enqueue(2, 3)
        assert app.wait(job_id, timeout=10) == 5  # found by polling
        time.sleep(2.0)  # beats and claims meanwhile
    lines = [r.getMessage() for r in caplog.records]
    assert any("listener: cannot connect" in line for line in lines), lines
    assert not any("database back" in line for line in lines), lines
