"""The SQLAlchemy metadata matches the migrated tables, column for column."""

from __future__ import annotations

from sqlalchemy import create_engine, func, inspect, select

from pgqueue.migrate import sqlalchemy_url
from pgqueue.schema import jobs, metadata
from tests import jobs as tasks


def test_metadata_matches_database(dsn):
    engine = create_engine(sqlalchemy_url(dsn))
    try:
        insp = inspect(engine)
        for table in metadata.tables.values():
            db_cols = {c["name"] for c in insp.get_columns(table.name, schema="pgqueue")}
            assert db_cols == {c.name for c in table.columns}, table.name
        tasks.add.enqueue(1, 2)
        with engine.connect() as conn:
            count = conn.execute(
                select(func.count()).select_from(jobs).where(jobs.c.state == "queued")
            ).scalar_one()
        assert count == 1
    finally:
        engine.dispose()
