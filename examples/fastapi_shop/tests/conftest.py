from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from shop.models import Base, engine_for
from shop.web import create_app


@pytest.fixture
def client(pgqueue_app) -> Iterator[TestClient]:
    """The API on the test database (pgqueue_app is already pointed at it)."""
    engine = engine_for(pgqueue_app.dsn)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    with TestClient(create_app(pgqueue_app.dsn)) as client:
        yield client
