"""
One pub/sub connection on asyncio: a ``Protocol`` that turns bytes into frames.

The bytes go to the shared ``FrameReader`` (hiredis) from the transport's callback,
with no task and no await per read; the frames go to whoever ``attach``\\ ed, on the
event loop's thread. ``open_link`` connects and subscribes: the asyncio twin of the
threaded client's handshake, judged by the same ``subscribe_answer``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

from .._tls import client_tls_context
from ..errors import EventsError, EventsPubSubError
from ..subscriber.protocol import (
    INCOMPLETE,
    ErrorReply,
    Frame,
    FrameReader,
    Settings,
    subscribe_answer,
    subscribe_command,
)

__all__ = ["Link", "open_link"]

_CLOSE_WAIT: Final = 1.0
"""Seconds ``close()`` waits for the transport to report the socket closed."""


class Link(asyncio.Protocol):
    """
    A subscribed connection: parses what arrives, reports how it ended.

    Until ``attach`` is called only the first frame (the answer to ``SUBSCRIBE``) is
    parsed; what follows it waits in the reader, so no push is handed on before the
    client is ready for it. Loop thread only.

    Args:
        max_buffer_bytes: The ``FrameReader``'s cap on an unfinished frame.
    """

    def __init__(self, max_buffer_bytes: int) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._reader = FrameReader(max_buffer_bytes)
        self._transport: asyncio.Transport | None = None
        self._on_frames: Callable[[list[Frame]], None] | None = None
        self.answer: asyncio.Future[Frame] = loop.create_future()
        """The first frame the server sent."""
        self.lost: asyncio.Future[EventsError | None] = loop.create_future()
        """Done when the connection ended: why (None: closed by either side)."""
        self._closed = loop.create_future()
        self.last_rx = loop.time()
        """When bytes last arrived (``loop.time()``); keepalive reads it."""

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # noqa: S101 - TCP, for mypy
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self.last_rx = self._loop.time()
        reader = self._reader
        try:
            reader.feed(data)
            on_frames = self._on_frames
            if on_frames is None:
                if not self.answer.done():
                    first = reader.next_frame()
                    if first is not INCOMPLETE:
                        self.answer.set_result(first)  # type: ignore[arg-type]  # a Frame now
                return
            frames = reader.frames()
        except EventsPubSubError as exc:
            self.fail(exc)
            return
        if frames:
            on_frames(frames)

    def eof_received(self) -> bool:
        return False  # the server closed: close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if not self.answer.done():
            self.answer.set_exception(
                EventsPubSubError("pub/sub server closed the connection")
            )
            self.answer.exception()  # retrieved: nobody may be waiting any more
        if not self.lost.done():
            self.lost.set_result(
                None
                if exc is None
                else EventsPubSubError(f"pub/sub connection failed: {exc}")
            )
        if not self._closed.done():
            self._closed.set_result(None)

    # the client's side

    def attach(self, on_frames: Callable[[list[Frame]], None]) -> None:
        """Hand every frame to *on_frames* from now on, starting with those held."""
        self._on_frames = on_frames
        try:
            frames = self._reader.frames()
        except EventsPubSubError as exc:
            self.fail(exc)
            return
        if frames:
            on_frames(frames)

    def send(self, data: bytes) -> bool:
        """Write *data*; False if the connection is already closing."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return False
        transport.write(data)
        return True

    def fail(self, error: EventsError) -> None:
        """End the connection now (no flush) because of *error*."""
        if not self.lost.done():
            self.lost.set_result(error)
        if self._transport is not None:
            self._transport.abort()

    async def close(self) -> None:
        """
        Close the socket (after what was written) and wait until it is closed.

        Waits at most a second, then aborts. Safe to call more than once.
        """
        transport = self._transport
        if transport is not None:
            transport.close()
        if self._closed.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._closed), _CLOSE_WAIT)
        except (TimeoutError, asyncio.TimeoutError):
            if self._transport is not None:
                self._transport.abort()

    def abort(self) -> None:
        """Close the socket at once, without waiting (cancellation paths)."""
        if self._transport is not None:
            self._transport.abort()


async def open_link(settings: Settings, timeout: float) -> Link | ErrorReply:
    """
    Connect, send ``SUBSCRIBE``, and wait for the answer, at most *timeout* seconds.

    Cancelling it closes the socket.

    Returns:
        The subscribed connection, or the server's ``-ERR`` answer.

    Raises:
        EventsPubSubError: Refused, timed out, closed early, or not RESP.
    """
    where = f"{settings.host}:{settings.port}"
    loop = asyncio.get_running_loop()
    link = Link(settings.max_buffer_bytes)

    async def subscribe() -> Frame:
        if settings.tls:
            await loop.create_connection(
                lambda: link,
                settings.host,
                settings.port,
                ssl=client_tls_context(settings.ca_file),
                server_hostname=settings.host,
            )
        else:
            await loop.create_connection(lambda: link, settings.host, settings.port)
        link.send(subscribe_command(settings.sandbox_id, settings.token))
        return await link.answer

    try:
        first = await asyncio.wait_for(subscribe(), timeout)
        refused = subscribe_answer(first, where)
    except (TimeoutError, asyncio.TimeoutError):
        link.abort()
        raise EventsPubSubError(f"pub/sub connect to {where} timed out") from None
    except EventsError:
        link.abort()
        raise
    except (OSError, ValueError) as exc:  # ValueError: an unreadable CA bundle
        link.abort()
        raise EventsPubSubError(f"pub/sub connect to {where} failed: {exc}") from None
    except BaseException:  # cancelled: leave no socket behind
        link.abort()
        raise
    if refused is not None:
        await link.close()
        return refused
    return link
