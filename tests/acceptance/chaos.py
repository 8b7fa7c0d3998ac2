"""A PostgreSQL server a test owns (it can restart it), and process helpers for fault tests."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psycopg

from pgqueue import migrate


class OwnServer:
    """An embedded PostgreSQL (pgserver's binaries) in a temporary directory."""

    def __init__(self, pgdata: Path) -> None:
        import pgserver  # type: ignore[import-untyped]

        self.pgdata = pgdata
        self.server = pgserver.get_server(pgdata, cleanup_mode="stop")
        self.dsn = self.server.get_uri()

    def restart(self) -> None:
        """Stop (fast: connections are cut) and start again, on the same socket."""
        from pgserver._commands import pg_ctl  # type: ignore[import-untyped]

        pg_ctl(
            ["-w", "-m", "fast", "restart"],
            pgdata=self.pgdata,
            user=self.server.system_user,
            timeout=60,
        )

    def restart_stopped(self) -> None:
        """Start a server that was stopped, on the same socket (pgserver's options)."""
        from pgserver._commands import pg_ctl  # type: ignore[import-untyped]

        socket_dir = psycopg.conninfo.conninfo_to_dict(self.dsn)["host"]
        pg_ctl(
            [
                "-w",
                "-o",
                '-h ""',
                "-o",
                f"-k {socket_dir}",
                "-l",
                str(self.pgdata / "log"),
                "start",
            ],
            pgdata=self.pgdata,
            user=self.server.system_user,
            timeout=60,
        )

    def stop(self) -> None:
        from pgserver._commands import pg_ctl  # type: ignore[import-untyped]

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self.server.system_user)

    def close(self) -> None:
        self.server.cleanup()


@contextlib.contextmanager
def own_server() -> Iterator[OwnServer]:
    with tempfile.TemporaryDirectory(prefix="pgq-chaos-") as tmp:
        server = OwnServer(Path(tmp) / "pgdata")
        try:
            migrate.upgrade(server.dsn)
            with psycopg.connect(server.dsn, autocommit=True) as conn:
                conn.execute(
                    "CREATE TABLE public.effects (job_id bigint, attempt int, pid int, "
                    "at timestamptz DEFAULT clock_timestamp(), note text)"
                )
            yield server
        finally:
            server.close()


def children_of(pid: int) -> list[int]:
    """Live child processes of `pid` (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces: fields after the closing parenthesis are fixed.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry))
    return out


def wait_registered(dsn: str, procs: list[subprocess.Popen[bytes]], timeout: float = 60) -> None:
    """Wait until each running process of `procs` is a registered worker (pgqueue.workers
    has its pid): by then its signal handlers are in place."""
    deadline = time.monotonic() + timeout
    while True:
        pids = {row[0] for row in query(dsn, "SELECT pid FROM pgqueue.workers")}
        waiting = [p.pid for p in procs if p.poll() is None and p.pid not in pids]
        if not waiting:
            return
        assert time.monotonic() < deadline, f"workers {waiting} did not register in {timeout}s"
        time.sleep(0.05)


def query(dsn: str, sql: str) -> list[Any]:
    """A fresh connection each time: the server restarts under our feet."""
    for _ in range(100):
        try:
            with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
                return conn.execute(sql).fetchall()
        except psycopg.OperationalError:
            time.sleep(0.2)
    raise AssertionError("database did not come back")


Start = Callable[..., "subprocess.Popen[bytes]"]


@dataclass
class ChaosRun:
    kills: int
    restarts: int
    took: float
    codes: list[int]
    output: str


def kill_and_restart(
    server: OwnServer,
    start: Start,
    log_path: Path,
    jobs: int,
    kill_at: list[float],
    restart_at: float,
    rng: random.Random,
) -> ChaosRun:
    """Run a supervisor of two processes and two single workers until `jobs` jobs have
    succeeded, SIGKILLing a random one each time progress passes a fraction of `kill_at`
    (a killed single worker is started again) and restarting PostgreSQL once at
    `restart_at`. Kills are paced by progress, not by the clock, so a fast machine gets as
    many. Then SIGTERM for all; their exit codes and the workers' log come back."""
    dsn = server.dsn
    log: IO[bytes] = open(log_path, "wb")  # noqa: SIM115
    supervisor = start(dsn, log, "--processes", "2")
    singles = [start(dsn, log), start(dsn, log)]
    kills = restarts = 0
    thresholds = [int(jobs * f) for f in kill_at]
    t0 = time.monotonic()
    try:
        while True:
            done = query(dsn, "SELECT count(*) FROM pgqueue.jobs WHERE state = 'succeeded'")[0][0]
            if done == jobs:
                break
            assert time.monotonic() - t0 < 240, f"stuck at {done}/{jobs}"
            if not restarts and done >= jobs * restart_at:
                server.restart()
                restarts += 1
            if thresholds and done >= thresholds[0]:
                thresholds.pop(0)
                victims = [("child", pid) for pid in children_of(supervisor.pid)]
                victims += [("single", i) for i in range(len(singles))]
                kind, which = rng.choice(victims)
                if kind == "child":
                    os.kill(which, signal.SIGKILL)
                else:
                    singles[which].send_signal(signal.SIGKILL)
                    singles[which].wait(10)
                    singles[which] = start(dsn, log)
                kills += 1
            time.sleep(0.1)
        took = time.monotonic() - t0
        # A single started again near the end may still be starting up: SIGTERM then kills
        # it before it handles signals (exit -15). Stop it once it has registered.
        wait_registered(dsn, singles)
        for proc in [supervisor, *singles]:
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(60) for proc in [supervisor, *singles]]
    finally:
        for proc in [supervisor, *singles]:
            if proc.poll() is None:
                proc.kill()
        for pid in children_of(supervisor.pid):
            os.kill(pid, signal.SIGKILL)
        log.close()
    return ChaosRun(kills, restarts, took, codes, log_path.read_text(errors="replace"))
