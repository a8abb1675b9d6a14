"""Gateway stores: ``memory://``, ``sqlite:///path`` (and, later, Redis)."""

from __future__ import annotations

from ._base import (
    DEFAULT_RETENTION,
    Broker,
    EventStore,
    LocalBroker,
    SandboxKey,
    StoredEvent,
    Subscriber,
)
from ._open import open_store

__all__ = [
    "DEFAULT_RETENTION",
    "Broker",
    "EventStore",
    "LocalBroker",
    "SandboxKey",
    "StoredEvent",
    "Subscriber",
    "open_store",
]
