"""
Shared pieces of ``log.<level>`` data: event types, trace ids, exceptions.

See docs/protocol.md#protocol-log-records.

Used by the record snapshot (``_log_snapshot``) and the structlog encoder
(``_log_structlog``) on the application thread, so each is cheap; ``logs`` is the
public face.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Mapping
from types import TracebackType
from typing import Final, TypeAlias

__all__ = [
    "LOG_EVENT_TYPES",
    "STANDARD_RECORD_ATTRIBUTES",
    "ExcInfo",
    "current_trace_ids",
    "encode_exception",
    "log_event_type",
    "resolve_exc_info",
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


def _exception_from_text(text: str) -> dict[str, str]:
    last = text.rstrip("\n").rsplit("\n", 1)[-1]
    exc_type, _, message = last.partition(": ")
    return {"type": exc_type, "message": message, "stacktrace": text.rstrip("\n")}
