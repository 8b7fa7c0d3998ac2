"""pytest plugin: a real, migrated PostgreSQL database and your App pointed at it.

Registered automatically when pgqueue is installed (disable with `-p no:pgqueue`). Name your
app in the pytest configuration:

    [tool.pytest.ini_options]
    pgqueue_app = "shop.tasks:app"

Fixtures:

- `pgqueue_server` (session): the DSN of a server where tests may create databases:
  `PGQUEUE_TEST_DSN`, else an embedded PostgreSQL (pgqueue's `embedded` extra: pgserver).
- `pgqueue_database` (session): the DSN of a database created there for the test run (one
  per xdist worker), migrated once, dropped at the end.
- `pgqueue_dsn`: that database, with every pgqueue table emptied before the test.
- `pgqueue_app`: the app named by `pgqueue_app`, using `pgqueue_dsn` during the test.
- `pgqueue_eager`: `pgqueue_app` in eager mode (`enqueue` runs the job at once).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "pgqueue_app",
        "The pgqueue App the pgqueue_app fixture gives, as module:attribute",
        default="",
    )


def load_app(spec: str) -> Any:
    """The object named by `module:attribute` (the form `pgqueue work` takes)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise pytest.UsageError(f"pgqueue_app must look like module:attribute, not {spec!r}")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@pytest.fixture(scope="session")
def pgqueue_server() -> Iterator[str]:
    """A PostgreSQL server for this test run (its DSN)."""
    from pgqueue.testing.database import postgres_server

    with postgres_server() as dsn:
        yield dsn


@pytest.fixture(scope="session")
def pgqueue_database(pgqueue_server: str) -> Iterator[str]:
    """A migrated database for this test run (its DSN)."""
    from pgqueue.testing.database import migrated_database

    with migrated_database(pgqueue_server) as dsn:
        yield dsn


@pytest.fixture
def pgqueue_dsn(pgqueue_database: str) -> str:
    """The test database, every pgqueue table emptied."""
    from pgqueue.testing.database import reset_database

    reset_database(pgqueue_database)
    return pgqueue_database


@pytest.fixture
def pgqueue_app(request: pytest.FixtureRequest, pgqueue_dsn: str) -> Iterator[Any]:
    """The app named by the `pgqueue_app` ini option, on the emptied test database."""
    from pgqueue.testing.database import use_database

    spec = str(request.config.getini("pgqueue_app") or "")
    if not spec:
        raise pytest.UsageError(
            "set pgqueue_app = 'module:app' in the pytest configuration, or define a "
            "pgqueue_app fixture of your own"
        )
    with use_database(load_app(spec), pgqueue_dsn) as app:
        yield app


@pytest.fixture
def pgqueue_eager(pgqueue_app: Any) -> Iterator[Any]:
    """`pgqueue_app` in eager mode: each enqueue runs its job before returning."""
    from pgqueue.testing.eager import eager

    with eager(pgqueue_app) as app:
        yield app
