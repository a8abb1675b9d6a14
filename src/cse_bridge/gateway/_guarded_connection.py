"""One admitted HTTP connection: counted while open, closed if it never asks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["GuardedConnection"]


class GuardedConnection(asyncio.Protocol):
    """
    Wraps one ``RequestHandler``: counts it, and closes it if it never asks.

    Args:
        inner: aiohttp's protocol of the connection.
        open_connections: The port's open connections; this one is in it while open.
        waiting: The connections yet to complete a first request head; this one is
            in it from ``connection_made`` until it does, expires or closes.
        idle_timeout: Seconds the connection has to complete its first request head.
        on_timeout: Counts (and maybe logs) a connection closed for its deadline.
    """

    __slots__ = (
        "_deadline",
        "_idle_timeout",
        "_inner",
        "_on_timeout",
        "_open",
        "_transport",
        "_waiting",
        "data_received",
    )

    def __init__(
        self,
        inner: asyncio.Protocol,
        *,
        open_connections: set[GuardedConnection],
        waiting: set[GuardedConnection],
        idle_timeout: float,
        on_timeout: Callable[[], None],
    ) -> None:
        self._inner = inner
        # The transport hands every chunk straight to aiohttp's handler: a Python
        # call fewer per request than a method forwarding it.
        self.data_received = inner.data_received  # type: ignore[method-assign]  # a slot
        self._open = open_connections
        self._waiting = waiting
        self._idle_timeout = idle_timeout
        self._on_timeout = on_timeout
        self._deadline: asyncio.TimerHandle | None = None
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._open.add(self)
        self._waiting.add(self)
        self._transport = transport
        self._deadline = asyncio.get_running_loop().call_later(
            self._idle_timeout, self._expire
        )
        self._inner.connection_made(transport)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._open.discard(self)
        transport, self._transport = self._transport, None
        self.request_started()
        self._inner.connection_lost(exc)
        # Python 3.10's TLS transport stays "open" when the peer closed first, and
        # warns (ResourceWarning) when collected: close it; a no-op otherwise.
        if transport is not None:
            transport.close()

    def abort(self) -> None:
        """Drop the connection now, unsent output and all."""
        transport = self._transport
        if transport is not None and isinstance(transport, asyncio.Transport):
            transport.abort()

    def request_started(self) -> None:
        """A request head arrived complete: the first-request deadline is met."""
        self._waiting.discard(self)
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._waiting.discard(self)
        self._deadline = None
        self._on_timeout()
        close = getattr(self._inner, "force_close", None)
        if callable(close):
            close()
