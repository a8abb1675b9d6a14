"""
``EventsHandler``: every ``logging`` record becomes a ``log.<level>`` event.

See docs/protocol.md#protocol-log-records.

``logging.config.dictConfig`` example (every option is a simple value)::

    {"version": 1, "handlers": {"events": {
        "class": "cse_bridge.integrations.logging.EventsHandler",
        "level": "INFO", "service_name": "worker", "capture_uncaught": True}},
     "root": {"level": "INFO", "handlers": ["events"]}}
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ..engine import BatchEngine, EventItem, on_engine_thread
from ..schema.logs import (
    encode_structlog_event,
    estimate_size,
    log_event_type,
    snapshot_log_record,
)
from ._common import EngineSlot, install_excepthook

__all__ = ["EventsHandler", "install_excepthook"]

_OWN = "cse_bridge."
# cse_bridge.forwarder.FORWARDED_ATTR, spelled out: the handler must not import the
# forwarder package. A record the forwarder re-emitted locally is never shipped back.
_FORWARDED = "cseBridgeForwarded"


class EventsHandler(logging.Handler):
    """
    Ship records as events through the engine; ``emit`` never blocks and never raises.

    ``emit`` formats the message (the formatter's output if one is set, else
    ``record.getMessage()``), copies the ``extra=`` fields shallowly and hands the
    snapshot to ``BatchEngine.submit``; the worker makes it JSON-safe and sends it.
    Records of ``cse_bridge.*`` loggers, of the engine's own threads, and those the
    forwarder re-emitted (``cseBridgeForwarded``) are dropped.
    Records that ``ProcessorFormatter.wrap_for_formatter`` carries are mapped like
    structlog events. Safe from any thread.

    Args:
        level: The handler's level.
        event_type: Ship every record with this type instead of ``log.<level>``.
        resource: Resource attributes added to every event.
        service_name: Shorthand for ``resource["service.name"]``.
        gateway_url: The gateway (else ``COMPUTESDK_GATEWAY_URL``).
        access_token: The sandbox token (else ``COMPUTESDK_ACCESS_TOKEN``).
        capture_uncaught: Ship unhandled exceptions too (``install_excepthook``).
        flush_timeout: Seconds ``flush()`` waits at most; ``close()`` waits
            ``close_timeout`` (default: the engine's exit budget).
        own_engine: Use a private engine that ``close()`` shuts down, instead of the
            process-wide one shared by every handler of this gateway and token.
        engine: An engine to use instead (e.g. one on an ``InMemorySink``); not owned.
        engine_options: ``BatchEngine`` knobs (``max_queue_size=...``).
    """

    def __init__(
        self,
        level: int | str = logging.NOTSET,
        *,
        event_type: str | None = None,
        resource: Mapping[str, object] | None = None,
        service_name: str | None = None,
        gateway_url: str | None = None,
        access_token: str | None = None,
        capture_uncaught: bool = False,
        flush_timeout: float = 1.0,
        close_timeout: float | None = None,
        own_engine: bool = False,
        engine: BatchEngine | None = None,
        **engine_options: Any,
    ) -> None:
        super().__init__(level)
        self.event_type = event_type
        self.resource: dict[str, object] = dict(resource or {})
        if service_name is not None:
            self.resource["service.name"] = service_name
        self.flush_timeout, self.close_timeout = flush_timeout, close_timeout
        self._slot = EngineSlot(
            engine,
            own=own_engine,
            gateway_url=gateway_url,
            access_token=access_token,
            engine_options=engine_options,
        )
        if capture_uncaught:
            install_excepthook(self)

    @property
    def engine(self) -> BatchEngine | None:
        """The engine records go to, once the first one was emitted (or given)."""
        return self._slot.engine

    def setFormatter(self, fmt: logging.Formatter | None) -> None:
        """Set the message formatter; ``basicConfig()``'s default one is ignored."""
        # basicConfig gives every handler "%(levelname)s:%(name)s:%(message)s"; level
        # and logger are fields of their own here, so the message stays the message.
        basic = type(fmt) is logging.Formatter and fmt._fmt == logging.BASIC_FORMAT
        super().setFormatter(None if basic else fmt)

    def handle(self, record: logging.LogRecord) -> bool:
        """Filter and emit *record*, without the handler lock: ``submit`` needs none."""
        rv = self.filter(record)
        if rv:
            self.emit(record)
        return rv

    def emit(self, record: logging.LogRecord) -> None:
        """Snapshot *record* and submit it; costs a few microseconds, never blocks."""
        try:
            name = record.name
            if name.startswith(_OWN) or name == "cse_bridge" or on_engine_thread():
                return  # our own diagnostics, or the sender's HTTP library: no loop
            if record.__dict__.get(_FORWARDED) is True:
                return  # the forwarder's copy of a shipped record: no echo
            engine = self._slot.engine or self._slot.open()
            if engine is None:
                return
            msg = record.msg
            data: Mapping[str, object]
            if type(msg) is dict and "_logger" in record.__dict__:  # from structlog
                mapped = encode_structlog_event(
                    msg, method_name=record.__dict__.get("_name"), record=record,
                    resource=self.resource,
                )  # fmt: skip
                data, size = mapped, estimate_size(mapped)
            else:
                message = self.format(record) if self.formatter else None
                snapshot = snapshot_log_record(
                    record, resource=self.resource, message=message
                )
                data, size = snapshot, snapshot.size_hint
            event_type = self.event_type or log_event_type(record.levelno)
            engine.submit(EventItem(event_type, data, size))
        except RecursionError:  # as the stdlib handlers do
            raise
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        """Wait at most ``flush_timeout`` for what was emitted; no-op at exit."""
        self._slot.flush(self.flush_timeout)

    def close(self) -> None:
        """
        Flush within ``close_timeout``; shut the engine down only if it is our own.

        A closed handler that gets records again reopens (``dictConfig`` reuses them).
        """
        try:
            engine = self._slot.engine
            if engine is not None:
                self._slot.close(self.close_timeout or engine.exit_timeout)
        finally:
            super().close()
