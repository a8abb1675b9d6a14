"""
The one place where aiohttp failures and HTTP answers become ``EventsError``.

The asyncio twin of ``cse_bridge.client``'s boundary: whatever aiohttp raises leaves
this module as an ``EventsError`` subclass (docs/protocol.md#protocol-errors), and
the answer is read by the same ``decode_envelope`` as the threaded client's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from ..client.protocol import decode_envelope
from ..errors import EventsError, EventsNetworkError

__all__ = ["Answer", "request_data"]

Answer = tuple[int, bytes, "str | None", str]
"""What a request gives back: status, whole body, declared charset, reason phrase."""


async def request_data(send: Callable[[], Awaitable[Answer]]) -> Any:
    """
    Await *send* and return the ``data`` of the JSON envelope it answers.

    Every exception *send* can raise and every answer other than a valid 2xx
    envelope is translated here, and only here.

    Raises:
        EventsAuthError: The server answered 401; the message is its body text.
        EventsError: Any other non-2xx answer (with ``status_code``), a 2xx that is not
            a valid envelope, or a request aiohttp refused to build (bad URL).
        EventsNetworkError: A timeout, a refused, reset or broken connection, or an
            answer that could not be read to its end.
    """
    try:
        status, body, charset, reason = await send()
    # Order matters: ServerTimeoutError is a ClientConnectionError and a TimeoutError
    # (asyncio's, a distinct class on Python 3.10); ClientOSError is an OSError.
    except (TimeoutError, asyncio.TimeoutError) as exc:
        raise EventsNetworkError(f"Request timeout: {exc!r}") from exc
    except (
        aiohttp.ClientConnectionError,  # refused, reset, DNS, TLS, disconnected
        aiohttp.ClientPayloadError,  # the body broke off mid-way, or bad encoding
    ) as exc:
        raise EventsNetworkError(f"Network error: {exc}") from exc
    except aiohttp.TooManyRedirects as exc:
        # Never followed (allow_redirects=False), so a programming error if seen.
        # Only classes aiohttp 3.9 (our floor) has are named here; later ones are
        # ClientError subclasses and land below.
        raise EventsError(f"Request failed: {exc}") from exc
    except aiohttp.ClientResponseError as exc:
        # aiohttp's word for an answer it could not parse (a malformed status line
        # or header): like requests' broken connection, nothing usable came back.
        raise EventsNetworkError(f"Network error: {exc}") from exc
    except aiohttp.ClientError as exc:
        # An invalid or non-HTTP URL, or anything aiohttp adds later: not the
        # network's fault.
        raise EventsError(f"Request failed: {exc}") from exc
    except OSError as exc:  # a socket error aiohttp let through unwrapped
        raise EventsNetworkError(f"Network error: {exc}") from exc
    return decode_envelope(status, body, charset=charset, reason=reason)
