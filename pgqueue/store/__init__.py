"""The only code that executes SQL: JobStore (sync) and AsyncJobStore, each running the
named queries of pgqueue/sql/*.sql. Given a caller's connection a method runs inside
the caller's transaction; otherwise it borrows a pooled connection and commits. Driver
errors become pgqueue.errors here. Internal API.
"""

from __future__ import annotations

from pgqueue.store.aio import AsyncJobStore
from pgqueue.store.errors import first_line, is_unavailable, translate_errors, wrap_error
from pgqueue.store.params import (
    Applied,
    Batch,
    JobSpec,
    OutcomeRow,
    claimed_job,
    dumps,
    loads,
    tolerant_loads,
)
from pgqueue.store.sync import JobStore, Row

__all__ = [
    "Applied",
    "AsyncJobStore",
    "Batch",
    "JobSpec",
    "JobStore",
    "OutcomeRow",
    "Row",
    "claimed_job",
    "dumps",
    "first_line",
    "is_unavailable",
    "loads",
    "tolerant_loads",
    "translate_errors",
    "wrap_error",
]
