"""Alembic environment for pgqueue's own schema.

The version table lives in the ``pgqueue`` schema so it never clashes with an application's
own alembic history in ``public``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool, text

config = context.config
SCHEMA = config.get_main_option("pgqueue_schema") or "pgqueue"
VERSION_TABLE = "alembic_version"
# Two `pgqueue migrate` at once (say, every replica of an app at deploy) take turns: the second
# waits, then finds the schema migrated. A transaction-level lock, so it also holds through a
# pooler in transaction mode and is released however the run ends.
LOCK = f"SELECT pg_advisory_xact_lock(hashtext('pgqueue.migrate:{SCHEMA}'))"


def run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        literal_binds=True,
        version_table_schema=SCHEMA,
        version_table=VERSION_TABLE,
    )
    with context.begin_transaction():
        context.execute(LOCK)
        context.execute(f'CREATE SCHEMA IF NOT EXISTS "{SCHEMA}"')
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_with(connection)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "", poolclass=pool.NullPool)
    with engine.connect() as conn:
        _run_with(conn)
    engine.dispose()


def _run_with(connection: object) -> None:
    # One transaction for the whole run, opened by the lock: the current revision is read
    # once the lock is held, so a run that waited sees what the one before it committed.
    connection.execute(text(LOCK))  # type: ignore[attr-defined]
    # The schema must exist before alembic creates its version table inside it.
    connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{SCHEMA}"'))  # type: ignore[attr-defined]
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        version_table_schema=SCHEMA,
        version_table=VERSION_TABLE,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()  # type: ignore[attr-defined]


if context.is_offline_mode():
    run_offline()
else:
    run_online()
