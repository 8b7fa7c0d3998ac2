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


def _family(parent: int) -> list[list[str]]:
    """The stat fields of `parent` and of its live children, in one pass over /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None and (int(entry) == parent or int(fields[1]) == parent):
                found.append(fields)
    return found


def _ticks(fields: list[str]) -> int:
    return int(fields[11]) + int(fields[12])  # utime + stime


def tree_cpu(root: int) -> float:
    """CPU seconds (user + system) of `root` and its live children: a worker process, or a
    supervisor and its worker processes."""
    return sum(_ticks(fields) for fields in _family(root)) / TICKS


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
    it has reaped (its children's times, read in the same pass)."""
    total = 0
    for fields in _family(postmaster):
        total += _ticks(fields)
        if int(fields[1]) != postmaster:  # the postmaster itself: add what it reaped
            total += int(fields[13]) + int(fields[14])  # cutime + cstime
    return total / TICKS
