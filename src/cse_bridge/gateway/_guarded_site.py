"""An aiohttp site whose accepted connections pass through an ``HttpGuard``."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

from aiohttp import web

from ._http_guard import HttpGuard

__all__ = ["GuardedSite"]


class GuardedSite(web.BaseSite):
    """
    Serves a runner on a TCP port like ``web.TCPSite``, with a connection guard.

    ``start`` binds the guard to the runner's own protocol factory.

    Args:
        runner: A set-up ``web.ServerRunner``.
        guard: Admits or refuses each connection.
        host, port: The address to bind; port 0 picks a free one.
        ssl_context: Serve HTTPS with it; None for plain HTTP.
        handshake_timeout: Seconds a client has to finish the TLS handshake.
        reuse_port: Set ``SO_REUSEPORT`` (Linux).
    """

    def __init__(
        self,
        runner: web.BaseRunner,
        guard: HttpGuard,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        handshake_timeout: float = 60.0,
        reuse_port: bool = False,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self.guard = guard
        self._host = host
        self._port = port
        self._tls = ssl_context
        self._handshake_timeout = handshake_timeout
        self._reuse_port = reuse_port
        self.port = 0
        """The bound port, once started."""

    @property
    def name(self) -> str:
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://{self._host}:{self.port}"

    async def start(self) -> None:
        """Bind and accept; return once the port accepts connections."""
        await super().start()
        server = self._runner.server
        assert server is not None  # noqa: S101 - the runner was set up
        guard = self.guard
        guard.bind(server)
        # Plain TCP even with TLS: the guard counts each socket from accept, and
        # runs its handshake itself (asyncio's would hide it until it is done).
        factory: Callable[[], asyncio.Protocol] = (
            guard
            if self._tls is None
            else guard.over_tls(self._tls, self._handshake_timeout)
        )
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            factory,
            self._host,
            self._port,
            reuse_port=self._reuse_port or None,
        )
        assert isinstance(self._server, asyncio.Server)  # noqa: S101 - narrows
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop accepting and drop the sockets still in their TLS handshake."""
        await super().stop()
        await self.guard.abort_handshakes()
