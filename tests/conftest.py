"""Test fixtures: one real PostgreSQL database per test process (each xdist worker has its
own), migrated once, emptied before each test. No mocks of the database anywhere."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from pgqueue import migrate
from pgqueue.settings import WorkerSettings
from pgqueue.testing.database import reset_database
from pgqueue.worker import Worker
from tests import jobs
from tests.server import postgres_server, with_database


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Files with long tests run first (marked slow, or given more than the default timeout):
    with files spread over processes (scripts/test: xdist --dist loadfile), a long file
    picked up last would run alone at the end while the other processes sit idle."""
    default = float(config.getini("timeout") or 0)

    def is_long(item: pytest.Item) -> bool:
        timeout = item.get_closest_marker("timeout")
        longer = bool(timeout and timeout.args and float(timeout.args[0]) > default)
        return longer or item.get_closest_marker("slow") is not None

    long_files = {item.path for item in items if is_long(item)}
    items.sort(key=lambda item: item.path not in long_files)  # stable: files stay whole


@pytest.fixture(scope="session")
def server_dsn() -> Iterator[str]:
    with postgres_server() as dsn:
        yield dsn


@pytest.fixture(scope="session")
def db_dsn(server_dsn: str) -> Iterator[str]:
    name = f"pgqueue_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = with_database(server_dsn, name)
    migrate.upgrade(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE public.effects (job_id bigint, attempt int, pid int, "
            "at timestamptz DEFAULT clock_timestamp(), note text)"
        )
    os.environ["PGQUEUE_DSN"] = dsn  # for subprocess workers and the tests' App
    jobs.app.dsn = dsn
    yield dsn
    jobs.app.close()
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def dsn(db_dsn: str) -> str:
    """The test database, emptied: every pgqueue table (tasks declared by earlier tests'
    workers too, and tables added by later migrations), and the tests' effects."""
    reset_database(db_dsn)
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE public.effects")
    jobs.reset()
    return db_dsn


@pytest.fixture
def app(dsn: str) -> jobs.pgqueue.App:
    return jobs.app


@pytest.fixture
def db(dsn: str) -> Iterator[psycopg.Connection[tuple]]:
    """An autocommit connection for checking what is in the database."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn


@contextlib.contextmanager
def running_worker(dsn: str, **settings: object) -> Iterator[Worker]:
    """A worker on the tests' App, in a thread of this process."""
    opts: dict[str, object] = {"poll_interval": 1.0, "shutdown_grace": 5.0}
    opts.update(settings)
    worker = Worker(jobs.app, WorkerSettings(**opts), dsn)  # type: ignore[arg-type]
    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(worker.run())
        except BaseException as exc:  # surfaced in the test below
            errors.append(exc)

    thread = threading.Thread(target=run, name="test-worker", daemon=True)
    thread.start()
    assert worker.wait_started(20), "worker did not start"
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(30)
        assert not thread.is_alive(), "worker did not stop"
    if errors:
        raise errors[0]


@pytest.fixture
def worker(dsn: str) -> Iterator[object]:
    """Start a worker: `with worker(concurrency=1): ...`."""

    def start(**settings: object) -> contextlib.AbstractContextManager[Worker]:
        return running_worker(dsn, **settings)

    yield start
