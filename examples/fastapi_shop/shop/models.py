"""The shop's own tables (SQLAlchemy), next to pgqueue's."""

from __future__ import annotations

import functools

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from pgqueue.migrate import sqlalchemy_url


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str]
    amount_cents: Mapped[int]
    receipt_sent: Mapped[bool] = mapped_column(default=False)


@functools.cache
def engine_for(dsn: str) -> Engine:
    """One engine per database (a libpq DSN or URL), using psycopg 3."""
    return create_engine(sqlalchemy_url(dsn))
