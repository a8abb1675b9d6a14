"""Log lines that cannot flood: at most one per cause per interval, with a count."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["LogThrottle"]


class LogThrottle:
    """
    Writes a warning for a cause at most once per *interval*.

    Under attack the same thing goes wrong thousands of times a second (a refused
    connection, a failed ``accept``); one line per cause per interval says so, and
    the next line counts those left out. Not thread-safe: use it from one loop.

    Args:
        logger: Where the lines go.
        interval: Seconds between two lines of one cause.
        clock: Monotonic seconds; injectable for tests.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 10.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._logged_at: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}

    def report(self, cause: str, message: str, *args: object) -> bool:
        """
        Log ``message % args`` unless *cause* was logged less than *interval* ago.

        Returns:
            True if the line was written, False if it was only counted.
        """
        now = self._clock()
        last = self._logged_at.get(cause)
        if last is not None and now - last < self._interval:
            self._unlogged[cause] = self._unlogged.get(cause, 0) + 1
            return False
        self._logged_at[cause] = now
        left_out = self._unlogged.pop(cause, 0)
        text = message % args if args else message
        if left_out:
            self._logger.warning("%s (%d more since the last report)", text, left_out)
        else:
            self._logger.warning("%s", text)
        return True

    def unlogged(self, cause: str) -> int:
        """How many lines of *cause* were left out since its last one."""
        return self._unlogged.get(cause, 0)
