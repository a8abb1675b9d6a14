"""
Configuration: every environment variable name and default; one ``resolve_*`` each.

Precedence is always: explicit argument > environment variable > default
(docs/protocol.md#protocol-configuration).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from typing import Final

__all__ = [
    "DEFAULT_GATEWAY_URL",
    "DEFAULT_PUBSUB_HOST",
    "DEFAULT_PUBSUB_PORT",
    "DEFAULT_RECONNECT_DELAY",
    "DEFAULT_TIMEOUT",
    "ENV_ACCESS_TOKEN",
    "ENV_API_KEY",
    "ENV_CA_FILES",
    "ENV_FORWARD_METRICS_PORT",
    "ENV_GATEWAY_ACCESS_LOG",
    "ENV_GATEWAY_API_KEYS",
    "ENV_GATEWAY_DRAIN_TIMEOUT",
    "ENV_GATEWAY_IDLE_TIMEOUT",
    "ENV_GATEWAY_MAX_CONNECTIONS",
    "ENV_GATEWAY_RATE_BURST",
    "ENV_GATEWAY_RATE_LIMIT",
    "ENV_GATEWAY_SECRET",
    "ENV_GATEWAY_TLS_CERT",
    "ENV_GATEWAY_TLS_KEY",
    "ENV_GATEWAY_URL",
    "ENV_PUBSUB_HOST",
    "ENV_PUBSUB_PORT",
    "ENV_PUBSUB_TLS",
    "resolve_access_token",
    "resolve_api_key",
    "resolve_ca_file",
    "resolve_gateway_url",
    "resolve_pubsub_host",
    "resolve_pubsub_port",
    "resolve_pubsub_tls",
    "sandbox_from_token",
]

ENV_API_KEY: Final = "COMPUTESDK_API_KEY"
ENV_ACCESS_TOKEN: Final = "COMPUTESDK_ACCESS_TOKEN"  # noqa: S105 - a name, not a secret
ENV_GATEWAY_URL: Final = "COMPUTESDK_GATEWAY_URL"
ENV_PUBSUB_HOST: Final = "COMPUTESDK_PUBSUB_HOST"
ENV_PUBSUB_PORT: Final = "COMPUTESDK_PUBSUB_PORT"
ENV_PUBSUB_TLS: Final = "COMPUTESDK_PUBSUB_TLS"
"""``1`` or ``true`` to speak TLS to the pub/sub port (of a gateway with TLS)."""
ENV_CA_FILES: Final = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
"""The standard variables naming a CA bundle, in the order they are read."""
ENV_GATEWAY_SECRET: Final = "CSE_GATEWAY_SECRET"  # noqa: S105 - a name, not a secret
"""The local gateway's HS256 signing secret."""
ENV_GATEWAY_API_KEYS: Final = "CSE_GATEWAY_API_KEYS"
"""The local gateway's API keys, ``KEY=WORKSPACE`` pairs separated by commas."""
ENV_GATEWAY_DRAIN_TIMEOUT: Final = "CSE_GATEWAY_DRAIN_TIMEOUT"
"""Seconds the local gateway's drain (SIGTERM) waits for requests in flight."""
ENV_GATEWAY_ACCESS_LOG: Final = "CSE_GATEWAY_ACCESS_LOG"
"""``1`` (or ``true``, ``yes``, ``on``): the local gateway logs one JSON line per
request."""
ENV_FORWARD_METRICS_PORT: Final = "CSE_FORWARD_METRICS_PORT"
"""The port ``cse-bridge forward`` serves ``/metrics`` and ``/healthz`` on."""
ENV_GATEWAY_IDLE_TIMEOUT: Final = "CSE_GATEWAY_IDLE_TIMEOUT"
"""Seconds a gateway connection may idle before its first request or SUBSCRIBE."""
ENV_GATEWAY_MAX_CONNECTIONS: Final = "CSE_GATEWAY_MAX_CONNECTIONS"
"""Open connections the local gateway allows per port."""
ENV_GATEWAY_RATE_LIMIT: Final = "CSE_GATEWAY_RATE_LIMIT"
"""Events per second per sandbox the local gateway stores (429 past it)."""
ENV_GATEWAY_RATE_BURST: Final = "CSE_GATEWAY_RATE_BURST"
"""Events a sandbox may store at once before the rate limit applies."""
ENV_GATEWAY_TLS_CERT: Final = "CSE_GATEWAY_TLS_CERT"
"""The PEM certificate chain with which the local gateway serves TLS on both ports."""
ENV_GATEWAY_TLS_KEY: Final = "CSE_GATEWAY_TLS_KEY"
"""PEM private key of the local gateway's TLS certificate."""

DEFAULT_GATEWAY_URL: Final = "https://events.computesdk.com"
DEFAULT_PUBSUB_HOST: Final = "events.computesdk.com"
DEFAULT_PUBSUB_PORT: Final = 6380
DEFAULT_TIMEOUT: Final = 30.0
"""Request timeout in seconds (the official SDK's 30 000 ms)."""
DEFAULT_RECONNECT_DELAY: Final = 1.0
"""Pub/sub reconnect delay in seconds (the official SDK's 1 000 ms)."""

_MAX_PORT: Final = 65535


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value else None


def resolve_gateway_url(url: str | None = None) -> str:
    """Return the gateway base URL without a trailing slash."""
    return (url or _env(ENV_GATEWAY_URL) or DEFAULT_GATEWAY_URL).rstrip("/")


def resolve_api_key(api_key: str | None = None) -> str | None:
    """Return the API key (for reading events), or None when there is none."""
    return api_key or _env(ENV_API_KEY)


def resolve_access_token(token: str | None = None) -> str | None:
    """Return the sandbox access token (for storing events), or None."""
    return token or _env(ENV_ACCESS_TOKEN)


def resolve_pubsub_host(host: str | None = None) -> str:
    """Return the pub/sub host."""
    return host or _env(ENV_PUBSUB_HOST) or DEFAULT_PUBSUB_HOST


def resolve_pubsub_port(port: int | None = None) -> int:
    """Return the pub/sub port; an invalid environment value means the default."""
    if port is not None:
        if isinstance(port, bool) or not 0 < port <= _MAX_PORT:
            raise ValueError(f"invalid pub/sub port: {port!r}")
        return port
    raw = _env(ENV_PUBSUB_PORT)
    if raw is not None:
        try:
            value = int(raw)
        except ValueError:
            return DEFAULT_PUBSUB_PORT
        if 0 < value <= _MAX_PORT:
            return value
    return DEFAULT_PUBSUB_PORT


def resolve_pubsub_tls(tls: bool | None = None) -> bool:
    """
    Return whether pub/sub connections use TLS; False by default.

    Raises:
        ValueError: The environment value is not a yes or a no.
    """
    if tls is not None:
        if not isinstance(tls, bool):
            raise ValueError(f"tls must be True or False, not {tls!r}")
        return tls
    raw = (_env(ENV_PUBSUB_TLS) or "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"{ENV_PUBSUB_TLS} must be 1 or 0 (true or false): {raw!r}")


def resolve_ca_file(ca_file: str | None = None) -> str | None:
    """
    Return the CA bundle that verifies a gateway's TLS certificate, or None.

    The argument, else ``SSL_CERT_FILE``, else ``REQUESTS_CA_BUNDLE``; None means
    the system's trusted CAs.
    """
    if ca_file:
        return ca_file
    for name in ENV_CA_FILES:
        found = _env(name)
        if found:
            return found
    return None


def sandbox_from_token(token: str) -> str | None:
    """Return the ``sandboxId`` claim of a JWT, unverified; None if there is none."""
    parts = token.split(".")
    if len(parts) != 3:  # noqa: PLR2004 - header.payload.signature
        return None
    try:
        raw = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(raw)
    except (binascii.Error, ValueError):
        return None
    value = claims.get("sandboxId") if isinstance(claims, dict) else None
    return value if isinstance(value, str) and value else None
