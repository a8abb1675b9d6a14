"""
structlog event dicts as ``log.<level>`` data; ``logs`` is the public face.

See docs/protocol.md#protocol-log-structlog.

Runs on the logging thread: ``exc_info=True`` means the exception being handled there.
Nothing here imports structlog.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Final

from ._log_encode import (
    _exception_from_text,
    _safe_str,
    current_trace_ids,
    encode_exception,
    resolve_exc_info,
)

__all__ = ["encode_structlog_event"]

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


def _time_ns(record: logging.LogRecord) -> int:
    created_ns = getattr(record, "created_ns", None)
    return created_ns if isinstance(created_ns, int) else int(record.created * 1e9)


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
