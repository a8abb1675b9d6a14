"""
OpenTelemetry producers: finished spans and OTel log records become events.

See docs/protocol.md#protocol-trace-span and docs/protocol.md#protocol-log-otel.

The engine already queues, batches, retries and flushes, so a span needs no second
batching queue in front of it. Pick one of (the processor is the fastest,
``bench/otel.py``)::

    provider.add_span_processor(EventsSpanProcessor())                    # direct
    provider.add_span_processor(SimpleSpanProcessor(EventsSpanExporter()))  # standard
    provider.add_span_processor(BatchSpanProcessor(EventsSpanExporter()))   # works too

Each submits a snapshot of the ended span to the engine (O(1), never blocks, never
sends on the application thread) and the engine's worker encodes it.
``BatchSpanProcessor`` adds a queue and a thread that only move spans from one queue
to the other; it is what ``opentelemetry-instrument`` uses for
``OTEL_TRACES_EXPORTER=computesdk_events`` and ``OTEL_LOGS_EXPORTER=computesdk_events``
(entry points of this package).
"""

from __future__ import annotations

import atexit
import sys
import threading
from collections.abc import Sequence
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from ..engine import BatchEngine, EventItem, on_engine_thread
from ..schema.logs import estimate_size
from ..schema.otel_logs import encode_otel_log_record, otel_log_event_type
from ..schema.spans import SPAN_EVENT_TYPE, snapshot_span
from ._common import EngineSlot

__all__ = ["EventsLogExporter", "EventsSpanExporter", "EventsSpanProcessor"]

_hook_lock = threading.Lock()
_hook_installed = False


def _flush_providers_at_exit(timeout_millis: int = 1000) -> None:
    # Batch processors hold spans until the provider's own atexit shutdown, which
    # runs after the engine's (it registered first): hand them over before that.
    for module, getter in (
        ("opentelemetry.trace", "get_tracer_provider"),
        ("opentelemetry._logs", "get_logger_provider"),
    ):
        try:
            flush = getattr(getattr(sys.modules[module], getter)(), "force_flush", None)
            if callable(flush):
                flush(timeout_millis)
        except Exception:  # noqa: S112 - exit goes on whatever a provider does
            continue


def _install_exit_hook() -> None:
    global _hook_installed  # noqa: PLW0603 - once per process
    with _hook_lock:
        if not _hook_installed:
            _hook_installed = True
            atexit.register(_flush_providers_at_exit)


class _Producer:
    """The engine slot, the shutdown flag and the counters every OTel producer has."""

    def __init__(
        self,
        *,
        gateway_url: str | None = None,
        access_token: str | None = None,
        engine: BatchEngine | None = None,
        **engine_options: Any,
    ) -> None:
        self._slot = EngineSlot(
            engine,
            own=False,
            gateway_url=gateway_url,
            access_token=access_token,
            engine_options=engine_options,
        )
        self._slot.open()  # now, so that the exit hook below runs before the engine's
        _install_exit_hook()
        self._closed = False
        self.oversized = 0
        """Spans submitted whose estimated size is over the body limit (truncated)."""

    @property
    def engine(self) -> BatchEngine | None:
        """The engine this producer submits to."""
        return self._slot.engine

    def _open(self) -> BatchEngine | None:
        if self._closed or on_engine_thread():  # the sender's own spans: no loop
            return None
        return self._slot.engine or self._slot.open()

    def _submit_span(self, engine: BatchEngine, span: ReadableSpan) -> None:
        data = snapshot_span(span)
        if data.oversized:
            self.oversized += 1
        engine.submit(EventItem(SPAN_EVENT_TYPE, data, data.queued_bytes))

    def force_flush(self, timeout_millis: float = 30000) -> bool:
        """
        Wait until what was submitted has been sent; at most *timeout_millis*.

        Returns:
            True if the engine got there in time.
        """
        engine = self._slot.engine
        return engine is None or engine.flush(max(0.0, timeout_millis / 1000))

    def shutdown(self, timeout_millis: float | None = None) -> None:
        """
        Refuse further items and flush within *timeout_millis*; the engine stays.

        ``BatchSpanProcessor`` passes what is left of its timeout; without one the
        wait is the engine's exit budget (3 s), as for ``EventsHandler.close``.
        """
        self._closed = True
        engine = self._slot.engine
        if engine is not None:
            seconds = (
                engine.exit_timeout if timeout_millis is None else timeout_millis / 1000
            )
            self._slot.close(max(0.0, seconds))


class EventsSpanExporter(_Producer, SpanExporter):
    """
    A ``SpanExporter`` whose ``export`` submits each span as a ``trace.span`` event.

    ``export`` never blocks (so it never outlasts a processor's timeout) and returns
    SUCCESS once the engine took the spans, FAILURE after ``shutdown``. Pair it with
    ``SimpleSpanProcessor``. Safe from any thread.

    Args:
        gateway_url: The gateway (else ``COMPUTESDK_GATEWAY_URL``).
        access_token: The sandbox token (else ``COMPUTESDK_ACCESS_TOKEN``).
        engine: An engine to use instead of the process-wide shared one.
        engine_options: ``BatchEngine`` knobs for the shared engine.
    """

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Submit *spans* to the engine; O(len(spans)), never blocks or raises."""
        engine = self._open()
        if engine is None:
            return (
                SpanExportResult.SUCCESS
                if not self._closed
                else SpanExportResult.FAILURE
            )
        for span in spans:
            self._submit_span(engine, span)
        return SpanExportResult.SUCCESS


class EventsSpanProcessor(_Producer, SpanProcessor):
    """
    A ``SpanProcessor`` that submits each sampled span to the engine when it ends.

    No exporter and no second queue: ``on_end`` costs a snapshot of the span with
    its size estimate, and a ``submit``. ``force_flush`` waits for the engine (the
    SDK's processors do not pass it on to an exporter). Arguments as for
    ``EventsSpanExporter``.
    """

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Do nothing: spans are shipped when they end."""

    def on_end(self, span: ReadableSpan) -> None:
        """Submit *span* if it is sampled; never blocks or raises."""
        context = span.context
        if context is not None and context.trace_flags.sampled:
            engine = self._open()
            if engine is not None:
                self._submit_span(engine, span)


class EventsLogExporter(_Producer, LogRecordExporter):
    """
    A ``LogRecordExporter`` whose ``export`` submits ``log.<level>`` events.

    Records map as ``schema.otel_logs`` says (the stdlib handler's shape, with trace
    correlation); ``export`` never blocks. Pair it with ``SimpleLogRecordProcessor``.
    Arguments as for ``EventsSpanExporter``.
    """

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        """Submit the records of *batch*; never blocks or raises."""
        engine = self._open()
        if engine is None:
            return (
                LogRecordExportResult.SUCCESS
                if not self._closed
                else LogRecordExportResult.FAILURE
            )
        for record in batch:
            try:
                data = encode_otel_log_record(record)
            except Exception:  # noqa: S112 - one bad record must not cost the batch
                continue
            engine.submit(
                EventItem(otel_log_event_type(record), data, estimate_size(data))
            )
        return LogRecordExportResult.SUCCESS
