"""Where an App connects when it is given no DSN."""

from __future__ import annotations

import pytest

import pgqueue
from pgqueue.dsn import LIBPQ_TARGET


def test_an_app_with_no_database_named_anywhere_refuses_to_guess(monkeypatch):
    for name in ("PGQUEUE_DSN", "DATABASE_URL", *LIBPQ_TARGET):
        monkeypatch.delenv(name, raising=False)
    app = pgqueue.App()
    with pytest.raises(pgqueue.ConfigurationError, match="no database given"):
        app.enqueue("add", args=[1, 2])
    with pytest.raises(pgqueue.ConfigurationError, match="no database given"):
        app.get_job(1)


def test_a_sqlalchemy_database_url_is_read_as_libpq_reads_it(monkeypatch):
    # DATABASE_URL is often written for SQLAlchemy; libpq knows no `+driver` scheme.
    monkeypatch.delenv("PGQUEUE_DSN", raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://shop@db.internal:5433/shop")
    assert pgqueue.App().dsn == "postgresql://shop@db.internal:5433/shop"
    assert pgqueue.App("postgres+asyncpg://h/db").dsn == "postgresql://h/db"
    assert pgqueue.App("host=h dbname=postgresql+x").dsn == "host=h dbname=postgresql+x"


def test_connections_notice_a_peer_that_vanished():
    """TCP keepalives and a limit on unacknowledged data, unless the DSN sets its own: a
    LISTEN connection whose server vanished without a word waited for ever."""
    from psycopg.conninfo import conninfo_to_dict

    from pgqueue.dsn import LIVENESS, with_liveness

    given = conninfo_to_dict(with_liveness("postgresql://u@db.internal:5433/shop"))
    assert {k: given[k] for k in LIVENESS} == LIVENESS
    assert given["host"] == "db.internal" and given["dbname"] == "shop"
    own = "host=db keepalives_idle=60"
    assert with_liveness(own) == own
    assert conninfo_to_dict(with_liveness(""))["keepalives"] == "1"  # libpq's PG* variables


@pytest.mark.parametrize("dsn", ["not a dsn", "mysql://u@h/db", "host=h port"])
def test_a_dsn_libpq_cannot_read_is_a_configuration_error(dsn):
    # It was DatabaseUnavailable, which reads as "try again later".
    app = pgqueue.App(dsn)
    with pytest.raises(pgqueue.ConfigurationError, match="invalid DSN"):
        app.get_job(1)
