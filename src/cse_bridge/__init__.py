"""
cse-bridge: Python logging and observability for ComputeSDK sandbox events.

The core (this package, ``cse_bridge.client``) needs ``requests`` only; the gateway,
structlog, OpenTelemetry and Redis parts live in modules behind extras.
"""

from __future__ import annotations

import importlib.metadata as _metadata

from .client import EventsClient, create_events_client
from .errors import EventsAuthError, EventsError, EventsNetworkError, EventsPubSubError
from .models import EventType, SandboxEvent, StoreEventResult

try:
    __version__ = _metadata.version("cse-bridge")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "EventType",
    "EventsAuthError",
    "EventsClient",
    "EventsError",
    "EventsNetworkError",
    "EventsPubSubError",
    "SandboxEvent",
    "StoreEventResult",
    "__version__",
    "create_events_client",
]
