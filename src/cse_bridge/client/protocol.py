"""
The events HTTP API without the HTTP: request building, answer reading, paging.

Sans-I/O building blocks shared by ``EventsClient`` (requests) and
``cse_bridge.aio.AsyncEventsClient`` (aiohttp), for anyone who drives the API with
another HTTP library: check and encode the arguments, send the request your way, then
give the status and body to ``decode_envelope`` (docs/protocol.md#protocol-http).
Nothing here does I/O; the functions keep no state and are safe from any thread, and
``ClientSettings`` is the configuration both clients are built on.
"""

from __future__ import annotations

from ._envelope import (
    INVALID_RESPONSE,
    MAX_MESSAGE_CHARS,
    decode_envelope,
    decode_events,
    next_cursor,
)
from ._settings import ClientSettings
from ._validation import (
    DEFAULT_POOL_SIZE,
    MAX_LIMIT,
    MIN_LIMIT,
    check_credential,
    check_gateway_url,
    check_page_size,
    check_pool_size,
    check_timeout,
    encode_event,
    events_query,
    fetch_headers,
    store_headers,
)

__all__ = [
    "DEFAULT_POOL_SIZE",
    "INVALID_RESPONSE",
    "MAX_LIMIT",
    "MAX_MESSAGE_CHARS",
    "MIN_LIMIT",
    "ClientSettings",
    "check_credential",
    "check_gateway_url",
    "check_page_size",
    "check_pool_size",
    "check_timeout",
    "decode_envelope",
    "decode_events",
    "encode_event",
    "events_query",
    "fetch_headers",
    "next_cursor",
    "store_headers",
]
