"""Events per second per sandbox: a token bucket each, as hosted APIs meter them."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable
from typing import Final

__all__ = ["RateLimiter"]

_PRUNE_AT: Final = 100_000
"""Buckets kept before the full ones (idle sandboxes) are dropped: memory stays
bounded however many sandboxes write."""


class RateLimiter:
    """
    Allows each key *rate* events per second, and bursts of up to *burst* at once.

    A bucket per key holds up to *burst* tokens, refills at *rate* per second, and
    each event takes one. Not thread-safe: use it from the gateway's loop.

    Args:
        rate: Tokens per second.
        burst: The bucket's size (at least 1).
        clock: Monotonic seconds; injectable for tests.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (math.isfinite(rate) and rate > 0) or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[Hashable, tuple[float, float]] = {}
        """key -> (tokens at the time, that time)."""

    def acquire(self, key: Hashable) -> float:
        """
        Take one token from *key*'s bucket.

        Returns:
            0.0 if the event may go ahead, else the seconds until a token is back.
        """
        now = self._clock()
        tokens, then = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        if tokens >= 1.0:
            if len(self._buckets) >= _PRUNE_AT and key not in self._buckets:
                self._prune(now)
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        full = [
            key
            for key, (tokens, then) in self._buckets.items()
            if tokens + (now - then) * self.rate >= self.burst
        ]
        for key in full:  # a full bucket is the same as no bucket
            del self._buckets[key]
