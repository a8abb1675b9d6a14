"""
The one-line status of ``cse-bridge forward`` on a terminal: in, out, lag, drops.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TextIO

from ._types import ForwarderStats

__all__ = ["StatusLine", "format_status"]


def format_status(stats: ForwarderStats) -> str:
    """Return ``in 10 out 10 dup 0 queued 0 lag 12 ms drops 0`` for *stats*."""
    lag = "-" if stats.lag_ms is None else f"{stats.lag_ms} ms"
    text = (
        f"in {stats.received} out {stats.delivered} dup {stats.duplicates} "
        f"queued {stats.queued} lag {lag} drops {stats.dropped}"
    )
    if stats.overflow:
        text += f" overflow {stats.overflow} resynced {stats.resynced}"
    if stats.sink_errors:
        text += f" sink errors {stats.sink_errors}"
    return text


class StatusLine:
    """
    Rewrites one status line on *stream* every *interval* seconds from its own thread.

    ``start`` and ``stop`` are safe from any thread; ``stop`` blocks until the
    thread has written its last line (a newline ends it).

    Args:
        stats: Returns the current counters.
        stream: Where to write (a terminal: ``\\r`` rewrites the line).
        interval: Seconds between two updates.
    """

    def __init__(
        self,
        stats: Callable[[], ForwarderStats],
        stream: TextIO,
        *,
        interval: float = 2.0,
    ) -> None:
        self._stats, self._stream, self._interval = stats, stream, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="cse-bridge-forward-status", daemon=True
        )

    def start(self) -> StatusLine:
        """Start updating; return self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Write the final line and stop; idempotent."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)

    def _write(self, end: str = "") -> None:
        self._stream.write("\r\x1b[2K" + format_status(self._stats()) + end)
        self._stream.flush()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._write()
        self._write("\n")
