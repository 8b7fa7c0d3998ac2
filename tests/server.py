"""Finds a real PostgreSQL for the test run: PGQUEUE_TEST_DSN, else a testcontainers
container when a Docker engine answers, else an embedded server from `pgserver`."""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
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
            yield pg.get_connection_url()
        return
    import pgserver  # type: ignore[import-untyped]

    with tempfile.TemporaryDirectory(prefix="pgq-") as tmp:
        server = pgserver.get_server(tmp, cleanup_mode="stop")
        try:
            yield server.get_uri()
        finally:
            server.cleanup()


def with_database(dsn: str, dbname: str) -> str:
    """The same server, another database."""
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    info["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items()})
