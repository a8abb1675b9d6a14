"""
The one-line status of ``cse-bridge forward`` on a terminal: in, out, lag, drops.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Final, TextIO

if TYPE_CHECKING:
    from ..forwarder import ForwarderStats

__all__ = ["StatusLine", "format_status"]

_CLEAR: Final = "\r\x1b[2K"
"""Back to the start of the line and erase it (ANSI EL 2)."""


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

    ``start``, ``stop`` and ``suspended`` are safe from any thread; ``stop`` blocks
    until the thread has written its last line (a newline ends it). Whoever writes to
    the same terminal does it inside ``suspended()``, so a record never lands on the
    end of the status line.

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
        # Serializes the status writes with the records written in suspended(): the
        # two share a terminal, and a half-written line would mix them.
        self._lock = threading.Lock()
        self._shown = ""  # the text on screen now, "" when the line is clear
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

    @contextlib.contextmanager
    def suspended(self) -> Iterator[None]:
        """
        Clear the line, let the caller write, then draw the line again.

        Redraws the text last shown (stats are not read here: the caller may be the
        thread that updates them).
        """
        with self._lock:
            shown = self._shown
            if shown:
                self._stream.write(_CLEAR)
                self._stream.flush()
            try:
                yield
            finally:
                if shown:
                    self._stream.write(_CLEAR + shown)
                    self._stream.flush()

    def _write(self, end: str = "") -> None:
        text = format_status(self._stats())
        with self._lock:
            self._stream.write(_CLEAR + text + end)
            self._stream.flush()
            self._shown = "" if end else text

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._write()
        self._write("\n")
