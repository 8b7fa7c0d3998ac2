"""Finds a real PostgreSQL for the test run: PGQUEUE_TEST_DSN, else a testcontainers
container when a Docker engine answers, else an embedded server from `pgserver`."""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import uuid
from collections.abc import Iterator

import psycopg


def _docker_answers() -> bool:
    """True when a Docker engine answers its /_ping (checked without the docker library)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        if host.startswith("unix://"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: object = host[len("unix://") :]
        elif host.startswith("tcp://"):
            hostname, _, port = host[len("tcp://") :].partition(":")
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            address = (hostname, int(port or 2375))
        else:
            return False
        with sock:
            sock.settimeout(3)
            sock.connect(address)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return b" 200 " in sock.recv(1024)
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Yield a DSN to a server where the tests may create databases."""
    dsn = os.environ.get("PGQUEUE_TEST_DSN")
    if dsn:
        yield dsn
        return
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver=None) as pg:
            url = pg.get_connection_url()
            _tune_for_queue_churn(url)
            yield url
        return
    import pgserver  # type: ignore[import-untyped]

    _ensure_pgserver_user()
    with tempfile.TemporaryDirectory(prefix="pgq-") as tmp:
        server = pgserver.get_server(tmp, cleanup_mode="stop")
        try:
            _tune_for_queue_churn(server.get_uri())
            yield server.get_uri()
        finally:
            server.cleanup()


def _ensure_pgserver_user() -> None:
    """As root, pgserver runs PostgreSQL as a system user `pgserver`, which it creates with
    `useradd` when missing. The test processes start their servers together, and two
    `useradd`s at once can each write /etc/passwd from what they read before the other
    wrote: one server then runs as a user id that no longer exists, and initdb fails. The
    first process creates the user here, the others wait for it."""
    if os.name != "posix" or os.geteuid() != 0:
        return
    import fcntl
    import pwd
    import subprocess

    with open(os.path.join(tempfile.gettempdir(), "pgqueue-pgserver-user.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            pwd.getpwnam("pgserver")
        except KeyError:
            subprocess.run(
                ["useradd", "-s", "/bin/bash", "pgserver"], check=True, capture_output=True
            )


def _tune_for_queue_churn(dsn: str) -> None:
    """Let autovacuum visit each database every few seconds, as on a busy queue's server.

    Only for servers the test run starts itself. The default (a visit a minute) is longer than
    the load tests: whether a one-minute test saw zero, one or two vacuums of the jobs table was
    left to chance, and the table's size with it (docs/how-to/retention.md recommends a short
    setting for production queue databases)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET autovacuum_naptime = '2s'")
        conn.execute("SELECT pg_reload_conf()")


def with_database(dsn: str, dbname: str) -> str:
    """The same server, another database."""
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    info["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items()})


@contextlib.contextmanager
def scratch_database(server_dsn: str, prefix: str) -> Iterator[str]:
    """An empty database of its own, dropped afterwards; yields its DSN. The name is
    `prefix` plus a unique suffix: test runs (and xdist workers) sharing a server never meet."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(server_dsn, name)
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# Roles are the whole server's, not one database's: tests that create pgqueue's group roles
# (`pgqueue migrate roles`) take this lock first, so that two runs on one server (or two
# xdist workers) never both see a role missing and both create it.
ROLES_LOCK = 0x70677165_726F6C65  # "pgqueROLE"


@contextlib.contextmanager
def cluster_lock(server_dsn: str, key: int = ROLES_LOCK) -> Iterator[None]:
    """Hold a server-wide advisory lock (taken in the server's maintenance database)."""
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (key,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
