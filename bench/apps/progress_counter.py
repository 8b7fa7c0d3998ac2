"""Shared by every system's `noop` handler: count handlers run, without touching the database.

Each worker process keeps its count in an 8-byte file of its own under $BENCH_PROGRESS_DIR,
written through a shared memory map: one store per job, no system call, no SQL. The bench
reads the files (`read_counts`) to follow a backlog drain without scanning any table.
Unset variable: `tick()` does nothing (the standard scenarios do not count).
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path

_DIR = os.environ.get("BENCH_PROGRESS_DIR")
_COUNTER = struct.Struct("<Q")
_map: mmap.mmap | None = None
_count = 0
_pack = _COUNTER.pack_into


def tick() -> None:
    """One more handler run in this process (handlers here are async: one thread ticks)."""
    global _count
    if _map is None:
        if _DIR is None:
            return
        _open()
    _count += 1
    _pack(_map, 0, _count)


def _open() -> None:
    global _map, _count
    assert _DIR is not None
    path = Path(_DIR) / f"{os.getpid()}.count"
    with path.open("wb+") as f:
        f.write(bytes(_COUNTER.size))
        f.flush()
        _map, _count = mmap.mmap(f.fileno(), _COUNTER.size), 0


def _forget() -> None:
    """A forked child counts in a file of its own."""
    global _map, _count
    _map, _count = None, 0


os.register_at_fork(after_in_child=_forget)


def read_counts(directory: Path) -> int:
    """Sum of the counters of every worker process that wrote under `directory`."""
    total = 0
    for path in directory.glob("*.count"):
        data = path.read_bytes()
        if len(data) >= _COUNTER.size:
            total += _COUNTER.unpack_from(data)[0]
    return total
