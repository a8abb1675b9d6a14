"""
The one place where HTTP-library failures and HTTP answers become ``EventsError``.

``httpx/_transports/default.py`` does the same at its boundary: whatever requests or
urllib3 raise, and whatever status or body the server answers, leaves this module as
an ``EventsError`` subclass (docs/protocol.md#protocol-errors), or as the envelope's
``data``.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable
from typing import Any, Final

import requests
import urllib3.exceptions
from requests import exceptions as rex

from ..errors import EventsAuthError, EventsError, EventsNetworkError

__all__ = ["INVALID_RESPONSE", "MAX_MESSAGE_CHARS", "request_data"]

INVALID_RESPONSE: Final = "Invalid response from server"
"""
The message of a 2xx answer whose body is not a valid envelope.

See docs/protocol.md#protocol-envelopes.
"""

MAX_MESSAGE_CHARS: Final = 4096
"""Longest error message taken from a body (a proxy's HTML page can be large)."""

_UNAUTHORIZED: Final = 401
_OK_RANGE: Final = range(200, 300)


def request_data(send: Callable[[], requests.Response]) -> Any:
    """
    Call *send* and return the ``data`` of the JSON envelope it answers.

    Blocks as long as *send* does. Every exception *send* can raise and every answer
    other than a valid 2xx envelope is translated here, and only here.

    Args:
        send: Performs one HTTP request (e.g. a bound ``Session.request`` call).

    Returns:
        The envelope's ``data`` value (never None).

    Raises:
        EventsAuthError: The server answered 401; the message is its body text.
        EventsError: Any other non-2xx answer (with ``status_code``), a 2xx that is not
            a ``{"success": true, "data": ...}`` envelope, or a request that requests
            refused to build (bad URL or header).
        EventsNetworkError: A timeout, a refused, reset or broken connection, or a
            response that could not be read to its end.
    """
    try:
        response = send()
    # Order matters: ConnectTimeout is both a Timeout and a ConnectionError, and every
    # requests exception is an OSError.
    except rex.Timeout as exc:
        raise EventsNetworkError(f"Request timeout: {exc}") from exc
    except (
        rex.ConnectionError,  # refused, reset, DNS, proxy, TLS
        rex.ChunkedEncodingError,  # the body broke off mid-way
        rex.ContentDecodingError,  # a compressed body that does not decompress
        rex.RetryError,  # urllib3 gave up (we configure no retries)
    ) as exc:
        raise EventsNetworkError(f"Network error: {exc}") from exc
    except rex.RequestException as exc:
        # Invalid URL or header, too many redirects: not the network's fault.
        raise EventsError(f"Request failed: {exc}") from exc
    except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as exc:
        # requests lets a few urllib3 errors through unwrapped (adapters.py re-raises
        # unknown urllib3 HTTPErrors), and OSError covers socket and certificate files.
        raise EventsNetworkError(f"Network error: {exc}") from exc

    status = response.status_code
    if status not in _OK_RANGE:
        message = _body_text(response) or f"HTTP {status} {response.reason or ''}"
        if status == _UNAUTHORIZED:
            raise EventsAuthError(message.rstrip(), status)
        raise EventsError(message.rstrip(), status)
    try:
        envelope = json.loads(response.content)
    except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, too deep
        raise EventsError(INVALID_RESPONSE, status) from exc
    if (
        not isinstance(envelope, dict)
        or envelope.get("success") is not True
        or envelope.get("data") is None
    ):
        raise EventsError(INVALID_RESPONSE, status)
    return envelope["data"]


def _body_text(response: requests.Response) -> str:
    """The body as text: the declared charset, else UTF-8; cut to a readable size."""
    declared = "charset=" in response.headers.get("Content-Type", "").lower()
    encoding = response.encoding if declared and response.encoding else "utf-8"
    try:
        text = response.content.decode(encoding, errors="replace")
    except LookupError:  # an unknown charset name
        text = response.content.decode("utf-8", errors="replace")
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[:MAX_MESSAGE_CHARS] + "..."
    return text
