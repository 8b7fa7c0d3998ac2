"""`pgqueue work --processes N`: a supervisor that replaces dead children and stops them all."""

from __future__ import annotations

import os
import signal
import time

from tests import jobs
from tests.acceptance.chaos import children_of


def wait_children(pid: int, count: int, timeout: float = 20) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = children_of(pid)
        if len(kids) == count:
            return kids
        time.sleep(0.05)
    raise AssertionError(f"expected {count} children, have {children_of(pid)}")


def registered(db) -> int:
    return db.execute("SELECT count(*) FROM pgqueue.workers").fetchone()[0]


def test_supervisor_replaces_dead_child_and_stops_all(app, db, spawn_worker):
    sup = spawn_worker("--processes", "3", "--concurrency", "2")
    first = wait_children(sup.proc.pid, 3)
    deadline = time.monotonic() + 30
    while registered(db) < 3:
        assert time.monotonic() < deadline, sup.output()
        time.sleep(0.05)
    os.kill(first[0], signal.SIGKILL)
    deadline = time.monotonic() + 20
    while True:
        kids = children_of(sup.proc.pid)
        if len(kids) == 3 and first[0] not in kids:
            break
        assert time.monotonic() < deadline, sup.output()
        time.sleep(0.05)
    ids = app.enqueue_many([{"task": "add", "args": [i, i]} for i in range(50)])
    assert app.wait(ids[-1], timeout=30) == 98
    sup.signal(signal.SIGTERM)
    assert sup.wait(30) == 0, sup.output()
    assert children_of(sup.proc.pid) == []
    assert "starting a new one" in sup.output()
    assert jobs.app.get_job(ids[0]).state == "succeeded"


def test_children_that_keep_dying_are_replaced_ever_more_slowly_and_stop_cleanly(db, spawn_worker):
    """Kill the same slot's child again and again: replacements slow down (no restart
    loop), the other child keeps running, and a SIGTERM while a replacement waits stops the
    supervisor cleanly."""
    sup = spawn_worker("--processes", "2", "--concurrency", "1")
    wait_children(sup.proc.pid, 2)
    for _ in range(4):
        kids = wait_children(sup.proc.pid, 2, timeout=30)
        os.kill(kids[0], signal.SIGKILL)
        time.sleep(0.3)
    kids = wait_children(sup.proc.pid, 2, timeout=30)
    os.kill(kids[0], signal.SIGKILL)
    time.sleep(0.3)
    assert len(children_of(sup.proc.pid)) == 1, "the replacement waits"
    assert "starting a new one in" in sup.output()
    sup.signal(signal.SIGTERM)
    assert sup.wait(30) == 0, sup.output()
    assert children_of(sup.proc.pid) == []


def test_ctrl_c_stops_every_process_gracefully(app, db, spawn_worker):
    """A terminal's Ctrl-C reaches every process of its group: each child gets SIGINT from
    the terminal and again from the supervisor, at once. That is one request to stop (it
    was taken for a second, "exit now": jobs left running, attempts charged)."""
    sup = spawn_worker("--processes", "2", "--concurrency", "2", "--shutdown-grace", "20")
    kids = wait_children(sup.proc.pid, 2)
    deadline = time.monotonic() + 30
    while registered(db) < 2:
        assert time.monotonic() < deadline, sup.output()
        time.sleep(0.05)
    ids = [jobs.sleep.enqueue(1.5) for _ in range(4)]
    while db.execute("SELECT count(*) FROM pgqueue.jobs WHERE state = 'running'").fetchone()[0] < 4:
        assert time.monotonic() < deadline, sup.output()
        time.sleep(0.02)
    for pid in (sup.proc.pid, *kids):  # what the terminal does
        os.kill(pid, signal.SIGINT)
    assert sup.wait(30) == 0, sup.output()
    assert "exiting now" not in sup.output()
    assert [app.get_job(i).state for i in ids] == ["succeeded"] * 4


def test_children_stop_when_the_supervisor_is_killed(db, spawn_worker):
    # Orphans went on claiming, registered, with nobody to pass them the next SIGTERM; a
    # service manager restarting the supervisor then ran twice the workers.
    sup = spawn_worker("--processes", "2", "--concurrency", "1")
    kids = wait_children(sup.proc.pid, 2)
    deadline = time.monotonic() + 30
    while registered(db) < 2:
        assert time.monotonic() < deadline, sup.output()
        time.sleep(0.05)
    os.kill(sup.proc.pid, signal.SIGKILL)
    sup.wait(10)
    try:
        deadline = time.monotonic() + 30
        while any(not _zombie(pid) for pid in kids):
            assert time.monotonic() < deadline, f"orphans still running: {kids}"
            time.sleep(0.05)
    finally:
        for pid in kids:
            if not _zombie(pid):
                os.kill(pid, signal.SIGKILL)
    assert registered(db) == 0, "each stopped gracefully, unregistering"


def _zombie(pid: int) -> bool:
    """Gone, or dead and not reaped yet."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
