"""Sustained load: enqueue and process together for a long run, with autovacuum only.

Usage: .venv/bin/python bench/sustained.py [--minutes 30] [--warmup MINUTES]
       [--retention SECONDS] [--dsn DSN]

Without --dsn the bench starts a throwaway PostgreSQL cluster of its own (initdb into a
temporary directory, a free port on 127.0.0.1, autovacuum on as by default,
pg_stat_statements preloaded, fsync on, everything else default) and removes it at the end,
also on Ctrl-C or SIGTERM. With --dsn it uses that server instead (it must allow creating a
database; its autovacuum must be on for the run to mean anything, and pg_stat_statements must
be in its shared_preload_libraries).

On a fresh database `bench_sustained`, `--workers` `pgqueue work` processes (concurrency
`--concurrency`) run no-op jobs while a producer thread enqueues them through App.enqueue_many,
`--batch` per call. The producer keeps the backlog (jobs enqueued minus handlers run) at
`--backlog`: it enqueues a batch whenever the backlog is below that, else waits 20 ms. So the
queue never empties and never grows: the jobs go in exactly as fast as the workers take them
out, whatever the machine's load does meanwhile (a fixed rate would drain or pile up on a
shared machine). The backlog is filled before the workers start.

With `--warmup M` the load runs M minutes before the clock starts: the table then starts the
run at the size it keeps under that load (dead rows of one autovacuum cycle), and minute 1 is
a minute of that steady state rather than the filling of an empty table.

Every `--interval` seconds the bench records: jobs enqueued (producer's counter), claimed and
processed (rows of the claim and outcome statements in pg_stat_statements), the mean claim
time over the interval (deltas of calls and total_exec_time of the claim statement), the
sizes of pgqueue.jobs (heap, every index, total), its n_live_tup, n_dead_tup and autovacuum
count (pg_stat_user_tables), WAL written (pg_current_wal_lsn() deltas, and pg_stat_wal), the
vacuums in progress, and the machine's load average. No count(*) over the table. Each sample
also times a fixed piece of server work (`SELECT sum(i) FROM generate_series(1, 200000)`, three
times): the reference. On a shared machine whose speed swings within minutes, the claim time
over the reference says whether the claim got dearer or the machine slower.

"Hot size" is the size of jobs_claim_order_idx, the index every claim walks (partial: queued
jobs only). With the default retention (finished jobs kept a day) the heap and the other
indexes grow with every finished job by design; they are reported beside it. With
`--retention 0` finished jobs are deleted at completion, so the heap itself holds only the
live rows and is compared too.

Results: bench/results/sustained.json (settings, every sample, per-minute figures), a markdown
table (sustained.md) and a chart (sustained.png, drawn by plot_sustained.py in the chart venv).
`--output` changes the JSON's path; the .md and .png go beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from benchlib import chart, db
from benchlib.proc import Worker

BENCH = Path(__file__).resolve().parent
APPS = BENCH / "apps"
DB = "bench_sustained"
TASK = "bench_tasks.noop"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
CLAIM_INDEX = "jobs_claim_order_idx"
# What is compared minute by minute with the first minute.
COMPARED = ("claim_ms", "claim_per_reference", "hot_bytes", "hot_used_bytes", "heap_bytes")
# A fixed piece of server work, timed at every sample: how fast the machine runs the server
# that moment. A shared machine's speed swings by 20 to 50% within minutes, and the claim
# time with it; the claim time over this reference says whether the claim itself got dearer.
REFERENCE_SQL = "SELECT sum(i) FROM generate_series(1, 200000) AS i"
REFERENCE_RUNS = 3
# The statements counted in pg_stat_statements, found by a phrase of their text.
# The plain claims (job_claim, and job_claim_queue for one queue): the statements that set
# jobs running (pg_stat_statements shows their constants as parameters).
CLAIM_SQL = "%started_at = coalesce($%::timestamptz, now())%"
FINISH_SQL = "%AS o(id bigint, attempt int, state text%"


class Cluster:
    """A throwaway PostgreSQL cluster in a temporary directory: initdb, start, stop, remove."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="pgqueue-sustained-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.started = False
        # initdb refuses to run as root: the cluster then belongs to the postgres user.
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres", "postgres")

    def start(self) -> str:
        self._run(
            [str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres",
             "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"]
        )  # fmt: skip
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# bench/sustained.py\n"
                "listen_addresses = '127.0.0.1'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.root}'\n"
                "shared_preload_libraries = 'pg_stat_statements'\n"
                "fsync = on\n"
                "autovacuum = on\n"
            )
        self._run(
            [str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-l",
             str(self.root / "server.log"), "-w", "-t", "120", "start"]
        )  # fmt: skip
        self.started = True
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        if self.started:
            with contextlib.suppress(RuntimeError):
                self._run(
                    [str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w",
                     "-t", "60", "stop"]
                )  # fmt: skip
            self.started = False
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return (self.root / "server.log").read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def _run(self, argv: list[str]) -> None:
        result = subprocess.run(
            [*self.as_user, *argv], capture_output=True, text=True, check=False, cwd=self.root
        )
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip()[-1500:]
            raise RuntimeError(f"{Path(argv[0]).name} failed: {detail}\n{self.log_tail()}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def handled(directory: Path) -> int:
    """Handlers run so far, from the workers' counter files (apps/progress_counter.py)."""
    total = 0
    for path in directory.glob("*.count"):
        data = path.read_bytes()
        if len(data) >= 8:
            total += int.from_bytes(data[:8], "little")
    return total


class Producer(threading.Thread):
    """Enqueues no-op jobs through App.enqueue_many whenever the backlog is below `target`."""

    def __init__(self, dsn: str, target: int, batch: int, progress: Path) -> None:
        super().__init__(daemon=True, name="producer")
        import pgqueue

        self.app = pgqueue.App(dsn)
        self.target, self.batch, self.progress = target, batch, progress
        self.enqueued = 0
        self.error: BaseException | None = None
        self.stopping = threading.Event()

    def backlog(self) -> int:
        return self.enqueued - handled(self.progress)

    def fill(self) -> None:
        while self.enqueued < self.target:
            self.enqueue_batch()

    def enqueue_batch(self) -> None:
        low = self.enqueued
        self.app.enqueue_many([{"task": TASK, "args": [i]} for i in range(low, low + self.batch)])
        self.enqueued += self.batch

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                if self.backlog() >= self.target:
                    self.stopping.wait(0.02)
                else:
                    self.enqueue_batch()
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self.stopping.set()
        self.join(30)
        self.app.close()


def migrate(dsn: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pgqueue.cli", "migrate", "--dsn", dsn],
        check=True,
        capture_output=True,
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.execute("CREATE EXTENSION IF NOT EXISTS pgstattuple")


def set_retention(dsn: str, seconds: float) -> None:
    import pgqueue

    app = pgqueue.App(dsn)
    try:
        app.set_queue_retention("default", succeeded=seconds)
    finally:
        app.close()


def sample(conn: psycopg.Connection[Any], t: float, producer: Producer) -> dict[str, Any]:
    """One reading of every counter and size (see the module docstring)."""
    s: dict[str, Any] = {"t": round(t, 2), "enqueued": producer.enqueued}
    s["load_1m"] = round(os.getloadavg()[0], 2)
    began = time.perf_counter()
    for _ in range(REFERENCE_RUNS):
        conn.execute(REFERENCE_SQL).fetchone()
    s["reference_ms"] = round((time.perf_counter() - began) * 1000 / REFERENCE_RUNS, 3)
    conn.execute("SELECT pg_stat_clear_snapshot()")
    for key, pattern in (("claim", CLAIM_SQL), ("finish", FINISH_SQL)):
        row = conn.execute(
            "SELECT coalesce(sum(calls), 0)::bigint, coalesce(sum(total_exec_time), 0)::float8,"
            " coalesce(sum(rows), 0)::bigint FROM pg_stat_statements"
            " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND query LIKE %s",
            (pattern,),
        ).fetchone()
        assert row is not None
        s[f"{key}_calls"], s[f"{key}_ms"], s[f"{key}_rows"] = row
    s["claimed"], s["processed"] = s["claim_rows"], s["finish_rows"]
    s["backlog"] = s["enqueued"] - s["claimed"]
    s["running"] = s["claimed"] - s["processed"]
    row = conn.execute(
        "SELECT pg_relation_size('pgqueue.jobs'), pg_indexes_size('pgqueue.jobs'),"
        " pg_total_relation_size('pgqueue.jobs')"
    ).fetchone()
    assert row is not None
    s["heap_bytes"], s["indexes_bytes"], s["total_bytes"] = row
    s["index_bytes"] = dict(
        conn.execute(
            "SELECT c.relname::text, pg_relation_size(c.oid) FROM pg_index AS i"
            " JOIN pg_class AS c ON c.oid = i.indexrelid"
            " WHERE i.indrelid = 'pgqueue.jobs'::regclass ORDER BY 1"
        ).fetchall()
    )
    s["hot_bytes"] = s["index_bytes"].get(CLAIM_INDEX, 0)
    # What of the claim index is in use: the file never shrinks, pages emptied by a vacuum
    # are reused later. pgstatindex reads the whole index, so it is timed.
    began = time.perf_counter()
    row = conn.execute(
        "SELECT internal_pages, leaf_pages, empty_pages, deleted_pages, avg_leaf_density"
        " FROM pgstatindex(%s)",
        (f"pgqueue.{CLAIM_INDEX}",),
    ).fetchone()
    s["pgstatindex_ms"] = round((time.perf_counter() - began) * 1000, 1)
    assert row is not None
    s["hot_used_bytes"] = (row[0] + row[1] + 1) * 8192
    s["hot_leaf_pages"], s["hot_empty_pages"], s["hot_deleted_pages"] = row[1:4]
    s["hot_leaf_density"] = float(row[4])
    row = conn.execute(
        "SELECT n_live_tup, n_dead_tup, autovacuum_count, autoanalyze_count, n_tup_ins,"
        " n_tup_upd, n_tup_hot_upd, n_tup_del, last_autovacuum::text"
        " FROM pg_stat_user_tables WHERE relid = 'pgqueue.jobs'::regclass"
    ).fetchone()
    assert row is not None
    (s["live_tup"], s["dead_tup"], s["autovacuums"], s["autoanalyzes"], s["tup_ins"],
     s["tup_upd"], s["tup_hot_upd"], s["tup_del"], s["last_autovacuum"]) = row  # fmt: skip
    row = conn.execute(
        "SELECT coalesce(sum(autovacuum_count), 0)::bigint FROM pg_stat_user_tables"
        " WHERE schemaname = 'pgqueue'"
    ).fetchone()
    s["autovacuums_schema"] = row[0] if row else 0
    row = conn.execute(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint, w.wal_records,"
        " w.wal_fpi, w.wal_bytes::bigint, b.checkpoints_timed, b.checkpoints_req"
        " FROM pg_stat_wal AS w, pg_stat_bgwriter AS b"
    ).fetchone()
    assert row is not None
    (s["wal_lsn"], s["wal_records"], s["wal_fpi"], s["wal_bytes"], s["checkpoints_timed"],
     s["checkpoints_req"]) = row  # fmt: skip
    s["vacuuming"] = [
        f"{r[0]}: {r[1]}"
        for r in conn.execute(
            "SELECT relid::regclass::text, phase FROM pg_stat_progress_vacuum"
            " WHERE datname = current_database()"
        ).fetchall()
    ]
    return s


def ratio(value: float | None, first: float | None) -> float | None:
    if value is None or not first:
        return None
    return round(value / first, 3)


def per_minute(samples: list[dict[str, Any]], interval: float) -> list[dict[str, Any]]:
    """Figures for each whole minute since the clock started: rates and the claim mean from
    the deltas across the minute, sizes as the mean of the minute's samples."""
    per = max(1, round(60 / interval))
    minutes = []
    for m in range(1, (len(samples) - 1) // per + 1):
        a, b = samples[(m - 1) * per], samples[m * per]
        inside = samples[(m - 1) * per + 1 : m * per + 1]
        seconds = b["t"] - a["t"]
        calls = b["claim_calls"] - a["claim_calls"]
        processed = b["processed"] - a["processed"]

        def mean(key: str, inside: list[dict[str, Any]] = inside) -> float:
            return sum(s[key] for s in inside) / len(inside)

        claim_ms = round((b["claim_ms"] - a["claim_ms"]) / calls, 3) if calls else None
        # (Runs recorded before the reference was sampled have none.)
        reference = mean("reference_ms") if all("reference_ms" in s for s in inside) else None

        minutes.append(
            {
                "minute": m,
                "enqueued_per_s": round((b["enqueued"] - a["enqueued"]) / seconds),
                "processed_per_s": round(processed / seconds),
                "backlog": round(mean("backlog")),
                "claim_ms": claim_ms,
                "reference_ms": None if reference is None else round(reference, 2),
                "claim_per_reference": round(claim_ms / reference, 4)
                if claim_ms is not None and reference
                else None,
                "claims": calls,
                "jobs_per_claim": round((b["claimed"] - a["claimed"]) / calls, 1)
                if calls
                else None,
                "hot_bytes": round(mean("hot_bytes")),
                "hot_used_bytes": round(mean("hot_used_bytes")),
                "heap_bytes": round(mean("heap_bytes")),
                "indexes_bytes": round(mean("indexes_bytes")),
                "total_bytes": round(mean("total_bytes")),
                "dead_tup": round(mean("dead_tup")),
                "autovacuums": b["autovacuums"] - a["autovacuums"],
                "wal_bytes": b["wal_lsn"] - a["wal_lsn"],
                "wal_per_job": round((b["wal_lsn"] - a["wal_lsn"]) / processed)
                if processed
                else None,
                "load_1m": round(mean("load_1m"), 2),
            }
        )
    # Minute 1 starts from a freshly vacuumed table; the first autovacuum comes a naptime
    # later. So each later minute is also compared with the first minute that began after an
    # autovacuum of pgqueue.jobs had ended (the steady state: a vacuum cycle every minute or so).
    steady = next((m for m in minutes if samples[(m["minute"] - 1) * per]["autovacuums"] > 0), None)
    for first, suffix in ((minutes[0] if minutes else None, ""), (steady, "_steady")):
        if first is None:
            continue
        for row in minutes[first["minute"] - 1 :]:
            for key in COMPARED:
                if first.get(key) is None:
                    continue  # not recorded in this run (an older run's JSON)
                r = ratio(row[key], first[key])
                row[f"{key}_ratio{suffix}"] = r
                row[f"{key}_within{suffix}"] = r is not None and 0.8 <= r <= 1.2
    return minutes


def outside(minutes: list[dict[str, Any]], key: str, suffix: str) -> list[int] | None:
    """The minutes after the reference minute whose `key` is beyond ±20% of it."""
    flagged = [m for m in minutes if f"{key}_within{suffix}" in m]
    if not flagged:
        return None
    return [m["minute"] for m in flagged[1:] if not m[f"{key}_within{suffix}"]]


def summarize(samples: list[dict[str, Any]], minutes: list[dict[str, Any]]) -> dict[str, Any]:
    a, b = samples[0], samples[-1]
    processed = b["processed"] - a["processed"]
    steady = next((m["minute"] for m in minutes if "claim_ms_ratio_steady" in m), None)
    return {
        "seconds": round(b["t"] - a["t"], 1),
        "enqueued": b["enqueued"] - a["enqueued"],
        "processed": processed,
        "processed_per_s": round(processed / (b["t"] - a["t"])) if b["t"] > a["t"] else None,
        "wal_bytes": b["wal_lsn"] - a["wal_lsn"],
        "wal_bytes_per_job": round((b["wal_lsn"] - a["wal_lsn"]) / processed)
        if processed
        else None,
        "wal_fpi_per_job": round((b["wal_fpi"] - a["wal_fpi"]) / processed, 3)
        if processed
        else None,
        "wal_records_per_job": round((b["wal_records"] - a["wal_records"]) / processed, 2)
        if processed
        else None,
        "autovacuums_jobs": b["autovacuums"] - a["autovacuums"],
        "autovacuums_schema": b["autovacuums_schema"] - a["autovacuums_schema"],
        "checkpoints": (b["checkpoints_timed"] + b["checkpoints_req"])
        - (a["checkpoints_timed"] + a["checkpoints_req"]),
        "outside_first_minute": {key: outside(minutes, key, "") for key in COMPARED},
        "steady_minute": steady,
        "outside_steady_minute": {key: outside(minutes, key, "_steady") for key in COMPARED},
        "load_1m_mean": round(sum(s["load_1m"] for s in samples) / len(samples), 2),
    }


def markdown(result: dict[str, Any]) -> str:
    meta, summary = result["meta"], result["summary"]
    mb = 1024 * 1024
    lines = [
        f"Sustained run: {summary['seconds'] / 60:.1f} min, {meta['workers']} worker(s) x "
        f"concurrency {meta['concurrency']}, backlog kept at {meta['backlog']:,}, "
        f"retention of succeeded jobs: {meta['retention']}; server {meta['server_version']}, "
        f"autovacuum {meta['settings'].get('autovacuum')}.",
        "",
        "| min | enq/s | done/s | backlog | claim ms | x min 1 | ref ms | claim/ref x min 1 "
        "| claim idx MB | x min 1 "
        "| in use MB | x min 1 "
        "| heap MB | x min 1 | all idx MB | total MB | dead tup | autovac | WAL MB | WAL B/job "
        "| load |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:"
        "|---:|---:|---:|---:|",
    ]

    def flag(row: dict[str, Any], key: str) -> str:
        r = row.get(f"{key}_ratio")
        if r is None:
            return "-"
        return f"{r:.2f}" + ("" if row[f"{key}_within"] else " **out**")

    for row in result["minutes"]:
        claim = "-" if row["claim_ms"] is None else f"{row['claim_ms']:.2f}"
        lines.append(
            f"| {row['minute']} | {row['enqueued_per_s']:,} | {row['processed_per_s']:,} "
            f"| {row['backlog']:,} | {claim} | {flag(row, 'claim_ms')} "
            f"| {row.get('reference_ms') or '-'} | {flag(row, 'claim_per_reference')} "
            f"| {row['hot_bytes'] / mb:.2f} | {flag(row, 'hot_bytes')} "
            f"| {row['hot_used_bytes'] / mb:.2f} | {flag(row, 'hot_used_bytes')} "
            f"| {row['heap_bytes'] / mb:.1f} | {flag(row, 'heap_bytes')} "
            f"| {row['indexes_bytes'] / mb:.1f} | {row['total_bytes'] / mb:.1f} "
            f"| {row['dead_tup']:,} | {row['autovacuums']} | {row['wal_bytes'] / mb:.1f} "
            f"| {row['wal_per_job'] or '-'} | {row['load_1m']:.1f} |"
        )
    lines += [
        "",
        f"Jobs processed: {summary['processed']:,} ({summary['processed_per_s']:,}/s); WAL "
        f"{summary['wal_bytes'] / mb:,.0f} MB, **{summary['wal_bytes_per_job']:,} bytes per "
        f"job** ({summary['wal_records_per_job']} records, {summary['wal_fpi_per_job']} full "
        f"page images per job); autovacuums of pgqueue.jobs: {summary['autovacuums_jobs']} "
        f"(all pgqueue tables: {summary['autovacuums_schema']}); checkpoints: "
        f"{summary['checkpoints']}; mean load average {summary['load_1m_mean']}.",
        "",
    ]
    names = {"claim_ms": "claim time", "claim_per_reference": "claim time over the reference",
             "hot_bytes": "claim index file",
             "hot_used_bytes": "claim index pages in use", "heap_bytes": "heap"}  # fmt: skip
    for title, key in (("minute 1", "outside_first_minute"),
                       (f"minute {summary['steady_minute']}, the first after an autovacuum",
                        "outside_steady_minute")):  # fmt: skip
        found = summary[key]
        said = [f"{names[k]} {v or 'none'}" for k, v in found.items() if v is not None]
        lines.append(f"Minutes outside ±20% of {title}: " + ("; ".join(said) or "-") + ".")
    lines.append("")
    return "\n".join(lines)


@contextlib.contextmanager
def terminated_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the workers and the cluster are always cleaned up."""

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace, server: str, progress: Path) -> dict[str, Any]:
    dsn = db.recreate_database(server, DB)
    migrate(dsn)
    settings = db.server_settings(server)
    if settings.get("autovacuum") != "on":
        print("note: this server has autovacuum off: the run says nothing about autovacuum")
    if args.retention is not None:
        set_retention(dsn, args.retention)
    producer = Producer(dsn, args.backlog, args.batch, progress)
    producer.fill()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE pgqueue.jobs")
    env = {**os.environ, "PGQUEUE_DSN": dsn, "PYTHONPATH": str(APPS),
           "BENCH_PROGRESS_DIR": str(progress)}  # fmt: skip
    logs = args.output.parent / "logs"
    argv = [sys.executable, "-m", "pgqueue.cli", "work", "bench_tasks:app",
            "--concurrency", str(args.concurrency), "--log-level", "WARNING"]  # fmt: skip
    samples: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        workers = [
            stack.enter_context(Worker(argv, env, BENCH, logs / f"sustained-worker-{i}.log"))
            for i in range(args.workers)
        ]
        with psycopg.connect(dsn, autocommit=True) as conn:
            while conn.execute("SELECT count(*) FROM pgqueue.workers").fetchone() != (
                args.workers,
            ):
                if not all(w.alive() for w in workers):
                    raise RuntimeError(f"worker exited: {workers[0].log_tail()}")
                time.sleep(0.05)
            producer.start()
            stack.callback(producer.stop)
            warm_until = time.monotonic() + args.warmup * 60
            if args.warmup:
                print(f"warming up {args.warmup:g} min (not sampled)", flush=True)
            while time.monotonic() < warm_until:
                time.sleep(min(5.0, max(0.0, warm_until - time.monotonic())))
                if producer.error is not None:
                    raise RuntimeError(f"producer failed: {producer.error!r}")
                if not all(w.alive() for w in workers):
                    raise RuntimeError(f"worker exited: {workers[0].log_tail()}")
            started = time.monotonic()
            started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            duration = args.minutes * 60
            print(f"running {args.minutes:g} min; a line every {args.interval:g} s", flush=True)
            for tick in range(int(duration / args.interval) + 1):
                time.sleep(max(0.0, started + tick * args.interval - time.monotonic()))
                s = sample(conn, time.monotonic() - started, producer)
                samples.append(s)
                print(
                    f"{s['t']:7.0f}s enq {s['enqueued']:>9,} done {s['processed']:>9,} "
                    f"backlog {s['backlog']:>6,} claim idx {s['hot_bytes'] / 1e6:6.2f} MB "
                    f"(used {s['hot_used_bytes'] / 1e6:6.2f}) "
                    f"heap {s['heap_bytes'] / 1e6:7.1f} MB dead {s['dead_tup']:>8,} "
                    f"autovac {s['autovacuums']} load {s['load_1m']:.1f} "
                    f"{' '.join(s['vacuuming'])}",
                    flush=True,
                )
                if producer.error is not None:
                    raise RuntimeError(f"producer failed: {producer.error!r}")
                if not all(w.alive() for w in workers):
                    raise RuntimeError(f"worker exited: {workers[0].log_tail()}")
    minutes = per_minute(samples, args.interval)
    return {
        "meta": {
            "minutes": args.minutes,
            "warmup_minutes": args.warmup,
            "interval": args.interval,
            "workers": args.workers,
            "concurrency": args.concurrency,
            "backlog": args.backlog,
            "batch": args.batch,
            "retention": "1 day (default)" if args.retention is None else f"{args.retention} s",
            "server": "own cluster (initdb)" if args.dsn is None else "--dsn",
            "server_version": db.server_version(server),
            "settings": settings,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "git": git_state(),
            "started_at": started_at,
        },
        "summary": summarize(samples, minutes),
        "minutes": minutes,
        "samples": samples,
    }


def git_state() -> str:
    out = subprocess.run(
        ["git", "describe", "--always", "--dirty"],
        cwd=BENCH,
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip()


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dsn", help="an existing server (autovacuum on!) instead of a cluster")
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument(
        "--warmup",
        type=float,
        default=0.0,
        help="minutes at full speed before the clock starts (not sampled)",
    )
    p.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    p.add_argument("--workers", type=int, default=2, help="pgqueue work processes")
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--backlog", type=int, default=10_000, help="jobs kept waiting")
    p.add_argument("--batch", type=int, default=500, help="jobs per enqueue_many call")
    p.add_argument(
        "--retention", type=float, help="seconds succeeded jobs are kept (default: 1 day)"
    )
    p.add_argument("--output", type=Path, default=BENCH / "results" / "sustained.json")
    p.add_argument("--no-chart", action="store_true")
    p.add_argument(
        "--from-json", type=Path, help="no run: recompute the tables and chart of a saved run"
    )
    args = p.parse_args(argv)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    if args.from_json:
        result = json.loads(args.from_json.read_text())
        result["minutes"] = per_minute(result["samples"], result["meta"]["interval"])
        result["summary"] = summarize(result["samples"], result["minutes"])
        return write(result, args)
    cluster = None if args.dsn else Cluster(PG_BIN)
    with terminated_as_interrupt(), tempfile.TemporaryDirectory() as progress:
        try:
            server = args.dsn if cluster is None else cluster.start()
            result = run(args, server, Path(progress))
            if args.dsn:
                db.drop_database(server, DB)
        finally:
            if cluster is not None:
                cluster.stop()
    return write(result, args)


def write(result: dict[str, Any], args: argparse.Namespace) -> int:
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    md = markdown(result)
    args.output.with_suffix(".md").write_text(md)
    print(md)
    if not args.no_chart:
        chart.draw(BENCH, args.output, args.output.with_suffix(".png"), "plot_sustained.py")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
