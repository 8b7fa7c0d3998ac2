"""pgqueue through a real pgbouncer in transaction pooling mode, at most 20 server connections:
threaded producers, 100 worker processes, a worker that polls for want of a listen DSN, and a
worker killed with SIGKILL.

The tests run their own PostgreSQL (pgserver's binaries), with room for the 100 workers'
direct LISTEN connections beside the pooler's 20: the shared test server allows 100 in all,
and other test files use it at the same time. They start their own pgbouncer against it and
skip when no pgbouncer is installed (Debian: `apt-get install pgbouncer`)."""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pgqueue
from pgqueue import migrate
from pgqueue.testing.database import reset_database
from tests.acceptance.chaos import OwnServer
from tests.acceptance.conftest import ROOT, pgqueue_cmd
from tests.waiting import wait_for


def _pgbouncer() -> str | None:
    found = shutil.which("pgbouncer")
    if found:
        return found
    for path in ("/usr/sbin/pgbouncer", "/usr/local/sbin/pgbouncer"):
        if os.access(path, os.X_OK):
            return path
    return None


PGBOUNCER = _pgbouncer()
pytestmark = pytest.mark.skipif(
    PGBOUNCER is None, reason="pgbouncer is not installed (Debian: apt-get install pgbouncer)"
)

SERVER_CONNECTIONS = 20  # the pooler's limit (default_pool_size and max_db_connections)
POOLED_ROLE = "pgq_pooled"  # the role the pooler logs in as: its server connections are its
WORKERS = 100
JOBS = 2000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Pgbouncer:
    """A pgbouncer of our own, pool_mode = transaction, in front of the server."""

    def __init__(self, directory: Path, server_dsn: str, user: str | None) -> None:
        self.directory = directory
        self.user = user  # run as (pgbouncer refuses to run as root)
        info = psycopg.conninfo.conninfo_to_dict(server_dsn)
        self.server = info
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.log_path = directory / "pgbouncer.log"

    def _write_config(self) -> Path:
        host = self.server.get("host") or "127.0.0.1"
        port = self.server.get("port") or 5432
        dbname = self.server.get("dbname") or "postgres"
        config = self.directory / "pgbouncer.ini"
        users = self.directory / "users.txt"
        users.write_text('"postgres" ""\n')
        config.write_text(
            "[databases]\n"
            f"pgq = host={host} port={port} dbname={dbname} user={POOLED_ROLE}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {users}\n"
            "admin_users = postgres\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {SERVER_CONNECTIONS}\n"
            f"max_db_connections = {SERVER_CONNECTIONS}\n"
            "reserve_pool_size = 0\n"
            "max_client_conn = 2000\n"
            "server_login_retry = 1\n"
        )
        for path in (self.directory, config, users):
            path.chmod(0o755 if path.is_dir() else 0o644)
        return config

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/pgq"

    def start(self) -> None:
        assert PGBOUNCER is not None
        for _ in range(5):  # another process may take the free port first
            self.port = _free_port()
            config = self._write_config()
            user = ["-u", self.user or _unprivileged_user()] if os.geteuid() == 0 else []
            log = open(self.log_path, "ab")  # noqa: SIM115 - kept by the process
            self.proc = subprocess.Popen([PGBOUNCER, *user, str(config)], stdout=log, stderr=log)
            log.close()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    psycopg.connect(self.dsn, connect_timeout=2).close()
                    return
                except psycopg.OperationalError:
                    time.sleep(0.05)
            self.stop()
        raise AssertionError(f"pgbouncer did not start:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


def _unprivileged_user() -> str:
    for name in ("postgres", "pgserver", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise AssertionError("no unprivileged user to run pgbouncer as")


@dataclass
class Stack:
    direct: str  # PostgreSQL itself: LISTEN, and the test's own checks
    pooled: str  # through pgbouncer, transaction mode
    pooler: Pgbouncer


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with tempfile.TemporaryDirectory(prefix="pgq-bouncer-") as tmp:
        server = OwnServer(Path(tmp) / "pgdata")
        # As root, the server runs as an unprivileged user of pgserver's, and pgbouncer as
        # the same one (the server's socket is in its data directory).
        pooler = Pgbouncer(Path(tmp) / "pgbouncer", server.dsn, server.server.system_user)
        try:
            with psycopg.connect(server.dsn, autocommit=True) as conn:
                conn.execute("ALTER SYSTEM SET max_connections = 300")
            server.restart()
            migrate.upgrade(server.dsn)
            with psycopg.connect(server.dsn, autocommit=True) as conn:
                conn.execute(f"CREATE ROLE {POOLED_ROLE} LOGIN SUPERUSER")
                conn.execute(
                    "CREATE TABLE public.effects (job_id bigint, attempt int, pid int, "
                    "at timestamptz DEFAULT clock_timestamp(), note text)"
                )
            pooler.directory.mkdir()
            pooler.start()
            yield Stack(server.dsn, pooler.dsn, pooler)
        finally:
            pooler.stop()
            server.close()


@pytest.fixture
def direct(stack: Stack) -> Iterator[psycopg.Connection[Any]]:
    """The stack's database, emptied, and a direct connection to look at it."""
    reset_database(stack.direct)
    with psycopg.connect(stack.direct, autocommit=True) as conn:
        conn.execute("TRUNCATE public.effects")
        yield conn


class ServerConnections:
    """Samples how many server connections the pooler holds; `most` is the peak."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.most = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self._stop.wait(0.1):
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (POOLED_ROLE,)
                ).fetchone()
                self.most = max(self.most, row[0] if row else 0)

    def __enter__(self) -> ServerConnections:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


class Workers:
    """`pgqueue work tests.jobs:app ...` through the pooler, in a process group of its own
    (with --processes, the supervisor and its children)."""

    def __init__(self, stack: Stack, log: Path, *args: str, env: dict[str, str] | None = None):
        self.log_path = log
        env = {
            **os.environ,
            "PGQUEUE_DSN": stack.pooled,  # the handlers' own connections go through it too
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                pgqueue_cmd("work", "tests.jobs:app", *args),
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM (the supervisor passes it on); the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        """SIGKILL to whatever is left of the group."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)


def session_state(stack: Stack) -> set[tuple[int, str, int]]:
    """What the pooler's server connections carry from one transaction to the next, once
    every worker is gone: (prepared statements, plan_cache_mode, advisory locks held on the
    server) seen on each of them, all held at once. With no transaction left running, any
    advisory lock would be a session's."""
    conns = [psycopg.connect(stack.pooled) for _ in range(SERVER_CONNECTIONS)]
    try:
        seen = set()
        for conn in conns:  # each in a transaction: each on a server connection of its own
            row = conn.execute(
                "SELECT (SELECT count(*) FROM pg_prepared_statements), "
                "current_setting('plan_cache_mode'), "
                "(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory')"
            ).fetchone()
            assert row is not None
            seen.add((int(row[0]), str(row[1]), int(row[2])))
        return seen
    finally:
        for conn in conns:
            conn.close()


def listening(conn: psycopg.Connection[Any]) -> int:
    """Direct connections that LISTEN for jobs (the pooler's role never does)."""
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE usename <> %s AND (query LIKE 'LISTEN pgqueue_jobs%%'"
        "  OR query = 'SELECT 1 AS listener_check')",  # its check after a quiet spell
        (POOLED_ROLE,),
    ).fetchone()
    return int(row[0]) if row else 0


def registered(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM pgqueue.workers").fetchone()
    return int(row[0]) if row else 0


def stuck(conn: psycopg.Connection[Any], workers: Workers) -> str:
    """Where the workers' start-up stands, for a test that gave up waiting on it."""
    activity = conn.execute(
        "SELECT usename, state, wait_event_type, wait_event, left(query, 60), count(*) "
        "FROM pg_stat_activity WHERE backend_type = 'client backend' "
        "GROUP BY 1, 2, 3, 4, 5 ORDER BY 6 DESC LIMIT 15"
    ).fetchall()
    lines = workers.output().splitlines()
    return (
        f"{registered(conn)} registered, {listening(conn)} listening; server backends: "
        f"{activity}; the workers' log ({len(lines)} lines) ends:\n" + "\n".join(lines[-40:])
    )


def troubles(output: str) -> list[str]:
    """Log lines that say something went wrong."""
    return [
        line
        for line in output.splitlines()
        if any(word in line for word in ("WARNING", "ERROR", "Traceback", "rror:"))
    ]


def states(conn: psycopg.Connection[Any]) -> dict[str, int]:
    rows = conn.execute("SELECT state::text, count(*) FROM pgqueue.jobs GROUP BY 1").fetchall()
    return {state: count for state, count in rows}


def test_threaded_producers_through_the_pooler(stack, direct):
    """1,000 enqueues from 20 threads on one App, 200 through SQLAlchemy sessions in threads,
    200 from asyncio tasks: each is one job, and none fails."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    app = pgqueue.App(stack.pooled, pooler=True, pool_size=8)
    errors: list[BaseException] = []

    def enqueue(i: int) -> int | None:
        try:
            return app.enqueue("add", args=[i, i])
        except BaseException as exc:
            errors.append(exc)
            return None

    # psycopg prepares nothing when told so (a pooled connection's next transaction may run
    # on another server session), which is how a SQLAlchemy engine goes through the pooler.
    engine = create_engine(
        stack.pooled.replace("postgresql://", "postgresql+psycopg://"),
        connect_args={"prepare_threshold": None},
        pool_size=8,
    )

    def enqueue_in_session(i: int) -> int | None:
        try:
            with Session(engine) as session, session.begin():
                return app.enqueue("add", args=[i, 0], conn=session)
        except BaseException as exc:
            errors.append(exc)
            return None

    async def enqueue_async() -> list[int]:
        try:
            return await asyncio.gather(
                *(app.enqueue_async("add", args=[i, 1]) for i in range(200))
            )
        finally:
            await app.aclose()

    try:
        with ThreadPoolExecutor(20) as threads:
            ids = list(threads.map(enqueue, range(1000)))
            ids += list(threads.map(enqueue_in_session, range(200)))
        ids += asyncio.run(enqueue_async())
    finally:
        app.close()
        engine.dispose()
    assert errors == []
    assert None not in ids and len(set(ids)) == 1400
    assert states(direct) == {"queued": 1400}


# 100 Python processes to start (about 0.4 s of CPU each) on two cores that three other test
# processes share: 54 s beside three busy loops, 140 s and more in a full parallel test run.
@pytest.mark.timeout(480)
def test_a_hundred_workers_through_the_pooler(stack, direct, tmp_path):
    """100 worker processes through the pooler (20 server connections), LISTEN over direct
    connections: every job succeeds at its first attempt, runs once, and nothing is lost."""
    workers = Workers(
        stack,
        tmp_path / "workers.log",
        "--processes", str(WORKERS),
        "--concurrency", "2",
        "--dsn", stack.pooled,
        "--listen-dsn", stack.direct,
    )  # fmt: skip
    started = time.monotonic()
    try:
        with ServerConnections(stack.direct) as sampled:
            wait_for(
                lambda: registered(direct) == WORKERS,
                timeout=300,
                interval=0.2,
                describe=lambda: stuck(direct, workers),
            )
            # Each listens over a direct connection (after registering).
            wait_for(
                lambda: listening(direct) == WORKERS,
                timeout=60,
                interval=0.2,
                describe=lambda: stuck(direct, workers),
            )
            up = time.monotonic()
            app = pgqueue.App(stack.pooled, pooler=True)
            try:
                app.enqueue_many([{"task": "work_item", "args": [i]} for i in range(JOBS)])
            finally:
                app.close()
            wait_for(lambda: states(direct).get("succeeded", 0) == JOBS, timeout=120, interval=0.2)
            done = time.monotonic()
        assert workers.stop() == 0
    finally:
        workers.kill()
    output = workers.output()
    assert troubles(output) == []
    assert states(direct) == {"succeeded": JOBS}
    assert direct.execute("SELECT max(attempts), min(attempts) FROM pgqueue.jobs").fetchone() == (
        1,
        1,
    )
    runs = direct.execute(
        "SELECT count(*), count(DISTINCT job_id), count(DISTINCT pid) FROM public.effects"
    ).fetchone()
    assert runs[:2] == (JOBS, JOBS)  # every job ran, and ran once
    assert sampled.most <= SERVER_CONNECTIONS
    assert session_state(stack) == {(0, "auto", 0)}
    print(
        f"\n{WORKERS} workers up in {up - started:.1f}s; {JOBS} jobs in {done - up:.1f}s "
        f"on {runs[2]} processes; at most {sampled.most} server connections"
    )


def test_without_a_listen_dsn_the_worker_polls(stack, direct, tmp_path):
    """Told the DSN is a pooler (here by PGQUEUE_POOLER) and given no listen DSN, the worker
    says once that it polls, and does."""
    workers = Workers(
        stack,
        tmp_path / "worker.log",
        "--poll-interval", "0.3",
        env={"PGQUEUE_POOLER": "1"},
    )  # fmt: skip
    try:
        wait_for(lambda: "started" in workers.output(), timeout=30)
        app = pgqueue.App(stack.pooled, pooler=True)
        try:
            for i in range(50):
                app.enqueue("work_item", args=[i])
        finally:
            app.close()
        wait_for(lambda: states(direct).get("succeeded", 0) == 50, timeout=30)
        assert workers.stop() == 0
    finally:
        workers.kill()
    output = workers.output()
    fallback = [line for line in output.splitlines() if "polling for jobs every 0.3s" in line]
    assert len(fallback) == 1, output
    assert "no listen DSN" in fallback[0]
    assert [line for line in troubles(output) if line not in fallback] == []
    assert direct.execute(
        "SELECT count(DISTINCT job_id), count(*) FROM public.effects"
    ).fetchone() == (
        50,
        50,
    )


def test_a_killed_worker_behind_the_pooler(stack, direct, tmp_path):
    """A worker killed with SIGKILL mid-job, its connections going through the pooler: its
    jobs are rescued and finish elsewhere, no job is handed to it afterwards, and it leaves
    no session state (no advisory lock) on the pooler's server connections. The workers poll
    only every 30 s: jobs start at once because the listen DSN's notifications wake them."""
    fast = ["--heartbeat-interval", "0.3", "--lease", "2", "--concurrency", "2"]
    fast += ["--poll-interval", "30"]
    env = {"PGQUEUE_LISTEN_DSN": stack.direct}
    victim = Workers(stack, tmp_path / "victim.log", *fast, env=env)
    others = [Workers(stack, tmp_path / f"other{i}.log", *fast, env=env) for i in range(2)]
    everyone = [victim, *others]
    try:
        with ServerConnections(stack.direct) as sampled:
            wait_for(lambda: all("started" in w.output() for w in everyone), timeout=30)
            app = pgqueue.App(stack.pooled, pooler=True)
            try:
                for _ in range(6):
                    app.enqueue("sleep", args=[1.5])
                victim_pid = victim.proc.pid
                wait_for(
                    lambda: (
                        direct.execute(
                            "SELECT count(*) FROM public.effects WHERE pid = %s AND note = 'start'",
                            (victim_pid,),
                        ).fetchone()[0]
                        > 0
                    ),
                    timeout=10,
                    interval=0.02,
                )
                (victim_id,) = direct.execute(
                    "SELECT id FROM pgqueue.workers WHERE pid = %s", (victim_pid,)
                ).fetchone()
                victim.kill()
                taken = [
                    row[0]
                    for row in direct.execute(
                        "SELECT id FROM pgqueue.jobs WHERE worker_id = %s", (victim_id,)
                    )
                ]
                assert taken
                later = [app.enqueue("sleep", args=[0.05]) for _ in range(20)]
            finally:
                app.close()
            wait_for(lambda: states(direct).get("succeeded", 0) == 26, timeout=60, interval=0.1)
        for worker in others:
            assert worker.stop() == 0
    finally:
        for worker in everyone:
            worker.kill()
    assert states(direct) == {"succeeded": 26}
    rescued = direct.execute(
        "SELECT id, attempts, worker_id FROM pgqueue.jobs WHERE id = ANY(%s)", (taken,)
    ).fetchall()
    for job_id, attempts, worker_id in rescued:
        assert attempts == 2 and worker_id != victim_id, (job_id, attempts, worker_id)
    # Jobs enqueued after the kill: each ran once, on a live worker.
    after = direct.execute(
        "SELECT count(*) FROM pgqueue.jobs WHERE id = ANY(%s) AND attempts = 1 "
        "AND worker_id IS DISTINCT FROM %s",
        (later, victim_id),
    ).fetchone()[0]
    assert after == len(later)
    assert sampled.most <= SERVER_CONNECTIONS
    assert session_state(stack) == {(0, "auto", 0)}
    logs = "".join(worker.output() for worker in others)
    # (Any of the live workers may rescue them, a part each.)
    assert sum(int(n) for n in re.findall(r"rescued (\d+) job\(s\) from lost", logs)) == len(taken)
    assert [line for line in troubles(logs) if "rescued" not in line] == []


def test_limited_queues_and_handler_transactions_through_the_pooler(stack, direct, tmp_path):
    """The other ways a worker uses its connections, through the pooler: claims from a queue
    with a concurrency limit and from one with a per-key limit (claims of several statements
    in a transaction; a worker of one limited queue sends them in one pipeline), and
    handlers' ctx.transaction(), sync and async."""
    app = pgqueue.App(stack.pooled, pooler=True)
    try:
        app.set_queue_limits("limited", concurrency=2)
        app.set_queue_limits("keyed", per_key=1)
        workers = Workers(stack, tmp_path / "worker.log", "--listen-dsn", stack.direct)
        one_queue = Workers(
            stack, tmp_path / "limited.log", "--listen-dsn", stack.direct, "--queues", "limited"
        )
        try:
            wait_for(lambda: "started" in workers.output(), timeout=30)
            wait_for(lambda: "started" in one_queue.output(), timeout=30)
            for i in range(20):
                app.enqueue("add", args=[i, i], queue="limited")
                app.enqueue("add", args=[i, 0], queue="keyed", concurrency_key=f"k{i % 3}")
                app.enqueue("tx_insert", args=[i])
                app.enqueue("tx_insert_async", args=[i])
            wait_for(lambda: states(direct).get("succeeded", 0) == 80, timeout=60)
            assert workers.stop() == 0
            assert one_queue.stop() == 0
        finally:
            workers.kill()
            one_queue.kill()
    finally:
        app.close()
    assert states(direct) == {"succeeded": 80}
    written = direct.execute(
        "SELECT count(*), count(DISTINCT job_id) FROM public.effects WHERE note = 'tx'"
    ).fetchone()
    assert written == (40, 40)
    assert troubles(workers.output() + one_queue.output()) == []
