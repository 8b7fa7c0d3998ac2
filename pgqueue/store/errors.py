"""Driver errors as pgqueue errors, decided by SQLSTATE. Internal API.

Only connection-class failures mean "the database is unavailable" and are worth waiting
out: SQLSTATE class 08 (connection exception), 57P01-57P05 (the server shutting down or
refusing connections for now) and class 53 (insufficient resources), plus client-side
connection failures that carry no SQLSTATE. Everything else (a lock timeout, a value too
large, a constraint) is a real error and is reported as itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import PoolTimeout

from pgqueue.errors import (
    ConfigurationError,
    DatabaseUnavailable,
    InvalidJobState,
    PermissionDenied,
    PgQueueError,
    SchemaNotMigrated,
)

_UNAVAILABLE_STATES = frozenset({"57P01", "57P02", "57P03", "57P04", "57P05"})
# libpq's words for a server that answered but will not let us in: retrying cannot help.
_REFUSED = ("password authentication failed", "authentication failed", "no pg_hba.conf entry")
_NOT_THERE = ("does not exist",)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def is_unavailable(exc: BaseException) -> bool:
    """Whether `exc` is a connection-class failure (retry later), not a real error."""
    if isinstance(exc, DatabaseUnavailable | PoolTimeout):
        return True
    if not isinstance(exc, psycopg.Error):
        return False
    state = exc.sqlstate
    if state is None:
        # Raised by the client: a connection that failed or broke, unless the server
        # refused us for good reasons (bad password, unknown database or role).
        if not isinstance(exc, psycopg.OperationalError):
            return False
        return refused_reason(exc) is None
    return state.startswith(("08", "53")) or state in _UNAVAILABLE_STATES


def refused_reason(exc: BaseException) -> str | None:
    """The one-line reason when the server refused the connection for good, else None."""
    text = first_line(exc)
    lowered = text.lower()
    if any(word in lowered for word in _REFUSED):
        return f"cannot connect: {text}"
    if "connection" in lowered and any(word in lowered for word in _NOT_THERE):
        return f"cannot connect: {text}"
    return None


def wrap_error(exc: Exception) -> PgQueueError | None:
    """The pgqueue error a driver error stands for, or None to let it through."""
    if isinstance(exc, PoolTimeout):
        return DatabaseUnavailable("database unavailable: no connection could be had in time")
    if isinstance(exc, pg_errors.UniqueViolation):
        detail = exc.diag.message_detail or first_line(exc)
        if exc.diag.constraint_name == "jobs_pkey":
            # An id drawn from the sequence was taken by a row inserted with an id of its
            # own: not a unique key at all.
            return InvalidJobState(f"a job already has the id drawn for this one: {detail}")
        return InvalidJobState(f"another live job holds the same unique key: {detail}")
    if isinstance(exc, pg_errors.UndefinedTable | pg_errors.InvalidSchemaName):
        return SchemaNotMigrated("the pgqueue schema is not migrated: run `pgqueue migrate`")
    if isinstance(exc, pg_errors.UndefinedColumn) or (
        isinstance(exc, pg_errors.UndefinedFunction) and "pgqueue." in str(exc)
    ):
        # pgqueue's own statements name only what its migrations make: a schema from an
        # older release (migrated down, or this release deployed before `pgqueue migrate`).
        return SchemaNotMigrated(
            f"the pgqueue schema is older than this release of pgqueue needs "
            f"({first_line(exc)}): run `pgqueue migrate`"
        )
    if isinstance(exc, psycopg.Error):
        if reason := refused_reason(exc) if exc.sqlstate is None else None:
            return ConfigurationError(reason)
        if is_unavailable(exc):
            return DatabaseUnavailable(f"database unavailable: {first_line(exc)}")
        return None
    try:  # psycopg2, when a SQLAlchemy engine uses it
        import psycopg2  # type: ignore[import-untyped]

        if isinstance(exc, psycopg2.OperationalError) and (
            exc.pgcode is None
            or exc.pgcode[:2] in ("08", "53")
            or exc.pgcode in _UNAVAILABLE_STATES
        ):
            return DatabaseUnavailable(f"database unavailable: {first_line(exc)}")
    except ImportError:
        pass
    return None


@contextmanager
def translate_errors() -> Iterator[None]:
    """Driver errors out as pgqueue errors (wrap_error), others as they are."""
    try:
        yield
    except Exception as exc:
        wrapped = wrap_error(exc)
        if wrapped is None:
            raise
        raise wrapped from exc


PRODUCER_RIGHTS = (
    "INSERT on pgqueue.jobs is enough for jobs without a unique_key or depends_on; for "
    "those, grant this role pgqueue_producer (created by `pgqueue migrate roles`), or SELECT "
    "(id, queue, state, unique_key, unique_until) on pgqueue.jobs, USAGE on its sequence and "
    "EXECUTE on pgqueue.release_unique_keys"
)


@contextmanager
def producer_rights() -> Iterator[None]:
    """A role that may only INSERT gets told what enqueue needs, not a bare driver error."""
    try:
        yield
    except Exception as exc:
        state = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
        if state != "42501":  # insufficient_privilege
            raise
        from pgqueue.store import plans

        plans.forget_rights()  # taken back since they were asked, perhaps
        raise PermissionDenied(f"{first_line(exc)}: {PRODUCER_RIGHTS}") from exc
