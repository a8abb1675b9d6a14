"""
``LoggingSink``: forwarded events become real ``logging`` records in this process.

``log.<level>`` events (and each record of a ``log.batch``) are rebuilt with
``schema.logs.decode_log_record`` and handled by the logger ``<prefix>.<original
logger>``, so any local handler or formatter works unchanged; other events become
INFO records of ``<prefix>.events`` carrying the type and data.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Final

from ..models import SandboxEvent
from ..schema.logs import decode_log_record
from ._unpack import records

__all__ = ["FORWARDED_ATTR", "LoggingSink", "is_forwarded"]

FORWARDED_ATTR: Final = "cseBridgeForwarded"
"""Set to True on every record a ``LoggingSink`` emits (the no-echo marker)."""
_DATA_PREVIEW: Final = 2000


def _ms(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else "?"


def _summary(data: Mapping[str, object]) -> str:
    """Return one line of an event's data; a span: ``name 12.50 ms OK trace=...``."""
    if "spanId" in data and "traceId" in data and "name" in data:
        status = data.get("status")
        code = status.get("code") if isinstance(status, Mapping) else None
        return (
            f"{data.get('name')} {_ms(data.get('durationMs'))} ms {code or 'UNSET'} "
            f"trace={data.get('traceId')} span={data.get('spanId')}"
        )
    text = json.dumps(data, ensure_ascii=False, default=repr, sort_keys=True)
    return text if len(text) <= _DATA_PREVIEW else text[:_DATA_PREVIEW] + "..."


def is_forwarded(record: logging.LogRecord) -> bool:
    """Return True if *record* was re-emitted by a ``LoggingSink`` (never ship it)."""
    return record.__dict__.get(FORWARDED_ATTR) is True


class LoggingSink:
    """
    Re-emits events into local ``logging``; ``deliver`` runs the local handlers.

    Every record carries ``sandboxId``, ``workspaceId``, ``eventId``, ``eventType``
    and the ``FORWARDED_ATTR`` marker, and for log events also the original
    ``extra=`` attributes and ``otelTraceID``/``otelSpanID``. A record is only built
    if its logger is enabled for its level. Call from one thread at a time (the
    forwarder's sink thread); it blocks as long as the local handlers do.

    Args:
        prefix: Logger name prefix (``sandbox`` gives ``sandbox.app.db``).
        events_level: Level of the records made from non-log events.
    """

    name = "logging"

    def __init__(self, prefix: str = "sandbox", *, events_level: int = logging.INFO):
        self.prefix = prefix.rstrip(".")
        self.events_level = events_level
        self._events_logger = logging.getLogger(self._logger_name("events"))

    def _logger_name(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def deliver(self, event: SandboxEvent) -> None:
        """Emit one record per log record in *event*, or one for another event."""
        for kind, data in records(event):
            if kind.startswith("log."):
                self._emit_log(event, kind, data)
            else:
                self._emit_other(event, kind, data)

    def _mark(self, record: logging.LogRecord, event: SandboxEvent, kind: str) -> None:
        record.__dict__.update(
            {
                "sandboxId": event.sandbox_id,
                "workspaceId": event.workspace_id,
                "eventId": event.id,
                "eventType": kind,
                FORWARDED_ATTR: True,
            }
        )

    def _emit_log(
        self, event: SandboxEvent, kind: str, data: Mapping[str, object]
    ) -> None:
        prefix = self.prefix + "." if self.prefix else ""
        record = decode_log_record(data, logger_prefix=prefix)
        target = logging.getLogger(record.name)
        if not target.isEnabledFor(record.levelno):
            return
        self._mark(record, event, kind)
        target.handle(record)

    def _emit_other(
        self, event: SandboxEvent, kind: str, data: Mapping[str, object]
    ) -> None:
        target = self._events_logger
        if not target.isEnabledFor(self.events_level):
            return
        record = target.makeRecord(
            target.name, self.events_level, "", 0, "%s %s", (kind, _summary(data)), None
        )
        created = event.timestamp / 1000
        record.relativeCreated += (created - record.created) * 1000
        record.created, record.msecs = created, event.timestamp % 1000
        self._mark(record, event, kind)
        record.__dict__["eventData"] = dict(data)
        target.handle(record)

    def flush(self, timeout: float) -> bool:
        """Nothing is buffered here (the handlers flush themselves); returns True."""
        return True

    def close(self, timeout: float) -> None:
        """Nothing to release: the loggers and handlers are the application's."""

    def drops(self) -> Mapping[str, int]:
        """No drops of its own: returns an empty mapping."""
        return {}
