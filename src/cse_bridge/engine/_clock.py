"""
Time for the engine: a monotonic clock that can also wait, and a fake one for tests.

The engine never calls ``time.monotonic`` or ``Event.wait`` directly; it asks its
``Clock``. A ``FakeClock`` then lets tests step through batching delays, backoff and
``Retry-After`` pauses without sleeping.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

__all__ = ["MONOTONIC", "Clock", "FakeClock", "MonotonicClock"]


class Clock(Protocol):
    """Monotonic time in seconds, and a wait on an event bounded by that time."""

    def now(self) -> float:
        """Return the current time in seconds; only differences are meaningful."""

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        """Block until *event* is set or *timeout* seconds passed; True if set."""


class MonotonicClock:
    """The real clock: ``time.monotonic`` and ``Event.wait``. Thread-safe."""

    def now(self) -> float:
        """Return ``time.monotonic()``."""
        return time.monotonic()

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        """Block on *event* for at most *timeout* seconds (None: no limit)."""
        if timeout is not None and timeout <= 0:
            return event.is_set()
        return event.wait(timeout)


MONOTONIC = MonotonicClock()
"""The default clock of every engine."""


class FakeClock:
    """
    A clock that moves only when a test calls ``advance()``.

    ``wait()`` returns as soon as the event is set or the fake time passed its timeout.
    Waiters re-check every few milliseconds of real time, because setting an
    ``Event`` cannot notify the clock; tests themselves never sleep. Thread-safe.

    Args:
        start: The initial time.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        # Guards _now and wakes waiters when the test moves time forward.
        self._moved = threading.Condition()
        self.waiting = threading.Event()
        """Set whenever some thread waits with a timeout (the worker is parked)."""

    def now(self) -> float:
        """Return the fake time."""
        with self._moved:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by *seconds* and wake every waiter to re-check."""
        with self._moved:
            self._now += seconds
            self._moved.notify_all()

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        """Block until *event* is set or the fake time reaches now + *timeout*."""
        with self._moved:
            end = None if timeout is None else self._now + timeout
        while not event.is_set():
            with self._moved:
                if end is not None and self._now >= end:
                    return False
                if end is not None:
                    self.waiting.set()
                self._moved.wait(0.005)
        return True
