"""
Decoding ``log.<level>`` data back into fields or a ``logging.LogRecord``.

See docs/protocol.md#protocol-round-trip.

Runs in the subscriber and accepts whatever JSON arrived, falling back to defaults;
``logs`` is the public face.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from ._log_encode import STANDARD_RECORD_ATTRIBUTES, _safe_str

__all__ = ["DecodedLog", "decode_log_data", "decode_log_record"]


@dataclass(frozen=True, slots=True)
class DecodedLog:
    """The fields of a ``log.<level>`` event, as the subscriber rebuilds a record."""

    message: str = ""
    level: str = "INFO"
    levelno: int = logging.INFO
    logger: str = ""
    time_unix_nano: int = 0
    source_file: str = ""
    source_line: int = 0
    source_function: str = ""
    source_module: str = ""
    process_id: int | None = None
    process_name: str | None = None
    thread_id: int | None = None
    thread_name: str | None = None
    exception_type: str | None = None
    exception_message: str | None = None
    exception_text: str | None = None
    """The formatted traceback, as ``LogRecord.exc_text``."""
    stack: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    attributes: dict[str, object] = field(default_factory=dict)
    resource: dict[str, object] = field(default_factory=dict)

    @property
    def created(self) -> float:
        """The time as ``LogRecord.created``: seconds since the epoch."""
        return self.time_unix_nano / 1e9


def _str(obj: object, key: str) -> str | None:
    value = obj.get(key) if isinstance(obj, Mapping) else None
    return value if isinstance(value, str) else None


def _int(obj: object, key: str) -> int | None:
    value = obj.get(key) if isinstance(obj, Mapping) else None
    # bool is an int subclass, but never a valid line, id or time.
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _dict(obj: object, key: str) -> dict[str, object]:
    value = obj.get(key) if isinstance(obj, Mapping) else None
    return {str(k): v for k, v in value.items()} if isinstance(value, Mapping) else {}


def decode_log_data(data: Mapping[str, object]) -> DecodedLog:
    """
    Return the fields of a ``log.<level>`` event's *data*; never raises.

    Missing or mistyped fields get the defaults of ``DecodedLog``; a missing
    ``levelno`` is looked up from ``level``.
    """
    level = _str(data, "level") or "INFO"
    levelno = _int(data, "levelno")
    if levelno is None:
        found = logging.getLevelName(level.upper())
        levelno = found if isinstance(found, int) else logging.INFO
    source, process = data.get("source"), data.get("process")
    thread, exception = data.get("thread"), data.get("exception")
    message = data.get("message", "")
    return DecodedLog(
        message=message if isinstance(message, str) else _safe_str(message),
        level=level,
        levelno=levelno,
        logger=_str(data, "logger") or "",
        time_unix_nano=_int(data, "timeUnixNano") or 0,
        source_file=_str(source, "file") or "",
        source_line=_int(source, "line") or 0,
        source_function=_str(source, "function") or "",
        source_module=_str(source, "module") or "",
        process_id=_int(process, "pid"),
        process_name=_str(process, "name"),
        thread_id=_int(thread, "id"),
        thread_name=_str(thread, "name"),
        exception_type=_str(exception, "type"),
        exception_message=_str(exception, "message"),
        exception_text=_str(exception, "stacktrace"),
        stack=_str(data, "stack"),
        trace_id=_str(data, "traceId"),
        span_id=_str(data, "spanId"),
        attributes=_dict(data, "attributes"),
        resource=_dict(data, "resource"),
    )


def decode_log_record(
    data: Mapping[str, object], *, logger_prefix: str = ""
) -> logging.LogRecord:
    """
    Rebuild a ``logging.LogRecord`` from a ``log.<level>`` event's *data*.

    The message is final (``args`` is empty); the traceback is ``exc_text`` (there is
    no live exception); attributes become record attributes unless they would shadow a
    standard one; trace ids become ``otelTraceID``/``otelSpanID`` as OpenTelemetry's
    logging instrumentation names them.

    Args:
        data: The event's data.
        logger_prefix: Prepended to the logger name (``"sandbox."``), to route
            forwarded records to their own loggers. A record without a logger name
            (the root logger) gets the prefix without its trailing dot
            (``"sandbox"``), or ``"root"`` when there is no prefix.
    """
    log = decode_log_data(data)
    record = logging.LogRecord(
        name=(
            logger_prefix + log.logger
            if log.logger
            else logger_prefix.rstrip(".") or "root"
        ),
        level=log.levelno,
        pathname=log.source_file,
        lineno=log.source_line,
        msg=log.message,
        args=None,
        exc_info=None,
        func=log.source_function or None,
        sinfo=log.stack,
    )
    created = log.created
    record.__dict__.update(
        {k: v for k, v in log.attributes.items() if k not in STANDARD_RECORD_ATTRIBUTES}
    )
    record.levelname = log.level
    # Shift relativeCreated by as much as created moves, as LogRecord computes it.
    record.relativeCreated += (created - record.created) * 1000
    record.created = created
    record.msecs = int(created * 1000) % 1000
    record.exc_text = log.exception_text
    record.module = log.source_module or record.module
    record.process, record.processName = log.process_id, log.process_name
    record.thread, record.threadName = log.thread_id, log.thread_name
    if log.trace_id is not None:
        record.__dict__["otelTraceID"] = log.trace_id
        record.__dict__["otelSpanID"] = log.span_id
    return record
