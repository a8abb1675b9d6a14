"""
Connection limits of the HTTP port: a cap, a deadline for the first request, counts.

aiohttp closes a keep-alive connection that idles past its ``keepalive_timeout``;
what it does not do is cap how many connections are open, and (before 3.14) it let a
connection that never completes a first request head stay forever. ``HttpGuard``
sits between the listening socket and aiohttp's ``RequestHandler`` to add both, and
counts every refusal by cause (``Rejections``). With TLS, a ``TlsPort`` counts each
socket from ``accept`` through its handshake.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Final

from aiohttp import web

from ._guarded_connection import GuardedConnection
from ._http_refusal import HttpRefusal
from ._log_throttle import LogThrottle
from ._rejections import Cause, Rejections
from ._tls_port import TlsPort

__all__ = ["HttpGuard"]

_MAX_LINGERING: Final = 64
"""Refused connections allowed to linger at once; past it they close at once: under
a flood the descriptors go back to the kernel immediately."""
_CAUSE_BY_STATUS: Final[dict[int, Cause]] = {
    400: "invalid",
    401: "auth",
    413: "size",
    429: "rate_limit",
}


def _refusal_response(retry_after: int) -> bytes:
    body = b'{"success":false,"error":"Too many connections; retry later"}'
    return (
        b"HTTP/1.1 503 Service Unavailable\r\n"
        b"Content-Type: application/json\r\n"
        b"Retry-After: %d\r\n"
        b"Connection: close\r\n"
        b"Content-Length: %d\r\n\r\n%b"
    ) % (retry_after, len(body), body)


class HttpGuard:
    """
    The protocol factory of the HTTP port: admits up to *max_connections* at once.

    The ``RequestObserver`` around every handler tells it of every request and
    answer; ``bind`` it to the runner's server, then call it (as
    ``loop.create_server`` does) for each accepted socket. Runs on the gateway's loop
    only.

    Args:
        max_connections: Open connections allowed; the next ones get a 503.
        idle_timeout: Seconds a new connection has to complete its first request head.
        rejections: Where refusals are counted.
        log: Rate-limited warnings about refusals.
    """

    def __init__(
        self,
        *,
        max_connections: int,
        idle_timeout: float,
        rejections: Rejections,
        log: LogThrottle,
    ) -> None:
        self._factory: Callable[[], asyncio.Protocol] | None = None
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.rejections = rejections
        self.log = log
        self._open: set[GuardedConnection] = set()
        self.waiting: set[GuardedConnection] = set()
        """Connections yet to complete a first request head (their deadline runs)."""
        self._tls: TlsPort | None = None
        self.lingering = 0
        """Refused connections waiting for their client's request."""
        self._refusal = _refusal_response(1)

    @property
    def connection_count(self) -> int:
        """Connections admitted and still open, TLS handshakes included."""
        handshakes = 0 if self._tls is None else self._tls.handshakes
        return len(self._open) + handshakes

    def abort_all(self) -> None:
        """
        Drop every connection still open, at once.

        For shutdown: a TLS connection closed politely waits for its client's
        ``close_notify``, which an idle keep-alive client never sends.
        """
        for connection in list(self._open):
            connection.abort()

    async def abort_handshakes(self) -> None:
        """Drop every socket still in its TLS handshake (the port stopped)."""
        if self._tls is not None:
            await self._tls.abort_all()

    def bind(self, handler_factory: Callable[[], asyncio.Protocol]) -> None:
        """Wrap *handler_factory* (aiohttp's server: a ``RequestHandler`` each)."""
        self._factory = handler_factory

    def over_tls(
        self, context: ssl.SSLContext, handshake_timeout: float
    ) -> Callable[[], asyncio.Protocol]:
        """
        Return the protocol factory of a plain TCP port whose clients speak TLS.

        Each socket counts against the cap from ``accept``; over the cap it is
        closed at once, unanswered (a TLS client cannot read a plaintext 503).
        """
        self._tls = TlsPort(
            context,
            port="http",
            handshake_timeout=handshake_timeout,
            max_connections=self.max_connections,
            open_count=lambda: len(self._open),
            refuse=self._note_connection_cap,
            rejections=self.rejections,
            log=self.log,
        )
        return self._tls.protocol_factory(self)

    def __call__(self) -> asyncio.Protocol:
        if self._factory is None:
            raise RuntimeError("HttpGuard.bind() was not called")
        if self.connection_count >= self.max_connections:
            self._note_connection_cap()
            return HttpRefusal(
                self._refusal, linger=self._take_linger, unlinger=self._give_linger
            )
        return GuardedConnection(
            self._factory(),
            open_connections=self._open,
            waiting=self.waiting,
            idle_timeout=self.idle_timeout,
            on_timeout=self.note_timeout,
        )

    def _note_connection_cap(self) -> None:
        self.rejections.add("http", "connection_cap")
        self.log.report(
            "http:connection_cap",
            "refusing HTTP connections: %d open (--max-connections %d)",
            self.connection_count,
            self.max_connections,
        )

    def _take_linger(self) -> bool:
        if self.lingering >= _MAX_LINGERING:
            return False
        self.lingering += 1
        return True

    def _give_linger(self) -> None:
        self.lingering -= 1

    def note_timeout(self) -> None:
        """Count (and maybe log) a connection closed for idling past its deadline."""
        self.rejections.add("http", "timeout")
        self.log.report(
            "http:timeout",
            "closed an HTTP connection that sent no complete request in %g s "
            "(--idle-timeout)",
            self.idle_timeout,
        )

    def request_started(self, request: web.BaseRequest) -> None:
        """
        *request*'s head arrived complete: its connection's first deadline is met.

        Cheap once every open connection met it (``waiting`` is empty).
        """
        if not self.waiting:
            return
        transport = request.transport
        if transport is not None:
            protocol = transport.get_protocol()
            if isinstance(protocol, GuardedConnection):
                protocol.request_started()

    def answered(self, status: int) -> None:
        """Count an answer that refused its request (400, 401, 413, 429) by cause."""
        cause = _CAUSE_BY_STATUS.get(status)
        if cause is not None:
            self.rejections.add("http", cause)
