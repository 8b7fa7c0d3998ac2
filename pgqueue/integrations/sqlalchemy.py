"""Enqueue through a SQLAlchemy Session or Connection, inside its transaction.

pgqueue runs its statement on the DBAPI connection under the SQLAlchemy object, which is the
same database session, so the job row commits or rolls back with the caller's work. Any
driver with psycopg's placeholder style works synchronously (psycopg 3, psycopg2); asyncio
needs the psycopg 3 driver (`postgresql+psycopg://`).
"""

from __future__ import annotations

from typing import Any

from pgqueue.errors import ConfigurationError


def _driver_of(proxied: Any) -> Any:
    driver = getattr(proxied, "driver_connection", None)
    return driver if driver is not None else proxied


def sync_connection(conn: Any) -> Any:
    """The DBAPI connection behind a psycopg or SQLAlchemy connection-like object."""
    import psycopg

    if isinstance(conn, psycopg.AsyncConnection):
        raise ConfigurationError("conn= is an asyncio connection: enqueue with enqueue_async()")
    try:
        from sqlalchemy.engine import Connection
        from sqlalchemy.orm import Session, scoped_session
    except ImportError:  # pragma: no cover - SQLAlchemy is a dependency
        return conn
    if type(conn).__module__.startswith("sqlalchemy.ext.asyncio"):
        raise ConfigurationError("conn= is an asyncio session: enqueue with enqueue_async()")
    if isinstance(conn, scoped_session):
        conn = conn()  # the session of this scope (Flask-SQLAlchemy's db.session)
    if isinstance(conn, Session):
        conn = conn.connection()  # begins the session's transaction if needed
    if isinstance(conn, Connection):
        if not conn.in_transaction():
            # Our statement goes to the DBAPI connection, past SQLAlchemy: begin its
            # transaction, or its commit() would commit nothing and the job would be rolled
            # back when the connection goes back to its pool.
            conn.begin()
        return _driver_of(conn.connection)
    if not hasattr(conn, "cursor"):
        raise ConfigurationError(
            f"conn= takes a psycopg Connection or a SQLAlchemy Connection/Session "
            f"(or scoped_session), "
            f"not {type(conn).__name__}"
        )
    return conn


async def async_connection(conn: Any) -> Any:
    """The psycopg AsyncConnection behind an asyncio connection-like object."""
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_scoped_session

    if isinstance(conn, async_scoped_session):
        conn = conn()  # the session of this scope
    if isinstance(conn, AsyncSession):
        conn = await conn.connection()
    if isinstance(conn, AsyncConnection):
        if not conn.in_transaction():
            await conn.begin()  # as in sync_connection
        raw = await conn.get_raw_connection()
        conn = _driver_of(raw)
    import psycopg

    if not isinstance(conn, psycopg.AsyncConnection):
        raise ConfigurationError(
            "enqueue_async(conn=...) takes a psycopg AsyncConnection or a SQLAlchemy "
            f"AsyncConnection/AsyncSession on the psycopg driver, not {type(conn).__name__}"
        )
    return conn
