"""
The events HTTP client (docs/protocol.md#protocol-http): store events with a
sandbox token, read them with an API key. Core: needs ``requests`` only.
"""

from __future__ import annotations

from ._client import EventsClient, create_events_client

__all__ = ["EventsClient", "create_events_client"]
