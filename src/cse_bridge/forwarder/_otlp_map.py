"""
Events as OpenTelemetry data: ``trace.span`` to a ``ReadableSpan``, the rest to logs.

Spans come from ``schema.spans.decode_span`` with ``computesdk.sandbox.id`` and
``computesdk.workspace.id`` added to their resource. ``log.<level>`` records become
OTel log records (severity, body, attributes, the ``code.*`` and ``exception.*``
attributes, trace context, the logger as instrumentation scope); other events become
log records whose body is the event's data and whose event name is its type.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Final

from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.context import Context
from opentelemetry.sdk._logs import ReadWriteLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    TraceFlags,
    set_span_in_context,
)
from opentelemetry.util.types import AnyValue

from ..models import SandboxEvent
from ..schema.logs import decode_log_data
from ..schema.spans import SPAN_EVENT_TYPE, decode_attributes, decode_span

__all__ = ["SANDBOX_ATTR", "WORKSPACE_ATTR", "log_record", "span"]

SANDBOX_ATTR: Final = "computesdk.sandbox.id"
WORKSPACE_ATTR: Final = "computesdk.workspace.id"
EVENT_ID_ATTR: Final = "computesdk.event.id"
EVENT_TYPE_ATTR: Final = "computesdk.event.type"
# stdlib level -> the first OTel severity of its range (WARNING+2 is WARN3).
_SEVERITIES: Final = ((50, 21), (40, 17), (30, 13), (20, 9), (10, 5), (1, 1))


def severity(levelno: int) -> SeverityNumber:
    """Return the OTel severity of a stdlib level (``logging.WARNING`` is WARN)."""
    for level, first in _SEVERITIES:
        if levelno >= level:
            return SeverityNumber(first + min(levelno - level, 3))
    return SeverityNumber.UNSPECIFIED


def _resource(event: SandboxEvent, extra: object) -> Resource:
    attributes = decode_attributes(extra)
    attributes[SANDBOX_ATTR] = event.sandbox_id
    attributes[WORKSPACE_ATTR] = event.workspace_id
    return Resource({k: v for k, v in attributes.items() if v is not None})


def span(event: SandboxEvent, data: Mapping[str, object]) -> ReadableSpan:
    """Rebuild the span of a ``trace.span`` event, with the sandbox in its resource."""
    resource = data.get("resource")
    merged = dict(resource) if isinstance(resource, Mapping) else {}
    merged[SANDBOX_ATTR] = event.sandbox_id
    merged[WORKSPACE_ATTR] = event.workspace_id
    return decode_span({**data, "resource": merged})


def _context(trace_id: str | None, span_id: str | None) -> Context | None:
    try:
        tid, sid = int(trace_id or "", 16), int(span_id or "", 16)
    except ValueError:
        return None
    ctx = SpanContext(tid, sid, is_remote=True, trace_flags=TraceFlags(1))
    return set_span_in_context(NonRecordingSpan(ctx))


def _clean(attributes: Mapping[str, AnyValue]) -> dict[str, AnyValue]:
    return {k: v for k, v in attributes.items() if v is not None}


def log_record(
    event: SandboxEvent, kind: str, data: Mapping[str, object]
) -> ReadWriteLogRecord:
    """Return the OTel log record of one ``log.*`` record or of another event."""
    now = time.time_ns()
    base: dict[str, AnyValue] = {EVENT_ID_ATTR: event.id, EVENT_TYPE_ATTR: kind}
    if kind == SPAN_EVENT_TYPE or not kind.startswith("log."):
        record = LogRecord(
            timestamp=event.timestamp * 1_000_000,
            observed_timestamp=now,
            severity_text="INFO",
            severity_number=SeverityNumber.INFO,
            body=decode_attributes(data),
            attributes=base,
            event_name=kind,
        )
        return ReadWriteLogRecord(
            record,
            resource=_resource(event, None),
            instrumentation_scope=InstrumentationScope("computesdk.events"),
        )
    log = decode_log_data(data)
    attributes = _clean(decode_attributes(log.attributes))
    attributes.update(base)
    optional: dict[str, AnyValue] = {
        "code.file.path": log.source_file or None,
        "code.function.name": log.source_function or None,
        "code.line.number": log.source_line or None,
        "exception.type": log.exception_type,
        "exception.message": log.exception_message,
        "exception.stacktrace": log.exception_text,
        "code.stacktrace": log.stack,
        "thread.id": log.thread_id,
        "thread.name": log.thread_name,
        "process.pid": log.process_id,
    }
    attributes.update(_clean(optional))
    record = LogRecord(
        timestamp=log.time_unix_nano or event.timestamp * 1_000_000,
        observed_timestamp=now,
        context=_context(log.trace_id, log.span_id),
        severity_text=log.level,
        severity_number=severity(log.levelno),
        body=log.message,
        attributes=attributes,
    )
    return ReadWriteLogRecord(
        record,
        resource=_resource(event, log.resource),
        instrumentation_scope=InstrumentationScope(log.logger or "root"),
    )
