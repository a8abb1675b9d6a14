"""
The local events gateway: the events HTTP API and pub/sub on one asyncio loop.

See docs/protocol.md#protocol-gateway.

Needs the ``gateway`` extra (aiohttp, PyJWT). Core modules never import this package.
"""

from __future__ import annotations

from ._app import Gateway, GatewayConfig, GatewayThread, resolve_secret
from ._auth import Authenticator, TokenClaims, issue_token
from ._limits import GatewayLimits

__all__ = [
    "Authenticator",
    "Gateway",
    "GatewayConfig",
    "GatewayLimits",
    "GatewayThread",
    "TokenClaims",
    "issue_token",
    "resolve_secret",
]
