"""
The events HTTP client (SPEC §1): store events with a sandbox token, read them with an
API key. Core: needs ``requests`` only.
"""

from __future__ import annotations

from ._client import (
    DEFAULT_POOL_SIZE,
    MAX_LIMIT,
    MIN_LIMIT,
    EventsClient,
    create_events_client,
)

__all__ = [
    "DEFAULT_POOL_SIZE",
    "MAX_LIMIT",
    "MIN_LIMIT",
    "EventsClient",
    "create_events_client",
]
