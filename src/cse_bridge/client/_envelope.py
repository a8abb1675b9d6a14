"""
Reading the gateway's answers, with no HTTP library in sight.

Both events clients (``EventsClient`` on requests, ``cse_bridge.aio`` on aiohttp)
hand the status, body and charset of an answer here, so an answer means the same
thing to both (docs/protocol.md#protocol-envelopes), and both page the same way.
"""

from __future__ import annotations

import json
from typing import Any, Final

from ..errors import EventsAuthError, EventsError
from ..models import SandboxEvent

__all__ = [
    "INVALID_RESPONSE",
    "MAX_MESSAGE_CHARS",
    "decode_envelope",
    "decode_events",
    "next_cursor",
]

INVALID_RESPONSE: Final = "Invalid response from server"
"""
The message of a 2xx answer whose body is not a valid envelope.

See docs/protocol.md#protocol-envelopes.
"""

MAX_MESSAGE_CHARS: Final = 4096
"""Longest error message taken from a body (a proxy's HTML page can be large)."""

_UNAUTHORIZED: Final = 401
_OK_RANGE: Final = range(200, 300)


def decode_envelope(
    status: int, body: bytes, *, charset: str | None = None, reason: str = ""
) -> Any:
    """
    Return the ``data`` of a ``{"success": true, "data": ...}`` answer.

    Args:
        status: The HTTP status.
        body: The whole body.
        charset: The charset the ``Content-Type`` declares, if any (error texts).
        reason: The status line's reason phrase (when an error body is empty).

    Returns:
        The envelope's ``data`` value (never None).

    Raises:
        EventsAuthError: A 401; the message is the body's text.
        EventsError: Any other non-2xx answer (with ``status_code``), or a 2xx that
            is not a valid envelope.
    """
    if status not in _OK_RANGE:
        message = body_text(body, charset) or f"HTTP {status} {reason or ''}"
        if status == _UNAUTHORIZED:
            raise EventsAuthError(message.rstrip(), status)
        raise EventsError(message.rstrip(), status)
    try:
        envelope = json.loads(body)
    except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, too deep
        raise EventsError(INVALID_RESPONSE, status) from exc
    if (
        not isinstance(envelope, dict)
        or envelope.get("success") is not True
        or envelope.get("data") is None
    ):
        raise EventsError(INVALID_RESPONSE, status)
    return envelope["data"]


def body_text(body: bytes, charset: str | None) -> str:
    """The body as text: the declared charset, else UTF-8; cut to a readable size."""
    try:
        text = body.decode(charset or "utf-8", errors="replace")
    except LookupError:  # an unknown charset name
        text = body.decode("utf-8", errors="replace")
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[:MAX_MESSAGE_CHARS] + "..."
    return text


def decode_events(data: Any) -> list[SandboxEvent]:
    """
    Return the events of a ``GET /events/<sandbox>`` answer's ``data``.

    Raises:
        EventsError: ``events`` is missing, not a list, or holds an invalid event.
    """
    events = data.get("events") if isinstance(data, dict) else None
    if not isinstance(events, list):
        raise EventsError(f"{INVALID_RESPONSE}: 'events' is missing or not a list")
    return [SandboxEvent.from_json(item) for item in events]


def next_cursor(page: list[SandboxEvent], cursor: int, page_size: int) -> int | None:
    """
    Return the ``since`` of the page after *page*, or None when *page* was the last.

    The paging rule of ``iter_events`` and of the subscriber's backfill: a page
    shorter than *page_size* is the last; otherwise the next one starts strictly
    after the last timestamp seen.

    Raises:
        EventsError: A full page that does not move the cursor on (it would loop).
    """
    if len(page) < page_size:
        return None
    last = page[-1].timestamp
    if last <= cursor:
        raise EventsError(f"{INVALID_RESPONSE}: events out of order")
    return last
