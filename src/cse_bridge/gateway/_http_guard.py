"""
Connection limits of the HTTP port: a cap, a deadline for the first request, counts.

aiohttp closes a keep-alive connection that idles past its ``keepalive_timeout``;
what it does not do is cap how many connections are open, and (before 3.14) it let a
connection that never completes a first request head stay forever. ``HttpGuard``
sits between the listening socket and aiohttp's ``RequestHandler`` to add both, and
counts every refusal by cause (``Rejections``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final, cast

from aiohttp import web

from ._log_throttle import LogThrottle
from ._rejections import Cause, Rejections

__all__ = ["HttpGuard"]

_REFUSAL_LINGER: Final = 1.0
"""Seconds a refused connection waits for the client's request before closing, so
the client reads the 503 instead of a reset."""
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

    The outermost middleware (``observe_requests``) tells it of every request and
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
        self._open: set[_GuardedConnection] = set()
        self.lingering = 0
        """Refused connections waiting for their client's request."""
        self._refusal = _refusal_response(1)

    @property
    def connection_count(self) -> int:
        """Connections admitted and still open."""
        return len(self._open)

    def abort_all(self) -> None:
        """
        Drop every connection still open, at once.

        For shutdown: a TLS connection closed politely waits for its client's
        ``close_notify``, which an idle keep-alive client never sends.
        """
        for connection in list(self._open):
            connection.abort()

    def bind(self, handler_factory: Callable[[], asyncio.Protocol]) -> None:
        """Wrap *handler_factory* (aiohttp's server: a ``RequestHandler`` each)."""
        self._factory = handler_factory

    def __call__(self) -> asyncio.Protocol:
        if self._factory is None:
            raise RuntimeError("HttpGuard.bind() was not called")
        if self.connection_count >= self.max_connections:
            self.rejections.add("http", "connection_cap")
            self.log.report(
                "http:connection_cap",
                "refusing HTTP connections: %d open (--max-connections %d)",
                self.connection_count,
                self.max_connections,
            )
            return _Refusal(self)
        return _GuardedConnection(self, self._factory())

    def refusal(self) -> bytes:
        """The 503 answer of a refused connection."""
        return self._refusal

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
        """*request*'s head arrived complete: its connection's first deadline is met."""
        transport = request.transport
        if transport is not None:
            protocol = transport.get_protocol()
            if isinstance(protocol, _GuardedConnection):
                protocol.request_started()

    def answered(self, status: int) -> None:
        """Count an answer that refused its request (400, 401, 413, 429) by cause."""
        cause = _CAUSE_BY_STATUS.get(status)
        if cause is not None:
            self.rejections.add("http", cause)


class _GuardedConnection(asyncio.Protocol):
    """Wraps one ``RequestHandler``: counts it, and closes it if it never asks."""

    __slots__ = ("_deadline", "_guard", "_inner", "_transport")

    def __init__(self, guard: HttpGuard, inner: asyncio.Protocol) -> None:
        self._guard = guard
        self._inner = inner
        self._deadline: asyncio.TimerHandle | None = None
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        guard = self._guard
        guard._open.add(self)
        self._transport = transport
        self._deadline = asyncio.get_running_loop().call_later(
            guard.idle_timeout, self._expire
        )
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard._open.discard(self)
        self._transport = None
        self.request_started()
        self._inner.connection_lost(exc)

    def abort(self) -> None:
        """Drop the connection now, unsent output and all."""
        transport = self._transport
        if transport is not None and isinstance(transport, asyncio.Transport):
            transport.abort()

    def request_started(self) -> None:
        """A request head arrived complete: the first-request deadline is met."""
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        self._guard.note_timeout()
        close = getattr(self._inner, "force_close", None)
        if callable(close):
            close()


class _Refusal(asyncio.Protocol):
    """A connection over the cap: answer 503, wait briefly for EOF, close."""

    __slots__ = ("_guard", "_lingering", "_timer", "_transport")

    def __init__(self, guard: HttpGuard) -> None:
        self._guard = guard
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._lingering = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream = cast(asyncio.Transport, transport)
        self._transport = stream
        stream.write(self._guard.refusal())
        guard = self._guard
        if guard.lingering >= _MAX_LINGERING:
            stream.close()
            return
        # Closing with the client's request unread would reset the connection and
        # could destroy the 503 before the client reads it: linger for its request.
        guard.lingering += 1
        self._lingering = True
        if stream.can_write_eof():
            stream.write_eof()
        self._timer = asyncio.get_running_loop().call_later(
            _REFUSAL_LINGER, stream.close
        )

    def data_received(self, data: bytes) -> None:
        """The client's request: read and dropped."""

    def eof_received(self) -> bool:
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._lingering:
            self._guard.lingering -= 1
            self._lingering = False
