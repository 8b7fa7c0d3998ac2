"""CPU seconds spent by a process tree, read from /proc (Linux): the worker processes under a
supervisor, and a PostgreSQL server on this machine (its postmaster and every backend, those
already gone included). With these, a figure in jobs/s comes with the CPU each job cost,
which says whether a change in throughput came from the code or from the machine."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat's fields after the command name (field 3 on), or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _children(parent: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None and int(fields[1]) == parent:
                found.append(int(entry))
    return found


def tree_cpu(root: int) -> float:
    """CPU seconds (user + system) of `root` and its live children: a worker process, or a
    supervisor and its worker processes."""
    total = 0
    for pid in (root, *_children(root)):
        fields = _stat(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])
    return total / TICKS


def postmaster_pid(dsn: str) -> int | None:
    """The server's postmaster, when it runs on this machine and its data directory is
    readable from here; else None."""
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute("SELECT current_setting('data_directory')").fetchone()
        pid = int((Path(str(row[0])) / "postmaster.pid").read_text().split()[0]) if row else 0
    except (psycopg.Error, OSError, ValueError, IndexError):
        return None
    return pid if _stat(pid) is not None else None


def server_cpu(postmaster: int) -> float:
    """CPU seconds of the whole server: the postmaster, its live processes, and the backends
    it has reaped (its children's times)."""
    fields = _stat(postmaster)
    if fields is None:
        return 0.0
    total = sum(int(f) for f in fields[11:15])
    for pid in _children(postmaster):
        child = _stat(pid)
        if child is not None:
            total += int(child[11]) + int(child[12])
    return total / TICKS
