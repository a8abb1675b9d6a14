"""
OpenTelemetry log records as ``log.<level>`` events, shaped like the stdlib's.

See docs/protocol.md#protocol-log-otel.

A ``ReadableLogRecord`` of the OTel logs pipeline (``LoggingHandler``, or the Logs API)
maps onto the same fields as ``schema.logs.encode_log_record``: severity number to
``level``/``levelno``, body to ``message``, the instrumentation scope to ``logger``, the
``code.*`` attributes to ``source``, the ``exception.*`` attributes (or the record's
exception) to ``exception``, the record's trace context to ``traceId``/``spanId``, and
the other attributes to ``attributes``. ``decode_log_data`` reads the result back.

Needs the ``otel`` extra; ``import cse_bridge`` never imports this module.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Final

from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import ReadableLogRecord

from .._json import to_json_safe
from .logs import encode_exception, log_event_type

__all__ = ["encode_otel_log_record", "otel_levelno", "otel_log_event_type"]

# The first severity number of each OTel range and the stdlib level it stands for.
# The number within the range is kept as an offset, as ``std_to_otel`` maps it:
# INFO2 is 21, like the stdlib level 21 that the SDK's handler maps to INFO2.
_RANGES: Final = ((21, 50), (17, 40), (13, 30), (9, 20), (5, 10), (1, 1))
_LEVEL_NAMES: Final[Mapping[int, str]] = {
    1: "TRACE",
    10: "DEBUG",
    20: "INFO",
    30: "WARNING",
    40: "ERROR",
    50: "CRITICAL",
}
_TEXT_LEVELS: Final[Mapping[str, int]] = {
    "TRACE": 1,
    "DEBUG": 10,
    "INFO": 20,
    "WARN": 30,
    "WARNING": 30,
    "ERROR": 40,
    "FATAL": 50,
    "CRITICAL": 50,
}
_SOURCE_KEYS: Final = ("code.file.path", "code.function.name", "code.line.number")
_EXCEPTION_KEYS: Final = ("exception.type", "exception.message", "exception.stacktrace")


def otel_levelno(severity: SeverityNumber | None, text: str | None = None) -> int:
    """
    Return the stdlib level number of an OTel severity (``WARN3`` is 32).

    An unspecified severity falls back to *text* (``"WARN"``, ``"error"``), else INFO.
    """
    number = severity.value if severity is not None else 0
    for first, level in _RANGES:
        if number >= first:
            return level + min(number - first, 3)
    return _TEXT_LEVELS.get((text or "").upper(), 20)


def otel_log_event_type(record: ReadableLogRecord) -> str:
    """Return the ``log.<level>`` type of *record* (TRACE is ``log.debug``)."""
    api = record.log_record
    return log_event_type(otel_levelno(api.severity_number, api.severity_text))


def _message(body: object) -> str:
    if isinstance(body, str):
        return body
    if body is None:
        return ""
    # A structured body (a mapping, a list) stays readable and parseable as JSON.
    return json.dumps(to_json_safe(body), ensure_ascii=False, separators=(",", ":"))


def encode_otel_log_record(record: ReadableLogRecord) -> dict[str, object]:
    """
    Return the ``data`` of the ``log.<level>`` event of an OTel *record*.

    See docs/protocol.md#protocol-log-otel.

    The same shape as a stdlib record's, without ``thread`` (the SDK does not keep
    it); ``process.pid`` is this process's. An ``eventName`` is added when the
    record has one, and ``dropped`` when attributes were dropped. Values are not made
    JSON-safe here (the engine does it). CPU only; safe from any thread.
    """
    api = record.log_record
    attributes = dict(api.attributes) if api.attributes else {}
    levelno = otel_levelno(api.severity_number, api.severity_text)
    file, function, line = (attributes.pop(key, None) for key in _SOURCE_KEYS)
    file_name = file if isinstance(file, str) else None
    scope = record.instrumentation_scope
    timestamp = api.timestamp or api.observed_timestamp or 0
    data: dict[str, object] = {
        "message": _message(api.body),
        "level": _LEVEL_NAMES[max(k for k in _LEVEL_NAMES if k <= levelno)],
        "levelno": levelno,
        "logger": scope.name if scope is not None else "",
        "timeUnixNano": timestamp,
        "source": {
            "file": file_name,
            "line": line,
            "function": function,
            "module": (
                os.path.splitext(os.path.basename(file_name))[0] if file_name else None
            ),
        },
        "process": {"pid": os.getpid(), "name": None},
    }
    exc_type, exc_message, stacktrace = (
        attributes.pop(key, None) for key in _EXCEPTION_KEYS
    )
    exception = getattr(api, "exception", None)
    if exc_type is not None or stacktrace is not None:
        data["exception"] = {
            "type": str(exc_type or ""),
            "message": str(exc_message or ""),
            "stacktrace": str(stacktrace or "").removesuffix("\n"),
        }
    elif isinstance(exception, BaseException):
        data["exception"] = encode_exception(
            (type(exception), exception, exception.__traceback__)
        )
    if api.trace_id and api.span_id:
        data["traceId"] = format(api.trace_id, "032x")
        data["spanId"] = format(api.span_id, "016x")
    if api.event_name:
        data["eventName"] = api.event_name
    data["attributes"] = attributes
    data["resource"] = dict(record.resource.attributes)
    if record.dropped_attributes:
        data["dropped"] = {"attributes": record.dropped_attributes}
    return data
