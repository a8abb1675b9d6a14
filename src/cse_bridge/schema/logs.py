"""
Log records as events (SPEC §2): ``logging.LogRecord`` and structlog event dicts.

Encoders run on the application thread, so they are cheap and never format more than
they must: they take a snapshot (the message with its args applied, a shallow copy of
the ``extra=`` fields) whose values the engine's worker makes JSON-safe later. Decoders
run in the subscriber and accept whatever JSON arrived, falling back to defaults.
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Final, TypeAlias

__all__ = [
    "LOG_EVENT_TYPES",
    "STANDARD_RECORD_ATTRIBUTES",
    "DecodedLog",
    "ExcInfo",
    "LogRecordData",
    "current_trace_ids",
    "decode_log_data",
    "decode_log_record",
    "encode_exception",
    "encode_log_record",
    "encode_structlog_event",
    "estimate_size",
    "log_event_type",
    "resolve_exc_info",
    "snapshot_log_record",
]

ExcInfo: TypeAlias = (
    "tuple[type[BaseException], BaseException, TracebackType | None]"
    " | tuple[None, None, None]"
)
"""The ``sys.exc_info()`` triple a ``LogRecord`` carries in ``exc_info``."""

LOG_EVENT_TYPES: Final[Mapping[int, str]] = {
    logging.DEBUG: "log.debug",
    logging.INFO: "log.info",
    logging.WARNING: "log.warning",
    logging.ERROR: "log.error",
    logging.CRITICAL: "log.critical",
}
"""Event type of each standard level; other levels map to the nearest lower one."""

STANDARD_RECORD_ATTRIBUTES: Final = frozenset(
    {
        *vars(logging.LogRecord("", 0, "", 0, "", None, None)),
        "message",  # set by Formatter.format
        "asctime",  # set by Formatter.format
        "taskName",  # Python 3.12+
        "created_ns",  # Python 3.13+ in some builds
    }
)
"""Attributes every ``LogRecord`` has; the others are the ``extra=`` fields."""

_STRUCTLOG_LEVELS: Final[Mapping[str, int]] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "msg": logging.INFO,
    "log": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "err": logging.ERROR,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}
# Keys of a structlog event dict that become fields of their own, not attributes;
# "_record" and "_from_structlog" are ProcessorFormatter's bookkeeping.
_STRUCTLOG_RESERVED: Final = frozenset(
    {"event", "level", "logger", "timestamp", "exc_info", "exception", "stack"}
    | {"stack_info", "_record", "_from_structlog", "_logger", "_name"}
)
_NONE_EXC: Final = (None, None, None)
_type_cache: dict[int, str] = {}


def log_event_type(levelno: int) -> str:
    """
    Return the event type of a level: ``log.debug`` ... ``log.critical``.

    A custom level maps to the nearest standard level below it (25 is ``log.info``);
    anything below DEBUG is ``log.debug``. Cheap: one dict lookup after the first call.
    """
    event_type = _type_cache.get(levelno)
    if event_type is None:
        standard = max((lv for lv in LOG_EVENT_TYPES if lv <= levelno), default=10)
        event_type = _type_cache.setdefault(levelno, LOG_EVENT_TYPES[standard])
    return event_type


def current_trace_ids() -> tuple[str, str] | None:
    """
    Return the active OpenTelemetry span's (traceId, spanId) as lowercase hex, or None.

    Costs one dict lookup when OpenTelemetry was never imported: no span can be active
    then, so it is not imported here either.
    """
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:  # a broken __str__ must not escape into the application
        return f"<unprintable {type(value).__name__}>"


def _type_name(exc_type: type[BaseException]) -> str:
    module = exc_type.__module__
    if module in ("builtins", "__main__"):
        return exc_type.__qualname__
    return f"{module}.{exc_type.__qualname__}"


def resolve_exc_info(value: object) -> ExcInfo | None:
    """
    Turn an ``exc_info`` value (a triple, an exception, or True) into a triple.

    True means the exception being handled on the calling thread, so call it there.
    Returns None when there is no exception.
    """
    if isinstance(value, BaseException):
        return type(value), value, value.__traceback__
    if isinstance(value, tuple) and len(value) == 3:  # noqa: PLR2004 - a triple
        exc = value[1]
        if isinstance(exc, BaseException):
            return (
                type(exc),
                exc,
                value[2] if isinstance(value[2], TracebackType) else None,
            )
        return None
    if value:
        info = sys.exc_info()
        return None if info[1] is None else info
    return None


def encode_exception(exc_info: ExcInfo, *, text: str | None = None) -> dict[str, str]:
    """
    Return ``{"type", "message", "stacktrace"}`` for an exception triple.

    *text* is an already formatted traceback (``record.exc_text``), reused when given.
    The stacktrace has no trailing newline, like ``Formatter.formatException``.
    """
    exc_type, exc, tb = exc_info
    if exc_type is None:
        return {"type": "", "message": "", "stacktrace": text or ""}
    if not text:
        text = "".join(traceback.format_exception(exc_type, exc, tb))
    return {
        "type": _type_name(exc_type),
        "message": _safe_str(exc),
        "stacktrace": text.removesuffix("\n"),
    }


def _time_ns(record: logging.LogRecord) -> int:
    created_ns = getattr(record, "created_ns", None)
    return created_ns if isinstance(created_ns, int) else int(record.created * 1e9)


# Memory a queued snapshot holds, measured with tracemalloc on CPython 3.11 (see
# tests/schema/test_logs.py): the engine's byte bound counts memory, not JSON bytes.
_BASE_SIZE: Final = 900
"""An ``EventItem`` with its ``LogRecordData`` and copy of a plain record's dict."""
_EXTRAS_SIZE: Final = 600
"""The record's dict grows past a size step once it has ``extra=`` fields."""
_EXTRA_SIZE: Final = 32
"""Each ``extra=`` field: a dict entry and a small value of its own."""
_EXCEPTION_SIZE: Final = 300
"""The exception's dict and its three strings, beyond the traceback's length."""
_STANDARD_COUNT: Final = len(vars(logging.LogRecord("", 0, "", 0, "", None, None)))


class LogRecordData(Mapping[str, object]):
    """
    The ``data`` of a ``log.<level>`` event, built from a record snapshot when read.

    ``snapshot_log_record`` makes it on the logging thread from what must be taken
    there (the message, a shallow copy of the record's attributes, the active span,
    the traceback); the mapping itself is built on first access, on the engine's
    worker. Read it like a dict; it does not change once built. Thread-safe.
    """

    __slots__ = ("_data", "_exception", "_message", "_resource", "_snapshot", "_trace")

    def __init__(
        self,
        snapshot: dict[str, object],
        message: str,
        *,
        resource: Mapping[str, object],
        exception: dict[str, str] | None,
        trace: tuple[str, str] | None,
    ) -> None:
        self._snapshot, self._message, self._resource = snapshot, message, resource
        self._exception, self._trace = exception, trace
        self._data: dict[str, object] | None = None

    @property
    def size_hint(self) -> int:
        """
        The memory the queued snapshot holds, in bytes, for the queue's byte bound.

        Cheap: a fixed overhead plus the lengths of the strings that vary. It errs on
        the high side so the bound holds real memory (the JSON is about half of it).
        """
        size = _BASE_SIZE + len(self._message)
        extras = len(self._snapshot) - _STANDARD_COUNT
        if extras > 0:
            size += _EXTRAS_SIZE + _EXTRA_SIZE * extras
        exception = self._exception
        if exception is not None:
            size += (
                _EXCEPTION_SIZE
                + len(exception["stacktrace"])
                + len(exception["message"])
            )
        return size

    def build(self) -> dict[str, object]:
        """Return the event data as a plain dict (built once, then shared)."""
        data = self._data
        if data is None:
            data = self._data = _build_log_data(
                self._snapshot, self._message, self._resource, self._exception,
                self._trace,
            )  # fmt: skip
        return data

    def __getitem__(self, key: str) -> object:
        return self.build()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.build())

    def __len__(self) -> int:
        return len(self.build())

    def __repr__(self) -> str:
        return f"LogRecordData({self.build()!r})"


def _build_log_data(
    attrs: Mapping[str, object],
    message: str,
    resource: Mapping[str, object],
    exception: dict[str, str] | None,
    trace: tuple[str, str] | None,
) -> dict[str, object]:
    created_ns, created = attrs.get("created_ns"), attrs.get("created")
    if not isinstance(created_ns, int):
        created_ns = int(created * 1e9) if isinstance(created, (int, float)) else 0
    data: dict[str, object] = {
        "message": message,
        "level": attrs.get("levelname"),
        "levelno": attrs.get("levelno"),
        "logger": attrs.get("name"),
        "timeUnixNano": created_ns,
        "source": {
            "file": attrs.get("pathname"),
            "line": attrs.get("lineno"),
            "function": attrs.get("funcName"),
            "module": attrs.get("module"),
        },
        "process": {"pid": attrs.get("process"), "name": attrs.get("processName")},
        "thread": {"id": attrs.get("thread"), "name": attrs.get("threadName")},
    }
    if exception is not None:
        data["exception"] = exception
    stack = attrs.get("stack_info")
    if stack:
        data["stack"] = stack
    if trace is not None:
        data["traceId"], data["spanId"] = trace
    data["attributes"] = {
        key: value
        for key, value in attrs.items()
        if key not in STANDARD_RECORD_ATTRIBUTES
    }
    data["resource"] = resource
    return data


def snapshot_log_record(
    record: logging.LogRecord,
    *,
    resource: Mapping[str, object] | None = None,
    message: str | None = None,
) -> LogRecordData:
    """
    Take what the ``log.<level>`` event of *record* needs, on the thread that logged.

    Applies the args to the message, copies the record's attributes (so ``extra=``
    fields are a shallow copy), resolves the active span and formats the traceback
    now; everything else waits until the data is read. Costs about a microsecond
    without an exception.

    Args:
        record: The record to encode.
        resource: The resource attributes (``service.name``, ...), shared, not copied.
        message: The message to ship instead of ``record.getMessage()`` (a formatter's
            output).
    """
    exception = None
    exc_info = record.exc_info
    attrs = record.__dict__.copy()
    # The message is formatted now, so the args are not needed later; nor is the
    # traceback once its text is taken. Not keeping them keeps the application's
    # objects (and a traceback's frames) out of the queue and its memory bound.
    attrs["args"] = None
    if exc_info:
        attrs["exc_info"] = None
        if exc_info[0] is not None:
            exception = encode_exception(exc_info, text=record.exc_text)
    if exception is None and record.exc_text:
        # a rebuilt or forwarded record: the text is all there is
        exception = _exception_from_text(record.exc_text)
    return LogRecordData(
        attrs,
        record.getMessage() if message is None else message,
        resource=resource if resource is not None else {},
        exception=exception,
        trace=current_trace_ids(),
    )


def encode_log_record(
    record: logging.LogRecord,
    *,
    resource: Mapping[str, object] | None = None,
    message: str | None = None,
) -> dict[str, object]:
    """
    Return the ``data`` of the ``log.<level>`` event for *record* (SPEC §2).

    Call it on the thread that logged: it applies the args to the message now and
    resolves the active span. Values are not made JSON-safe here; nested values of
    ``extra=`` fields are shared, the top level is copied. ``snapshot_log_record`` is
    the same, with the building deferred.

    Args:
        record: The record to encode.
        resource: The resource attributes (``service.name``, ...), shared, not copied.
        message: The message to ship instead of ``record.getMessage()`` (a formatter's
            output).
    """
    return snapshot_log_record(record, resource=resource, message=message).build()


def _parse_timestamp(value: object) -> int | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value * 1e9)
    if isinstance(value, str):
        try:  # TimeStamper(fmt="iso"); Python 3.10 does not read a trailing Z
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return int(parsed.timestamp() * 1e9)
    return None


def _exception_from_text(text: str) -> dict[str, str]:
    last = text.rstrip("\n").rsplit("\n", 1)[-1]
    exc_type, _, message = last.partition(": ")
    return {"type": exc_type, "message": message, "stacktrace": text.rstrip("\n")}


def _exception_from_dicts(stacks: list[object]) -> dict[str, str] | None:
    first = stacks[0] if stacks else None
    if not isinstance(first, Mapping):
        return None
    lines = ["Traceback (most recent call last):"]
    for frame in first.get("frames") or ():
        if isinstance(frame, Mapping):
            lines.append(
                f'  File "{frame.get("filename")}", line {frame.get("lineno")},'
                f" in {frame.get('name')}"
            )
    exc_type, message = (
        _safe_str(first.get("exc_type")),
        _safe_str(first.get("exc_value")),
    )
    lines.append(f"{exc_type}: {message}")
    return {"type": exc_type, "message": message, "stacktrace": "\n".join(lines)}


def encode_structlog_event(
    event_dict: Mapping[str, object],
    *,
    method_name: str | None = None,
    logger_name: str | None = None,
    resource: Mapping[str, object] | None = None,
    record: logging.LogRecord | None = None,
) -> dict[str, object]:
    """
    Return the ``data`` of the ``log.<level>`` event for a structlog event dict.

    ``event`` becomes the message; ``level`` (else *method_name*), ``logger`` (else
    *logger_name*), ``timestamp`` (epoch seconds or ISO 8601, else now),
    ``exc_info``/``exception`` and ``stack`` their fields; every other key an
    attribute. Call it on the logging thread: ``exc_info=True`` means the exception
    being handled there. *record* is the stdlib record that carried the dict through
    ``ProcessorFormatter.wrap_for_formatter``; it supplies source, process and thread.
    """
    level_name = _safe_str(event_dict.get("level") or method_name or "info").lower()
    levelno = _STRUCTLOG_LEVELS.get(level_name, logging.INFO)
    event = event_dict.get("event")
    timestamp = _parse_timestamp(event_dict.get("timestamp"))
    attributes = {k: v for k, v in event_dict.items() if k not in _STRUCTLOG_RESERVED}
    if timestamp is None and "timestamp" in event_dict:
        attributes["timestamp"] = event_dict["timestamp"]
    if timestamp is None:
        timestamp = _time_ns(record) if record is not None else time.time_ns()
    logger = event_dict.get("logger") or logger_name
    if logger is None and record is not None:
        logger = record.name
    data: dict[str, object] = {
        "message": event if isinstance(event, str) else _safe_str(event),
        "level": logging.getLevelName(levelno),
        "levelno": levelno,
        "logger": _safe_str(logger or ""),
        "timeUnixNano": timestamp,
    }
    if record is not None:
        data["source"] = {
            "file": record.pathname,
            "line": record.lineno,
            "function": record.funcName,
            "module": record.module,
        }
        data["process"] = {"pid": record.process, "name": record.processName}
        data["thread"] = {"id": record.thread, "name": record.threadName}
    exc_info = resolve_exc_info(event_dict.get("exc_info"))
    rendered = event_dict.get("exception")
    if exc_info is not None:
        data["exception"] = encode_exception(exc_info)
    elif isinstance(rendered, str):
        data["exception"] = _exception_from_text(rendered)
    elif isinstance(rendered, list) and (exception := _exception_from_dicts(rendered)):
        data["exception"] = exception
    stack = event_dict.get("stack") or event_dict.get("stack_info")
    if isinstance(stack, str):
        data["stack"] = stack
    ids = current_trace_ids()
    if ids is not None:
        data["traceId"], data["spanId"] = ids
    data["attributes"] = attributes
    data["resource"] = resource if resource is not None else {}
    return data


def estimate_size(data: Mapping[str, object]) -> int:
    """
    Return a cheap guess of the memory *data* holds in the queue, in bytes.

    Counts a fixed overhead (the dict and its nested ones), the message, the
    traceback and 64 bytes an attribute; calibrated like ``LogRecordData.size_hint``.
    """
    size = 640 + len(_safe_str(data.get("message", "")))
    exception = data.get("exception")
    if isinstance(exception, Mapping):
        size += _EXCEPTION_SIZE + len(exception.get("stacktrace", ""))
    attributes = data.get("attributes")
    if isinstance(attributes, Mapping):
        size += 64 * len(attributes)
    return size


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
