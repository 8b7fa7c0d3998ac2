"""Backoff between attempts: a pure function of the attempt number."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from pgqueue.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter.

    The delay before attempt ``n + 1`` after failed attempt ``n`` is
    ``min(base * factor ** (n - 1), max_delay)``, spread by ``± jitter`` (a fraction) so that
    jobs that failed together do not all come back in the same instant.
    """

    base: float = 1.0
    """Seconds before the second attempt. Defaults to 1."""
    factor: float = 2.0
    """Growth per attempt. Defaults to 2."""
    max_delay: float = 3600.0
    """Upper bound of one delay, in seconds. Defaults to one hour."""
    jitter: float = 0.1
    """Random spread, as a fraction of the delay. Defaults to 0.1."""

    def __post_init__(self) -> None:
        if self.base < 0 or self.max_delay < 0:
            raise ConfigurationError("retry delays must be >= 0")
        if self.factor < 1:
            raise ConfigurationError("retry factor must be >= 1")
        if not 0 <= self.jitter <= 1:
            raise ConfigurationError("retry jitter must be between 0 and 1")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        raw = min(self._grown(max(attempt - 1, 0)), self.max_delay)
        if not self.jitter:
            return raw
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        return max(0.0, raw * (1 + spread))

    def _grown(self, steps: int) -> float:
        """base * factor ** steps, which a float cannot hold past a thousand or so steps
        (attempts counted that far: the delay is max_delay by then)."""
        if self.base == 0 or self.factor == 1:
            return self.base
        try:
            return self.base * self.factor**steps
        except OverflowError:
            return math.inf

    def next_run_in(self, attempt: int, max_attempts: int) -> float | None:
        """Seconds until the next attempt, or None when `attempt` was the last one allowed."""
        if attempt >= max_attempts:
            return None
        return self.delay(attempt)


DEFAULT_RETRY = RetryPolicy()
