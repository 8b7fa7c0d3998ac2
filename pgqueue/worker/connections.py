"""How the worker's connections are set up: JSON parsing for claimed rows, no JIT, and the
claimer's generic plan, directly or through a transaction pooler (no session state)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import set_json_loads

from pgqueue.store import tolerant_loads


async def configure_claims(conn: psycopg.AsyncConnection[Any]) -> None:
    """The claimer's connection: its statements are prepared at once and always run their
    generic plan. A plan made for the statistics of the moment (ANALYZE taken while no job
    was due says almost nothing is due) would read the run_at index and sort every due job
    at each claim; the generic plan reads the claim index in order whatever they say."""
    await configure(conn)
    conn.prepare_threshold = 0
    await conn.execute("SET plan_cache_mode = force_generic_plan")


# Through a transaction pooler the claimer's connection is a new server session at every
# transaction: nothing is prepared, and each use is a transaction that asks for the generic
# plan for itself (the unnamed statement that follows is planned generically too).
POOLED_CLAIMS = "SET LOCAL plan_cache_mode = force_generic_plan; SET LOCAL jit = off"


async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
    # Claimed rows carry args/kwargs as jsonb: orjson parses them several times faster.
    set_json_loads(tolerant_loads, conn)
    # No JIT: the worker's statements run in a millisecond or two, but their estimates (a
    # limit or a recursion known only at run time) can look costly enough to compile, which
    # took 0.3-0.5 s a statement.
    await conn.execute("SET jit = off")


async def configure_pooled(conn: psycopg.AsyncConnection[Any]) -> None:
    """A connection through a transaction pooler: no prepared statements (see dsn.py), and
    no session settings (the next transaction may run on another server session)."""
    set_json_loads(tolerant_loads, conn)
    conn.prepare_threshold = None
