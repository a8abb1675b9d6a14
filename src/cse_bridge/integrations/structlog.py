"""
``EventsProcessor``: ship structlog event dicts as ``log.<level>`` events.

See docs/protocol.md#protocol-log-structlog.

structlog on its own: put the processor after the ones that add fields and before the
renderer; it returns the event dict unchanged, so the console output stays as it was::

    structlog.configure(processors=[
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso"),
        EventsProcessor(service_name="worker"),
        structlog.dev.ConsoleRenderer(),
    ])

structlog through the standard library (``ProcessorFormatter``): do not use this
processor; let the root logger's ``EventsHandler`` ship every record, structlog's and
foreign ones alike. It recognizes what ``wrap_for_formatter`` carries and maps it like
this processor does, so nothing is shipped twice::

    structlog.configure(
        processors=[
            structlog.stdlib.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
    )
    console = logging.StreamHandler()
    console.setFormatter(structlog.stdlib.ProcessorFormatter(
        processor=structlog.dev.ConsoleRenderer()))
    logging.basicConfig(level=logging.INFO, handlers=[console, EventsHandler()])
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from structlog.typing import EventDict, WrappedLogger

from ..engine import BatchEngine, EventItem, on_engine_thread
from ..schema.logs import encode_structlog_event, estimate_size, log_event_type
from ._common import EngineSlot, Throttle

__all__ = ["EventsProcessor"]

_log = logging.getLogger(__name__)
_throttle = Throttle()


class EventsProcessor:
    """
    A structlog processor that submits a snapshot of each event dict to the engine.

    Configure in ``__init__``, work in ``__call__``: the call copies the dict's top
    level, resolves ``exc_info`` on the logging thread, submits, and returns the event
    dict untouched. It never raises; a failure is reported (rate-limited) on the
    ``cse_bridge.integrations.structlog`` logger. Events logged on the engine's own
    threads are not shipped. Safe from any thread.

    Args:
        event_type: Ship every event with this type instead of ``log.<level>``.
        resource: Resource attributes added to every event.
        service_name: Shorthand for ``resource["service.name"]``.
        gateway_url: The gateway (else ``COMPUTESDK_GATEWAY_URL``).
        access_token: The sandbox token (else ``COMPUTESDK_ACCESS_TOKEN``).
        engine: An engine to use instead of the process-wide shared one.
        engine_options: ``BatchEngine`` knobs for the shared engine.
    """

    def __init__(
        self,
        *,
        event_type: str | None = None,
        resource: Mapping[str, object] | None = None,
        service_name: str | None = None,
        gateway_url: str | None = None,
        access_token: str | None = None,
        engine: BatchEngine | None = None,
        **engine_options: Any,
    ) -> None:
        self.event_type = event_type
        self.resource: dict[str, object] = dict(resource or {})
        if service_name is not None:
            self.resource["service.name"] = service_name
        self._slot = EngineSlot(
            engine,
            own=False,
            gateway_url=gateway_url,
            access_token=access_token,
            engine_options=engine_options,
        )

    @property
    def engine(self) -> BatchEngine | None:
        """The engine events go to, once the first one was processed (or given)."""
        return self._slot.engine

    def flush(self, timeout: float = 5.0) -> None:
        """Wait at most *timeout* seconds until what was processed has been sent."""
        self._slot.flush(timeout)

    def __call__(
        self, logger: WrappedLogger, method_name: str, event_dict: EventDict
    ) -> EventDict:
        """Submit a snapshot of *event_dict*; return *event_dict* unchanged."""
        try:
            engine = self._slot.engine or self._slot.open()
            if engine is not None and not on_engine_thread():
                name = getattr(logger, "name", None)
                data = encode_structlog_event(
                    event_dict,
                    method_name=method_name,
                    logger_name=name if isinstance(name, str) else None,
                    resource=self.resource,
                )
                levelno = data["levelno"]
                event_type = self.event_type or log_event_type(
                    levelno if isinstance(levelno, int) else logging.INFO
                )
                size = estimate_size(data)
                engine.submit(EventItem(event_type, data, size))
        except Exception:
            if _throttle.allow("call"):
                _log.warning("EventsProcessor could not ship an event", exc_info=True)
        return event_dict
