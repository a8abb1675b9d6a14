"""
Argument checks and request encoding for ``EventsClient``: everything that can be
decided before a request is sent, so that bad arguments raise and nothing goes out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote, urlsplit

from .. import config

__all__ = [
    "DEFAULT_POOL_SIZE",
    "MAX_LIMIT",
    "MIN_LIMIT",
    "check_credential",
    "check_gateway_url",
    "check_page_size",
    "check_pool_size",
    "check_timeout",
    "encode_body",
    "encode_event",
    "events_query",
    "fetch_headers",
    "store_headers",
    "timestamp_ms",
]

MIN_LIMIT: Final = 1
MAX_LIMIT: Final = 1000
"""``get_events`` clamps ``limit`` into ``MIN_LIMIT..MAX_LIMIT``, like the SDK."""
DEFAULT_POOL_SIZE: Final = 10
"""Keep-alive connections kept per host, one per concurrent sender."""

_JSON_HEADERS: Final = {
    "Content-Type": "application/json",
    "Accept": "application/json",
}
_FORBIDDEN_HEADER_CHARS: Final = frozenset("\r\n\0")


def check_timeout(timeout: float | None) -> float:
    """Validate the per-operation timeout; None means ``config.DEFAULT_TIMEOUT``."""
    if timeout is None:
        timeout = config.DEFAULT_TIMEOUT
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number, not {type(timeout).__name__}")
    if not (math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds: {timeout}")
    return float(timeout)


def check_pool_size(pool_size: int) -> int:
    """Validate the keep-alive pool size: an int of at least 1."""
    if isinstance(pool_size, bool) or not isinstance(pool_size, int):
        raise TypeError(f"pool_size must be an int, not {type(pool_size).__name__}")
    if pool_size < 1:
        raise ValueError(f"pool_size must be at least 1: {pool_size}")
    return pool_size


def check_page_size(page_size: int) -> int:
    """Validate ``iter_events``' page size: an int in ``MIN_LIMIT..MAX_LIMIT``."""
    if isinstance(page_size, bool) or not isinstance(page_size, int):
        raise TypeError(f"page_size must be an int, not {_type_name(page_size)}")
    if not MIN_LIMIT <= page_size <= MAX_LIMIT:
        raise ValueError(f"page_size must be in 1..1000: {page_size}")
    return page_size


def check_credential(value: object, name: str) -> str | None:
    """Validate a token or key; empty means none."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str or None, not {type(value).__name__}")
    if value != value.strip() or _FORBIDDEN_HEADER_CHARS.intersection(value):
        raise ValueError(
            f"{name} must not contain line breaks or surrounding whitespace"
        )
    return value


def check_gateway_url(url: str | None) -> str:
    """Resolve and validate the gateway base URL: http(s), no query or fragment."""
    if url is not None and not isinstance(url, str):
        raise TypeError(f"gateway_url must be a str or None, not {type(url).__name__}")
    resolved = config.resolve_gateway_url(url)
    parts = urlsplit(resolved)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"gateway_url must be an http(s) URL, not {resolved!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"gateway_url must not have a query or fragment: {resolved!r}")
    return resolved


def timestamp_ms(since: object) -> int:
    """Validate ``since``: ms since the epoch, or an aware datetime."""
    if isinstance(since, datetime):
        if since.tzinfo is None or since.utcoffset() is None:
            raise ValueError("since must be a timezone-aware datetime")
        since = math.floor(since.timestamp() * 1000)
    if isinstance(since, bool) or not isinstance(since, int):
        raise TypeError(
            "since must be an int (milliseconds since the epoch) or a datetime, "
            f"not {type(since).__name__}"
        )
    if since < 0:
        raise ValueError(f"since must not be negative: {since}")
    return since


def encode_event(event_type: object, data: object) -> bytes:
    """Validate ``store_event`` arguments; return the request body."""
    if not isinstance(event_type, str):
        raise TypeError(f"type must be a str, not {_type_name(event_type)}")
    if not event_type:
        raise ValueError("type must not be empty")
    if data is None:
        data = {}
    elif not isinstance(data, Mapping):
        raise TypeError(f"data must be a mapping, not {_type_name(data)}")
    return encode_body({"type": event_type, "data": dict(data)})


def events_query(
    sandbox_id: str,
    event_type: str | None,
    since: int | datetime | None,
    limit: int | None,
) -> tuple[str, dict[str, str]]:
    """Validate ``get_events`` arguments; return the path and query parameters."""
    if not isinstance(sandbox_id, str):
        raise TypeError(f"sandbox_id must be a str, not {_type_name(sandbox_id)}")
    if not sandbox_id:
        raise ValueError("sandbox_id must not be empty")
    if sandbox_id in (".", ".."):
        # URL normalisation would remove it from the path.
        raise ValueError(f"sandbox_id {sandbox_id!r} cannot be addressed by URL")
    params: dict[str, str] = {}
    if event_type is not None:
        if not isinstance(event_type, str):
            raise TypeError(f"type must be a str, not {_type_name(event_type)}")
        if not event_type:
            raise ValueError("type must not be empty (use None for every type)")
        params["type"] = event_type
    if since is not None:
        params["since"] = str(timestamp_ms(since))
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError(f"limit must be an int, not {_type_name(limit)}")
        params["limit"] = str(min(max(limit, MIN_LIMIT), MAX_LIMIT))
    return f"/events/{quote(sandbox_id, safe='')}", params


def encode_body(obj: dict[str, Any]) -> bytes:
    """Strict compact JSON as UTF-8; raises TypeError/ValueError for non-JSON data."""
    text = json.dumps(obj, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode()
    except UnicodeEncodeError:
        # A lone surrogate: UTF-8 cannot carry it, a JSON \u escape can.
        return json.dumps(obj, allow_nan=False, separators=(",", ":")).encode()


def store_headers(access_token: str) -> dict[str, str]:
    """The headers of a ``POST /events``: a JSON body, authorized by the token."""
    return {**_JSON_HEADERS, "Authorization": f"Bearer {access_token}"}


def fetch_headers(api_key: str) -> dict[str, str]:
    """The headers of a ``GET /events/<sandbox>``, authorized by the API key."""
    return {"Accept": "application/json", "X-API-Key": api_key}


def _type_name(value: object) -> str:
    return type(value).__name__
