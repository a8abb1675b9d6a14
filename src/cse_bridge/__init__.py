"""
cse-bridge: Python logging and observability for ComputeSDK sandbox events.

The core (this package, ``cse_bridge.client``) needs ``requests`` only; the gateway,
structlog, OpenTelemetry and Redis parts live in modules behind extras. The main
entry points of those parts are offered here too (``EventsHandler``,
``EventsProcessor``, ``EventsSpanExporter``, ``EventsLogExporter``, ``PubSubClient``),
imported on first use: ``import cse_bridge`` itself loads no optional dependency.
"""

from __future__ import annotations

import importlib
import typing

from ._version import __version__
from .client import EventsClient, create_events_client
from .errors import EventsAuthError, EventsError, EventsNetworkError, EventsPubSubError
from .models import EventType, SandboxEvent, StoreEventResult

if typing.TYPE_CHECKING:
    from .integrations.logging import EventsHandler
    from .integrations.otel import EventsLogExporter, EventsSpanExporter
    from .integrations.structlog import EventsProcessor
    from .subscriber import PubSubClient

__all__ = [
    "EventType",
    "EventsAuthError",
    "EventsClient",
    "EventsError",
    "EventsHandler",
    "EventsLogExporter",
    "EventsNetworkError",
    "EventsProcessor",
    "EventsPubSubError",
    "EventsSpanExporter",
    "PubSubClient",
    "SandboxEvent",
    "StoreEventResult",
    "__version__",
    "create_events_client",
]

_LAZY: typing.Final = {
    # name: (module, the extra it needs or "" for the core)
    "EventsHandler": (".integrations.logging", ""),
    "EventsLogExporter": (".integrations.otel", "otel"),
    "EventsProcessor": (".integrations.structlog", "structlog"),
    "EventsSpanExporter": (".integrations.otel", "otel"),
    "PubSubClient": (".subscriber", "redis"),
}


def __getattr__(name: str) -> typing.Any:
    """Import a lazy export on first use; say which extra is missing if one is."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, extra = _LAZY[name]
    try:
        value = getattr(importlib.import_module(module, __name__), name)
    except ModuleNotFoundError as exc:
        if not extra or (exc.name or "").startswith("cse_bridge"):
            raise
        missing = (exc.name or "").partition(".")[0]
        raise ModuleNotFoundError(
            f"cse_bridge.{name} needs the {extra} extra ({missing} is not "
            f"installed): pip install 'cse-bridge[{extra}]'",
            name=exc.name,
        ) from exc
    globals()[name] = value  # once: later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
