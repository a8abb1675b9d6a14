"""OTel log records -> log.<level> data, in the stdlib handler's shape."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from cse_bridge.schema.logs import decode_log_data
from cse_bridge.schema.otel_logs import (
    encode_otel_log_record,
    otel_levelno,
    otel_log_event_type,
)


def fail(exc: Exception) -> None:
    """Raise *exc* (from a frame of its own, so the traceback has one)."""
    raise exc


def readable(**fields: object) -> ReadableLogRecord:
    """A ReadableLogRecord as the SDK's processors hand it to exporters."""
    return ReadableLogRecord(
        log_record=LogRecord(**fields),  # type: ignore[arg-type]
        resource=Resource.create({"service.name": "logs"}),
        instrumentation_scope=InstrumentationScope("app.orders"),
    )


class TestOtelLevels:
    """Severity numbers map onto stdlib levels and event types."""

    @pytest.mark.parametrize(
        ("severity", "levelno", "event_type"),
        [
            (SeverityNumber.TRACE, 1, "log.debug"),
            (SeverityNumber.DEBUG, 10, "log.debug"),
            (SeverityNumber.INFO, 20, "log.info"),
            (SeverityNumber.INFO2, 21, "log.info"),
            (SeverityNumber.WARN, 30, "log.warning"),
            (SeverityNumber.ERROR4, 43, "log.error"),
            (SeverityNumber.FATAL, 50, "log.critical"),
        ],
    )
    def test_severity(
        self, severity: SeverityNumber, levelno: int, event_type: str
    ) -> None:
        """Each OTel range maps to its stdlib level, its step kept as an offset."""
        record = readable(severity_number=severity, body="x")
        assert (levelno, event_type) == (
            otel_levelno(severity),
            otel_log_event_type(record),
        )

    def test_unspecified_falls_back_to_text(self) -> None:
        """Without a severity number the severity text decides, else INFO."""
        assert (30, 20) == (otel_levelno(None, "warn"), otel_levelno(None, None))


class TestEncodeOtelLogRecord:
    """``encode_otel_log_record``: the fields of docs/protocol.md#protocol-log-otel."""

    def test_fields(self) -> None:
        """Body, level, scope, code, exception and trace ids land in their fields."""
        span = TracerProvider().get_tracer("t").start_span("work")
        context = trace.set_span_in_context(span)
        record = readable(
            timestamp=1_700_000_000_000_000_000,
            context=context,
            severity_number=SeverityNumber.ERROR,
            severity_text="ERROR",
            body="charge failed",
            attributes={
                "order": 7,
                "code.file.path": "/app/pay.py",
                "code.function.name": "charge",
                "code.line.number": 12,
                "exception.type": "ValueError",
                "exception.message": "card",
                "exception.stacktrace": "Traceback...\nValueError: card\n",
            },
        )
        data = encode_otel_log_record(record)
        decoded = decode_log_data(data)
        span_context = span.get_span_context()
        assert (
            "charge failed",
            "ERROR",
            40,
            "app.orders",
            1_700_000_000_000_000_000,
        ) == (
            decoded.message,
            decoded.level,
            decoded.levelno,
            decoded.logger,
            decoded.time_unix_nano,
        )
        assert ("/app/pay.py", 12, "charge", "pay") == (
            decoded.source_file,
            decoded.source_line,
            decoded.source_function,
            decoded.source_module,
        )
        assert ("ValueError", "card", "Traceback...\nValueError: card") == (
            decoded.exception_type,
            decoded.exception_message,
            decoded.exception_text,
        )
        assert (
            format(span_context.trace_id, "032x"),
            format(span_context.span_id, "016x"),
        ) == (decoded.trace_id, decoded.span_id)
        assert {"order": 7} == decoded.attributes
        assert "logs" == decoded.resource["service.name"]

    def test_structured_body_and_event_name(self) -> None:
        """A mapping body becomes compact JSON text; an event name is kept."""
        data = encode_otel_log_record(
            readable(body={"k": [1, 2]}, event_name="order.paid")
        )
        assert ('{"k":[1,2]}', "order.paid") == (data["message"], data["eventName"])
        assert "traceId" not in data

    def test_exception_object(self) -> None:
        """A record's exception (Logs API) becomes the exception field."""
        try:
            fail(RuntimeError("down"))
        except RuntimeError as exc:
            data = encode_otel_log_record(readable(body="x", exception=exc))
        exception = data["exception"]
        assert isinstance(exception, dict)
        assert ("RuntimeError", "down") == (exception["type"], exception["message"])
        assert exception["stacktrace"].endswith("RuntimeError: down")
