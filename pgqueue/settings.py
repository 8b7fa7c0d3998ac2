"""Worker settings: one frozen, validated object handed to the worker and its parts."""

from __future__ import annotations

import math
from dataclasses import dataclass

from pgqueue.errors import ConfigurationError


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerSettings:
    """How a `pgqueue work` process behaves. Every field has the CLI's default."""

    queues: tuple[str, ...] | None = None
    """Queues to claim from. Defaults to None: every queue."""
    concurrency: int = 10
    """Jobs run at once by one process. Defaults to 10."""
    shutdown_grace: float = 30.0
    """Seconds in-flight jobs get to finish after SIGTERM/SIGINT. Defaults to 30."""
    heartbeat_interval: float = 5.0
    """Seconds between heartbeats in pgqueue.workers. Defaults to 5."""
    lease: float = 30.0
    """Seconds without a heartbeat after which this worker's jobs are rescued. Defaults to 30."""
    poll_interval: float = 5.0
    """Safety poll when no notification arrives, in seconds. Defaults to 5."""
    claim_batch: int = 100
    """Most jobs taken by one claim query. Defaults to 100."""
    outcome_batch: int = 500
    """Most outcomes written by one statement. Defaults to 500."""
    scheduler: bool = True
    """Run the periodic-job scheduler in this worker (safe on every node). Defaults to True."""
    retain_succeeded: float = 86400.0
    """Seconds a succeeded job is kept (0: deleted at completion). Defaults to one day."""
    retain_cancelled: float = 86400.0
    """Seconds a cancelled job is kept. Defaults to one day."""
    retain_dead: float = 14 * 86400.0
    """Seconds a dead job is kept. Defaults to 14 days."""
    prune_batch: int = 1000
    """Finished jobs deleted per pruning statement (short, never blocking). Defaults to 1000."""
    pooler: bool = False
    """The worker's DSN goes through a pooler in transaction mode (pgbouncer's
    `pool_mode = transaction` and the like): its connections then use no prepared statements
    and keep no session state, and it LISTENs only over `listen_dsn` (without one it polls
    every `poll_interval`). Defaults to False: a direct connection or a session-mode pool."""
    listen_dsn: str | None = None
    """Where to LISTEN for wake-ups when the DSN is a pooler: PostgreSQL directly, or a
    session-mode pool. Giving one means the DSN is a pooler (`pooler` is implied). Defaults
    to None: the DSN itself, or polling when `pooler` is set."""

    def __post_init__(self) -> None:
        if self.queues is not None and (not self.queues or not all(self.queues)):
            raise ConfigurationError("queues must be non-empty names")
        for name, most in LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigurationError(f"{name} must be a number")
            if not math.isfinite(value) or value > most:
                raise ConfigurationError(f"{name} must be a finite number up to {most:g}")
        for name in ("retain_succeeded", "retain_cancelled", "retain_dead"):
            if getattr(self, name) < 0:
                raise ConfigurationError(f"{name} must be >= 0")
        for name in ("concurrency", "claim_batch", "outcome_batch", "prune_batch"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"{name} must be at least 1")
        for name in ("heartbeat_interval", "lease", "poll_interval"):
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"{name} must be positive")
        if self.shutdown_grace < 0:
            raise ConfigurationError("shutdown_grace must be >= 0")
        if self.lease <= self.heartbeat_interval:
            raise ConfigurationError("lease must be longer than heartbeat_interval")
        if self.listen_dsn is not None and not isinstance(self.listen_dsn, str):
            raise ConfigurationError("listen_dsn must be a DSN string")

    @property
    def pooled(self) -> bool:
        """True when the DSN is a transaction pooler (said, or implied by a listen DSN)."""
        return self.pooler or self.listen_dsn is not None


DAY = 86400.0
# The largest value each number may take: NaN, infinities and values no clock or thread pool
# can honour are refused when the settings are built, not discovered by a worker later.
LIMITS: dict[str, float] = {
    "concurrency": 10_000,
    "shutdown_grace": DAY,
    "heartbeat_interval": DAY,
    "lease": 7 * DAY,
    "poll_interval": DAY,
    "claim_batch": 10_000,
    "outcome_batch": 100_000,
    "retain_succeeded": 100 * 365 * DAY,
    "retain_cancelled": 100 * 365 * DAY,
    "retain_dead": 100 * 365 * DAY,
    "prune_batch": 1_000_000,
}
