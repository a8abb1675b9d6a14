"""
Keep retrying an OTLP exporter while its endpoint is down, with a bounded backlog.

``Backlog`` counts what was handed to a batch processor and not yet exported; the
sink refuses (and counts) new items once it reaches the processor's queue size, so
memory stays bounded and the SDK processor itself never has to drop. The
``Retrying*Exporter`` wrappers run on the processor's worker thread: a failed batch
is tried again with a capped, doubling delay until it goes through or ``give_up()``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Final, TypeVar

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

__all__ = ["Backlog", "RetryingLogExporter", "RetryingSpanExporter"]

logger = logging.getLogger(__name__)

_FIRST_DELAY: Final = 0.25
_MAX_DELAY: Final = 5.0
_T = TypeVar("_T")


class Backlog:
    """
    Items submitted and not yet exported or dropped; thread-safe counters.

    Args:
        limit: Items allowed in flight (the batch processor's ``max_queue_size``).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Condition()
        self._pending = 0
        self.exported = 0
        self.dropped: dict[str, int] = {"backlog_full": 0, "send_failed": 0}
        self.stop = threading.Event()
        """Set by ``give_up``: exporters stop retrying and drop what they hold."""

    def admit(self) -> bool:
        """Count one more item in flight; False (and a counted drop) when full."""
        with self._lock:
            if self._pending >= self.limit:
                self.dropped["backlog_full"] += 1
                return False
            self._pending += 1
            return True

    def done(self, count: int, *, ok: bool) -> None:
        """*count* items left the pipeline, exported or (``ok=False``) dropped."""
        with self._lock:
            self._pending -= count
            if ok:
                self.exported += count
            else:
                self.dropped["send_failed"] += count
            if self._pending <= 0:
                self._lock.notify_all()

    @property
    def pending(self) -> int:
        """Items in flight now."""
        return self._pending

    def wait_empty(self, timeout: float) -> bool:
        """Block up to *timeout* seconds until nothing is in flight; True if so."""
        with self._lock:
            return self._lock.wait_for(lambda: self._pending <= 0, timeout)

    def give_up(self) -> None:
        """Stop retrying (shutdown): batches that still fail are dropped, counted."""
        self.stop.set()


def _retry(backlog: Backlog, name: str, export: Callable[[], bool], count: int) -> bool:
    delay, failures = _FIRST_DELAY, 0
    while True:
        try:
            ok = export()
        except Exception:
            logger.exception("OTLP %s exporter raised", name)
            ok = False
        if ok:
            backlog.done(count, ok=True)
            if failures:
                logger.info("OTLP %s export recovered after %d tries", name, failures)
            return True
        failures += 1
        if failures == 1:
            logger.warning("OTLP %s export failed; retrying until it succeeds", name)
        # Wait on the stop event, not sleep: shutdown ends the wait at once.
        if backlog.stop.wait(delay):
            backlog.done(count, ok=False)
            return False
        delay = min(delay * 2, _MAX_DELAY)


class RetryingSpanExporter(SpanExporter):
    """Exports through *inner*, retrying each failed batch (blocks its caller)."""

    def __init__(self, inner: SpanExporter, backlog: Backlog) -> None:
        self.inner, self.backlog = inner, backlog

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Block until *spans* are exported, or dropped after ``give_up``."""
        ok = _retry(
            self.backlog,
            "span",
            lambda: self.inner.export(spans) is SpanExportResult.SUCCESS,
            len(spans),
        )
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        """Shut the inner exporter down."""
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush the inner exporter."""
        return self.inner.force_flush(timeout_millis)


class RetryingLogExporter(LogRecordExporter):
    """Exports through *inner*, retrying each failed batch (blocks its caller)."""

    def __init__(self, inner: LogRecordExporter, backlog: Backlog) -> None:
        self.inner, self.backlog = inner, backlog

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        """Block until *batch* is exported, or dropped after ``give_up``."""
        ok = _retry(
            self.backlog,
            "log",
            lambda: self.inner.export(batch) is LogRecordExportResult.SUCCESS,
            len(batch),
        )
        return LogRecordExportResult.SUCCESS if ok else LogRecordExportResult.FAILURE

    def shutdown(self) -> None:
        """Shut the inner exporter down."""
        self.inner.shutdown()  # type: ignore[no-untyped-call]  # untyped in the SDK

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush the inner exporter."""
        return self.inner.force_flush(timeout_millis)
