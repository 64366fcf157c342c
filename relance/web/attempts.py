"""Failed SDR logins counted per client address, in a moving one-minute window.

After ``limit`` wrong tokens (the login form and ``Authorization: Bearer`` alike; 10 by
default, ``RELANCE_SDR_LOGIN_FAILURES_PER_MINUTE``) from one client address within a
minute, every further attempt from it is answered 429 with ``Retry-After`` until the
oldest failure is a minute old, even with the right token: guessing becomes useless, and
one address cannot lock the others out. Behind a reverse proxy every client shares the
proxy's address: the limit then applies to them together.

The counting is the ``limits`` library's moving window, in memory (one process).
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

NAMESPACE = "sdr-login"


class LoginAttempts:
    """Failed logins per client address; ``wait`` says how long one must wait."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._item = RateLimitItemPerMinute(limit)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def wait(self, client: str) -> int | None:
        """Whole seconds until ``client`` may try again; None when it may try now."""
        if self._limiter.test(self._item, NAMESPACE, client):
            return None
        stats = self._limiter.get_window_stats(self._item, NAMESPACE, client)
        return max(1, math.ceil(stats.reset_time - time.time()))

    def failed(self, client: str) -> None:
        """Count one wrong token from ``client``."""
        self._limiter.hit(self._item, NAMESPACE, client)
