"""Where the database is: the DSN a user means, whether it is a transaction pooler, and a
quick check that it answers."""

from __future__ import annotations

import os
import re
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgqueue.errors import ConfigurationError, DatabaseUnavailable
from pgqueue.store import wrap_error


def resolve_dsn(dsn: str | None) -> str:
    """The DSN given, else PGQUEUE_DSN, else DATABASE_URL, else "" (libpq's PG* variables).
    A SQLAlchemy URL's driver is dropped (`postgresql+psycopg://` is read as `postgresql://`):
    DATABASE_URL is often written for SQLAlchemy, and libpq knows no such scheme."""
    if dsn is None:
        dsn = os.environ.get("PGQUEUE_DSN") or os.environ.get("DATABASE_URL") or ""
    return _DRIVER.sub("postgresql://", dsn, count=1)


_DRIVER = re.compile(r"^postgres(?:ql)?\+[A-Za-z0-9_]+://")


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def resolve_pooler(pooler: bool | None) -> bool:
    """The flag given, else PGQUEUE_POOLER (1/true/yes/on; unset, 0/false/no/off: no)."""
    if pooler is not None:
        return bool(pooler)
    value = os.environ.get("PGQUEUE_POOLER", "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(f"PGQUEUE_POOLER must be true or false, not {value!r}")


def session_kwargs(pooler: bool) -> dict[str, Any]:
    """psycopg connection options for a DSN that is, or is not, a transaction pooler.

    Through one (pgbouncer's `pool_mode = transaction`), each transaction may run on another
    server connection, so nothing is prepared: a statement prepared on one is unknown to the
    next ("prepared statement "_pg3_0" does not exist"), or, worse, another one of that name
    is. Directly, psycopg prepares what a connection runs often, which saves the planning."""
    return {"prepare_threshold": None} if pooler else {}


# Over TCP, a peer that vanished without a word (a host gone, a NAT or firewall that dropped
# the connection) is noticed in about half a minute rather than the kernel's quarter of an
# hour, or never for an idle connection such as the worker's LISTEN: keepalive probes after
# 15 s of silence, and unacknowledged data for 30 s, end the connection (the parts then
# reconnect). Ignored over a Unix socket; a DSN that sets any of these keeps its own.
LIVENESS = {
    "keepalives": "1",
    "keepalives_idle": "15",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "tcp_user_timeout": "30000",
}


def with_liveness(dsn: str) -> str:
    """`dsn` with LIVENESS's settings where it has none of its own."""
    try:
        given = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return dsn  # libpq will say what is wrong with it, when connecting
    if any(key in given for key in LIVENESS):
        return dsn
    return make_conninfo(dsn, **LIVENESS)


# libpq's variables that name a server or database: with none of them and no DSN, libpq's
# own defaults (a local socket, a database named after the OS user) are rarely the one meant.
LIBPQ_TARGET = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE")


def no_target(dsn: str) -> bool:
    """Whether `dsn` is empty and no libpq variable names a database either."""
    return not dsn.strip() and not any(os.environ.get(v) for v in LIBPQ_TARGET)


def probe(dsn: str, timeout: int = 10) -> None:
    """Fail fast, with libpq's reason, when the database cannot be reached at all."""
    if no_target(dsn):
        raise ConfigurationError(
            "no database given: pass App(dsn), or set PGQUEUE_DSN or DATABASE_URL (or "
            "libpq's PGHOST, PGDATABASE or PGSERVICE)"
        )
    try:
        conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        # Not a DSN at all (`mysql://...`, a typo): nothing to wait for, unlike a server
        # that is down.
        raise ConfigurationError(f"invalid DSN: {' '.join(str(exc).split())}") from None
    try:
        psycopg.connect(dsn, connect_timeout=timeout, autocommit=True).close()
    except psycopg.Error as exc:
        wrapped = wrap_error(exc)
        raise (wrapped or DatabaseUnavailable(f"database unavailable: {exc}")) from None
