"""Backlog scenarios: N jobs inserted first, then drained by one worker process.

Progress is read from counters the handlers keep in memory-mapped files (see
apps/progress_counter.py), never from the job tables: at a million rows a `count(*)` per poll
is itself a load on the server that distorts what it measures. The tables are read only
through `System.pending_sql`, a primary-key range over the last ids, and only once every
handler has run (the tail: outcomes still being written); then with `count(*)` after the
clock has stopped, to confirm.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from benchlib import db
from benchlib.proc import Worker
from benchlib.scenarios import Config, prepare
from benchlib.systems import System, Target

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "apps"))
from progress_counter import read_counts

POLL_INTERVAL = 0.1  # seconds between reads of the counter files (no SQL)
TAIL_INTERVAL = 0.02  # seconds between `pending_sql` checks once every handler has run
SAMPLE_EVERY = 1.0  # seconds between points of the progress curve kept in the JSON
# The tail check looks at the last tail_window() ids only: all three systems take equal-priority
# jobs in id order, so the jobs still in flight when the last handler has run are among them
# (at most a few times the concurrency). The full count afterwards confirms it.
TAIL_WINDOW_MIN = 2_000
FALLBACK_INTERVAL = 0.5  # seconds between full counts if that confirmation ever fails


@dataclass(frozen=True)
class BacklogConfig:
    sizes: tuple[int, ...]
    limit: float  # seconds a drain may take before it is cut and reported as partial
    fill_chunk: int  # rows per INSERT ... SELECT generate_series statement (one transaction)


@dataclass
class BacklogResult:
    name: str
    label: str
    jobs: int
    fill_seconds: float | None = None
    fill_jobs_per_s: float | None = None
    vacuum_seconds: float | None = None
    complete: bool = False
    done: int = 0  # jobs recorded finished by the system (all of them when complete)
    drain_seconds: float | None = None  # worker start to the last outcome recorded
    jobs_per_s: float | None = None  # done / drain_seconds, or done / limit when cut
    first_done_s: float | None = None  # worker start to the first handler run
    handlers_done_s: float | None = None  # worker start to the last handler run
    pending_checks: int = 0  # `pending_sql` queries made while the clock ran
    pending_check_ms_max: float | None = None
    tail_fallback: bool = False  # the tail check missed a job; the end is from a full count
    samples: list[tuple[float, int]] = field(default_factory=list)  # (s since start, ran)
    errors: list[str] = field(default_factory=list)


def run_backlogs(systems: list[System], cfg: Config, bcfg: BacklogConfig) -> list[BacklogResult]:
    """Every size for every system, sizes in the outer loop so that the systems alternate."""
    results = []
    for n in bcfg.sizes:
        for system in systems:
            print(f"{system.label}: backlog of {n:,} jobs", flush=True)
            result = run_backlog(system, n, cfg, bcfg)
            print(f"  [{system.name}] {summary(result)}", flush=True)
            results.append(result)
    return results


def summary(r: BacklogResult) -> str:
    if r.errors:
        return "ERROR: " + "; ".join(r.errors)
    rate = f"{r.jobs_per_s:,.0f} jobs/s" if r.jobs_per_s else "n/a"
    if r.complete:
        return f"{r.jobs:,} jobs in {r.drain_seconds:.1f} s, {rate}"
    return f"{r.done:,} of {r.jobs:,} done in the {r.drain_seconds:.0f} s limit, {rate}"


def run_backlog(system: System, n: int, cfg: Config, bcfg: BacklogConfig) -> BacklogResult:
    result = BacklogResult(system.name, system.label, n)
    counters = Path(tempfile.mkdtemp(prefix=f"bench-{system.name}-"))
    try:
        target, env = prepare(system, cfg)
        env["BENCH_PROGRESS_DIR"] = str(counters)
        fill(system, target, n, bcfg.fill_chunk, result)
        vacuum(target, result)
        log = cfg.results_dir / "logs" / f"{system.name}-backlog-{n}.log"
        with Worker(system.worker(target), env, cfg.apps_dir, log) as worker:
            try:
                _drain(system, target, n, bcfg.limit, counters, worker, result)
            except db.ScenarioError as exc:
                raise RuntimeError(f"{exc}; worker log tail:\n{worker.log_tail()}") from exc
    except Exception as exc:  # one broken system or size must not stop the others
        result.errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        shutil.rmtree(counters, ignore_errors=True)
        if not cfg.keep_dbs:
            try:
                db.drop_database(cfg.server_dsn, system.database)
            except Exception as exc:
                result.errors.append(f"could not drop database {system.database}: {exc}")
    return result


def fill(system: System, target: Target, n: int, chunk: int, result: BacklogResult) -> None:
    """INSERT ... SELECT generate_series, `chunk` rows per statement, each its own transaction."""
    with psycopg.connect(target.dsn, autocommit=True) as conn:
        started = time.perf_counter()
        for low in range(1, n + 1, chunk):
            conn.execute(system.fill_sql, {"low": low, "high": min(n, low + chunk - 1)})
        result.fill_seconds = time.perf_counter() - started
    result.fill_jobs_per_s = n / result.fill_seconds
    rows = db.count(target.dsn, system.rows_sql)
    if rows != n:
        raise RuntimeError(f"fill left {rows} job rows, expected {n}")


def vacuum(target: Target, result: BacklogResult) -> None:
    """VACUUM (ANALYZE) the whole database and CHECKPOINT, so every drain starts alike.

    Without it, autovacuum's first pass over the fresh rows (and the hint bits the first
    reader sets on them) lands at a random moment of the drain.
    """
    started = time.perf_counter()
    with psycopg.connect(target.dsn, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
        conn.execute("CHECKPOINT")
    result.vacuum_seconds = time.perf_counter() - started


def _drain(
    system: System,
    target: Target,
    n: int,
    limit: float,
    counters: Path,
    worker: Worker,
    result: BacklogResult,
) -> None:
    deadline = worker.started_at + limit
    with psycopg.connect(target.dsn, autocommit=True) as conn:
        # The tail check must walk the primary key whatever the statistics say: a sequential
        # scan of a million finished rows would be the very load this scenario avoids.
        conn.execute("SET enable_seqscan = off")
        if not _follow(system, n, target.concurrency, deadline, counters, conn, worker, result):
            _cut(system, target, limit, handlers_run(counters), worker, result)
            return
    # The clock has stopped: check the system's own records, with full scans.
    result.done = db.count(target.dsn, system.done_sql)
    while result.done < n and time.monotonic() < deadline:
        # A job below the tail window was still unfinished (not seen in any run so far):
        # restart the clock's end from the slow, exact count.
        result.tail_fallback = True
        _check_worker(system, target, worker, result.done)
        time.sleep(FALLBACK_INTERVAL)
        result.done = db.count(target.dsn, system.done_sql)
        result.drain_seconds = time.monotonic() - worker.started_at
    if result.done < n:
        _cut(system, target, limit, handlers_run(counters), worker, result)
        return
    failed = db.count(target.dsn, system.failed_sql)
    if result.done != n or failed:
        raise db.ScenarioError(f"{result.done} of {n} jobs succeeded, {failed} failed")
    assert result.drain_seconds is not None
    result.complete = True
    result.jobs_per_s = n / result.drain_seconds


def _follow(
    system: System,
    n: int,
    concurrency: int,
    deadline: float,
    counters: Path,
    conn: psycopg.Connection[Any],
    worker: Worker,
    result: BacklogResult,
) -> bool:
    """Poll the counters until every handler ran, then the tail check until nothing is left.

    Returns False when the deadline came first.
    """
    low = max(0, n - tail_window(concurrency))
    next_sample = worker.started_at
    while True:
        now = time.monotonic()
        ran = handlers_run(counters)
        if now >= next_sample:
            result.samples.append((round(now - worker.started_at, 2), ran))
            next_sample += SAMPLE_EVERY
        if ran > 0 and result.first_done_s is None:
            result.first_done_s = now - worker.started_at
        if ran >= n:
            if result.handlers_done_s is None:
                result.handlers_done_s = now - worker.started_at
            if not _pending(conn, system, low, result):
                result.drain_seconds = time.monotonic() - worker.started_at
                result.samples.append((round(result.drain_seconds, 2), ran))
                return True
        if now >= deadline:
            return False
        if not worker.alive():
            raise db.ScenarioError(f"worker exited early ({ran} handlers ran)")
        time.sleep(TAIL_INTERVAL if ran >= n else POLL_INTERVAL)


def tail_window(concurrency: int) -> int:
    """Ids the tail check covers: many times what a worker can hold in flight."""
    return max(TAIL_WINDOW_MIN, 40 * concurrency)


def handlers_run(counters: Path) -> int:
    """Handlers run so far by the worker processes that count under `counters`."""
    return int(read_counts(counters))


def _check_worker(system: System, target: Target, worker: Worker, done: int) -> None:
    if not worker.alive():
        raise db.ScenarioError(f"worker exited early ({done} jobs done)")
    failed = db.count(target.dsn, system.failed_sql)
    if failed:
        raise db.ScenarioError(f"{failed} jobs failed ({done} succeeded)")


def _cut(
    system: System, target: Target, limit: float, ran: int, worker: Worker, r: BacklogResult
) -> None:
    """The limit is reached: what the system recorded as finished by now is the result."""
    r.samples.append((round(limit, 2), ran))
    r.done = db.count(target.dsn, system.done_sql)  # while the worker still runs
    r.drain_seconds = limit
    r.jobs_per_s = r.done / limit
    worker.stop()


def _pending(
    conn: psycopg.Connection[Any], system: System, low: int, result: BacklogResult
) -> bool:
    started = time.perf_counter()
    row = conn.execute(system.pending_sql, {"low": low}).fetchone()
    ms = (time.perf_counter() - started) * 1000.0
    result.pending_checks += 1
    result.pending_check_ms_max = max(result.pending_check_ms_max or 0.0, ms)
    return bool(row and row[0])
