"""
``OtlpSink``: forwarded events to any OTLP backend, through the official exporters.

``trace.span`` events are re-exported as the spans they were (ids, parents, times,
kind, status, attributes, events, links, resource + the sandbox); every other record
becomes an OTLP log record. Batching is the SDK's ``BatchSpanProcessor`` and
``BatchLogRecordProcessor``; the exporters are the OTLP/HTTP (protobuf) or gRPC ones,
configured by arguments or the standard ``OTEL_EXPORTER_OTLP_*`` variables. While the
endpoint is down each batch is retried; the items in flight are bounded by
``max_queue_size`` per signal, and what does not fit is dropped and counted.

Needs the ``otlp`` extra; ``import cse_bridge`` never imports this module.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final, Literal

from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from ..models import SandboxEvent
from ..schema.spans import SPAN_EVENT_TYPE
from ._otlp_map import log_record, span
from ._otlp_retry import Backlog, RetryingLogExporter, RetryingSpanExporter
from ._unpack import records

__all__ = ["DEFAULT_SCHEDULE_DELAY_MS", "OtlpProtocol", "OtlpSink"]

OtlpProtocol = Literal["http/protobuf", "grpc"]
"""The two OTLP transports (``OTEL_EXPORTER_OTLP_PROTOCOL``)."""
DEFAULT_SCHEDULE_DELAY_MS: Final = 200
"""Batch wait of the processors in ms, short because a forwarder relays."""
_ENV_PROTOCOL: Final = "OTEL_EXPORTER_OTLP_PROTOCOL"


def _protocol(value: str | None) -> OtlpProtocol:
    text = (value or os.environ.get(_ENV_PROTOCOL) or "http/protobuf").strip().lower()
    if text in {"http/protobuf", "http"}:
        return "http/protobuf"
    if text == "grpc":
        return "grpc"
    raise ValueError(f"unsupported OTLP protocol {text!r}: http/protobuf or grpc")


def _exporters(
    endpoint: str | None,
    protocol: OtlpProtocol,
    headers: Mapping[str, str] | None,
    timeout: float | None,
) -> tuple[SpanExporter, LogRecordExporter]:
    hdrs = dict(headers) if headers is not None else None
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
                OTLPLogExporter as GrpcLogs,
            )
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcSpans,
            )
        except ImportError as exc:
            # The otlp extra is HTTP only, so grpcio stays out of most installs.
            raise ImportError(
                "OTLP over gRPC needs the gRPC exporter: "
                "pip install 'cse-bridge[otlp-grpc]'"
            ) from exc

        return (
            GrpcSpans(endpoint=endpoint, headers=hdrs, timeout=timeout),
            GrpcLogs(endpoint=endpoint, headers=hdrs, timeout=timeout),
        )
    from opentelemetry.exporter.otlp.proto.http._log_exporter import (
        OTLPLogExporter as HttpLogs,
    )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpSpans,
    )

    base = endpoint.rstrip("/") if endpoint else None
    return (
        HttpSpans(endpoint=base and base + "/v1/traces", headers=hdrs, timeout=timeout),
        HttpLogs(endpoint=base and base + "/v1/logs", headers=hdrs, timeout=timeout),
    )


class OtlpSink:
    """
    Re-exports events as OTLP spans and log records; ``deliver`` never blocks.

    ``deliver`` maps the event and hands it to the batch processor (their worker
    threads export); call it from one thread at a time. ``flush`` and ``close``
    block up to their timeout.

    Args:
        endpoint: Base URL (``http://collector:4318`` for HTTP, ``:4317`` for gRPC);
            default ``OTEL_EXPORTER_OTLP_[TRACES_|LOGS_]ENDPOINT``, else localhost.
        protocol: ``http/protobuf`` or ``grpc``; default
            ``OTEL_EXPORTER_OTLP_PROTOCOL``, else HTTP.
        headers: Request headers; default ``OTEL_EXPORTER_OTLP_HEADERS``.
        timeout: Seconds per export attempt; default the exporters' (10).
        max_queue_size: Items per signal in flight before new ones are dropped.
        max_export_batch_size: Items per export request.
        schedule_delay_millis: How long a batch may wait to fill.
        span_exporter: Use this exporter for spans instead (tests, custom setups).
        log_exporter: Use this exporter for log records instead.
    """

    name = "otlp"

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        protocol: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        max_queue_size: int = 2048,
        max_export_batch_size: int = 512,
        schedule_delay_millis: float = DEFAULT_SCHEDULE_DELAY_MS,
        span_exporter: SpanExporter | None = None,
        log_exporter: LogRecordExporter | None = None,
    ) -> None:
        self.protocol = _protocol(protocol)
        if span_exporter is None or log_exporter is None:
            spans, logs = _exporters(endpoint, self.protocol, headers, timeout)
            span_exporter, log_exporter = (
                span_exporter or spans,
                log_exporter or logs,
            )
        self._spans_inner, self._logs_inner = span_exporter, log_exporter
        self._span_backlog = Backlog(max_queue_size)
        self._log_backlog = Backlog(max_queue_size)
        batch = min(max_export_batch_size, max_queue_size)
        self._spans = BatchSpanProcessor(
            RetryingSpanExporter(span_exporter, self._span_backlog),
            max_queue_size=max_queue_size,
            max_export_batch_size=batch,
            schedule_delay_millis=schedule_delay_millis,
        )
        self._logs = BatchLogRecordProcessor(
            RetryingLogExporter(log_exporter, self._log_backlog),
            max_queue_size=max_queue_size,
            max_export_batch_size=batch,
            schedule_delay_millis=schedule_delay_millis,
        )
        self._closed = False

    def deliver(self, event: SandboxEvent) -> None:
        """Map *event* and queue it for export (a full backlog drops, counted)."""
        for kind, data in records(event):
            if kind == SPAN_EVENT_TYPE:
                if self._span_backlog.admit():
                    self._spans.on_end(span(event, data))
            elif self._log_backlog.admit():
                self._logs.on_emit(log_record(event, kind, data))

    @property
    def exported(self) -> int:
        """Spans and log records the endpoint accepted so far."""
        return self._span_backlog.exported + self._log_backlog.exported

    def flush(self, timeout: float) -> bool:
        """
        Wait up to *timeout* seconds until everything delivered was exported.

        The processors export on their own within ``schedule_delay_millis``; this
        only waits (a zero timeout just reports whether nothing is in flight).
        """
        return self._span_backlog.wait_empty(timeout) and self._log_backlog.wait_empty(
            timeout
        )

    def close(self, timeout: float) -> None:
        """Export what is in flight within *timeout*, then drop the rest; idempotent."""
        if self._closed:
            return
        self._closed = True
        drained = self.flush(timeout)
        self._span_backlog.give_up()
        self._log_backlog.give_up()
        if not drained:
            # Interrupt the exporters' own retry waits before the processors' final
            # export: a down endpoint must not hold the exit up.
            self._spans_inner.shutdown()
            self._logs_inner.shutdown()  # type: ignore[no-untyped-call]  # SDK: untyped
        self._spans.shutdown()  # type: ignore[no-untyped-call]  # SDK: untyped
        self._logs.shutdown()  # type: ignore[no-untyped-call]  # SDK: untyped

    def drops(self) -> Mapping[str, int]:
        """Items lost, by reason (``backlog_full``, ``send_failed``); any thread."""
        totals: dict[str, int] = {}
        for backlog in (self._span_backlog, self._log_backlog):
            for reason, count in backlog.dropped.items():
                totals[reason] = totals.get(reason, 0) + count
        return totals
