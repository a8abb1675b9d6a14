"""
The local events gateway: the events HTTP API and pub/sub on one asyncio loop.

See docs/protocol.md#protocol-gateway.

Needs the ``gateway`` extra (aiohttp, PyJWT) to serve. ``issue_token`` and
``resolve_secret`` need the standard library only: each name is imported on first use,
so minting a token loads no web server. Core modules never import this package.
"""

from __future__ import annotations

import importlib
import typing

if typing.TYPE_CHECKING:
    from ._access_log import ACCESS_LOGGER
    from ._app import DRAIN_MESSAGE, Gateway, GatewayConfig, GatewayThread
    from ._auth import Authenticator, TokenClaims
    from ._limits import GatewayLimits
    from ._metrics import GatewayMetrics
    from ._rejections import Rejections
    from ._tokens import MAX_WORKSPACE_ID, issue_token, resolve_secret

__all__ = [
    "ACCESS_LOGGER",
    "DRAIN_MESSAGE",
    "MAX_WORKSPACE_ID",
    "Authenticator",
    "Gateway",
    "GatewayConfig",
    "GatewayLimits",
    "GatewayMetrics",
    "GatewayThread",
    "Rejections",
    "TokenClaims",
    "issue_token",
    "resolve_secret",
]

_MODULES: typing.Final = {
    "ACCESS_LOGGER": "._access_log",
    "DRAIN_MESSAGE": "._app",
    "Authenticator": "._auth",
    "Gateway": "._app",
    "GatewayConfig": "._app",
    "GatewayLimits": "._limits",
    "GatewayMetrics": "._metrics",
    "GatewayThread": "._app",
    "MAX_WORKSPACE_ID": "._tokens",
    "Rejections": "._rejections",
    "TokenClaims": "._auth",
    "issue_token": "._tokens",
    "resolve_secret": "._tokens",
}


def __getattr__(name: str) -> typing.Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # once: later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
