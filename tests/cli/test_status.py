"""The status line of ``cse-bridge forward``: its text and its writer thread."""

from __future__ import annotations

import io
import threading

from cse_bridge.cli._status import StatusLine, format_status
from cse_bridge.forwarder import ForwarderStats

CLEAR = "\r\x1b[2K"


class Stream(io.StringIO):
    """A StringIO that signals each write, so a test can wait for the thread."""

    def __init__(self) -> None:
        super().__init__()
        self.written = threading.Event()

    def write(self, text: str) -> int:
        count = super().write(text)
        self.written.set()
        return count


class TestFormatStatus:
    """format_status."""

    def test_nothing_yet(self) -> None:
        """Zero counters and no lag yet (``-``)."""
        expected = "in 0 out 0 dup 0 queued 0 lag - drops 0"
        assert expected == format_status(ForwarderStats())

    def test_counters_lag_and_every_drop(self) -> None:
        """Drops add overflow that cannot be re-read to the sinks' own drops."""
        stats = ForwarderStats(
            received=12,
            delivered=10,
            duplicates=1,
            overflow=2,
            lost=2,
            queued=1,
            lag_ms=37,
            sink_drops={"otlp.send_failed": 3, "otlp.backlog_full": 4},
        )
        expected = "in 12 out 10 dup 1 queued 1 lag 37 ms drops 9 overflow 2 resynced 0"
        assert expected == format_status(stats)

    def test_overflow_re_read_from_the_store_is_no_drop(self) -> None:
        """Overflow that a resync recovered shows as overflow, not as drops."""
        stats = ForwarderStats(received=6, delivered=50, overflow=44, resynced=44)
        expected = "in 6 out 50 dup 0 queued 0 lag - drops 0 overflow 44 resynced 44"
        assert expected == format_status(stats)

    def test_sink_errors_are_shown_only_when_there_are_some(self) -> None:
        """A sink that raised adds ``sink errors N``."""
        expected = "in 1 out 1 dup 0 queued 0 lag 0 ms drops 0 sink errors 2"
        actual = format_status(
            ForwarderStats(received=1, delivered=1, lag_ms=0, sink_errors=2)
        )
        assert expected == actual


class TestStatusLine:
    """StatusLine."""

    def test_rewrites_the_line_then_ends_it(self) -> None:
        """Each update clears the line; stop writes the last one with a newline."""
        stream = Stream()
        calls: list[int] = []

        def stats() -> ForwarderStats:
            calls.append(1)
            return ForwarderStats(received=len(calls))

        status = StatusLine(stats, stream, interval=0.01).start()
        assert stream.written.wait(5.0)
        status.stop()
        text = stream.getvalue()
        lines = text.split(CLEAR)[1:]
        count = len(calls)
        expected = [
            f"in {n} out 0 dup 0 queued 0 lag - drops 0" for n in range(1, count + 1)
        ]
        assert (True, expected) == (
            text.startswith(CLEAR) and text.endswith("\n"),
            [line.rstrip("\n") for line in lines],
        )

    def test_stop_soon_after_start_writes_one_final_line(self) -> None:
        """With a long interval, only the final line is written, and stop is prompt."""
        stream = Stream()
        status = StatusLine(ForwarderStats, stream, interval=60.0).start()
        status.stop()
        status.stop()  # idempotent
        assert CLEAR + "in 0 out 0 dup 0 queued 0 lag - drops 0\n" == stream.getvalue()

    def test_stop_without_start_writes_nothing(self) -> None:
        """A status line never started has nothing to end."""
        stream = Stream()
        StatusLine(ForwarderStats, stream).stop()
        assert "" == stream.getvalue()

    def test_thread_is_named_and_daemonic(self) -> None:
        """Its thread follows the ``cse-bridge-<role>`` naming and never holds exit."""
        stream = Stream()
        status = StatusLine(ForwarderStats, stream, interval=60.0).start()
        try:
            names = {t.name: t.daemon for t in threading.enumerate()}
            assert True is names.get("cse-bridge-forward-status")
        finally:
            status.stop()
