"""Periodic jobs with three worker processes all running the scheduler: one job per fire
time, never two."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime

import pytest

import pgqueue
from tests.acceptance.conftest import ROOT, run_cli


def test_three_schedulers_enqueue_one_job_per_fire_time(dsn, db, tmp_path):
    procs, logs = [], []
    for i in range(3):
        log = open(tmp_path / f"w{i}.log", "wb")  # noqa: SIM115
        logs.append(log)
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pgqueue.cli",
                    "work",
                    "tests.periodic_jobs:app",
                    "--concurrency",
                    "4",
                ],
                cwd=ROOT,
                env={**os.environ, "PGQUEUE_DSN": dsn},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    try:
        deadline = time.monotonic() + 30
        while (
            db.execute(
                "SELECT count(*) FROM pgqueue.jobs "
                "WHERE task = 'every_second' AND state = 'succeeded'"
            ).fetchone()[0]
            < 3
        ):
            assert time.monotonic() < deadline, "the schedule did not fire"
            time.sleep(0.1)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        codes = [p.wait(30) for p in procs]
        for log in logs:
            log.close()
    assert codes == [0, 0, 0]
    rows = db.execute(
        "SELECT unique_key, count(*), min(state) FROM pgqueue.jobs "
        "WHERE task = 'every_second' GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert len(rows) >= 2, rows
    assert all(n == 1 for _, n, _ in rows), rows
    fires = [datetime.fromisoformat(key.split("@", 1)[1]) for key, _, _ in rows]
    gaps = {(b - a).total_seconds() for a, b in itertools.pairwise(fires)}
    assert gaps <= {1.0}, f"a fire time was skipped or repeated: {fires}"
    assert (
        db.execute(
            "SELECT count(*) FROM pgqueue.jobs WHERE task = 'every_second' AND state = 'succeeded'"
        ).fetchone()[0]
        >= 2
    )
    listed = json.loads(run_cli("schedules", "--json").stdout)
    by_name = {s["name"]: s for s in listed}
    assert by_name["every_second"]["cron"] == "* * * * * *"
    assert by_name["new_year"]["timezone"] == "Europe/Paris"
    assert by_name["new_year"]["last_job_id"] is None


def test_bad_cron_and_time_zone_are_refused_at_declaration():
    app = pgqueue.App("postgresql://unused")
    with pytest.raises(pgqueue.ConfigurationError, match="invalid cron"):
        app.periodic(cron="every day")(lambda: None)
    with pytest.raises(pgqueue.ConfigurationError, match="unknown time zone"):
        app.periodic(cron="* * * * *", timezone="Mars/Olympus")(lambda: None)
