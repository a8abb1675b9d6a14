"""
The one place where HTTP-library failures and HTTP answers become ``EventsError``.

``httpx/_transports/default.py`` does the same at its boundary: whatever requests or
urllib3 raise, and whatever status or body the server answers, leaves this module as
an ``EventsError`` subclass (docs/protocol.md#protocol-errors), or as the envelope's
``data`` (read by ``_envelope``, which the asyncio client shares).
"""

from __future__ import annotations

import http.client
from collections.abc import Callable
from typing import Any

import requests
import urllib3.exceptions
from requests import exceptions as rex

from ..errors import EventsError, EventsNetworkError
from ._envelope import INVALID_RESPONSE, MAX_MESSAGE_CHARS, decode_envelope

__all__ = ["INVALID_RESPONSE", "MAX_MESSAGE_CHARS", "request_data"]


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

    # Only a declared charset counts: requests guesses ISO-8859-1 for any text/*.
    declared = "charset=" in response.headers.get("Content-Type", "").lower()
    return decode_envelope(
        response.status_code,
        response.content,
        charset=response.encoding if declared else None,
        reason=response.reason or "",
    )
