"""
One pub/sub client connection (see ``_pubsub`` for the protocol): it parses commands,
subscribes to the broker, and holds or sends the output, cutting off slow readers.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Final, cast

from ..errors import EventsAuthError
from ._resp import CommandReader, encode_bulk, encode_error
from .stores import SandboxKey, StoredEvent

if TYPE_CHECKING:
    from ._pubsub import PubSubServer

__all__: list[str] = []

_OK: Final = b"+OK\r\n"
_PONG: Final = b"+PONG\r\n"
_NAME_ECHO_LIMIT: Final = 64
"""Longest unknown command name echoed back in an error reply."""


class _Connection(asyncio.Protocol):
    """
    One client connection; also the ``Subscriber`` the broker delivers to.

    Private to the gateway: ``PubSubServer`` creates one per accepted socket.

    Every method runs on the server's loop, so the connection state needs no lock:
    deliveries and commands interleave only between callbacks, never within one.
    """

    def __init__(self, server: PubSubServer) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._reader = CommandReader(server.limits.max_command_bytes)
        self._keys: dict[SandboxKey, None] = {}
        self._closing = False
        # While a subscription is pending: the output held back, in order; a future
        # stands for the +OK it will release. None when nothing is held.
        self._held: deque[bytes | asyncio.Future[None]] | None = None
        self._held_bytes = 0

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        if not self._server._attach(self):
            # Accepted while the server was closing: it would never be closed later.
            self._closing = True
            self._transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._unsubscribe_all()
        self._server._detach(self)

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self._reader.feed(data)
        while not self._closing:
            try:
                command = self._reader.next_command()
            except ValueError as exc:
                self.fail(str(exc))
                return
            if command is None:
                return
            self._dispatch(command)

    def eof_received(self) -> bool:
        # The client half-closed: nothing more will be asked, so unsubscribe now and
        # close once the replies already queued are sent. True: we closed it ourselves.
        self.close()
        return True

    # Subscriber

    def deliver(self, event: StoredEvent) -> None:
        """Queue *event*'s push; never blocks, never raises (called by the broker)."""
        if self._closing:
            return
        try:
            self._write(self._server.frame_for(event))
        except Exception as exc:  # the broker's loop over other subscribers must go on
            self._server._note_delivery_failure(exc)
            self.abort()

    # commands

    def _dispatch(self, args: list[bytes]) -> None:
        name = args[0].decode("utf-8", "replace").upper()
        if name == "SUBSCRIBE":
            self._subscribe(args[1:])
        elif name == "PING":
            if len(args) == 1:
                self._write(_PONG)
            elif len(args) == 2:  # noqa: PLR2004 - PING takes one optional message
                self._write(encode_bulk(args[1]))
            else:
                self._write(
                    encode_error("wrong number of arguments for 'ping' command")
                )
        elif name == "UNSUBSCRIBE":
            self._unsubscribe(args[1:])
            self._write(_OK)
        elif name == "QUIT":
            self._write(_OK)
            self.close()
        else:
            shown = name if len(name) <= _NAME_ECHO_LIMIT else name[:_NAME_ECHO_LIMIT]
            self._write(encode_error(f"unknown command '{shown.lower()}'"))

    def _subscribe(self, args: list[bytes]) -> None:
        if len(args) != 2:  # noqa: PLR2004 - SUBSCRIBE <sandboxId> <accessToken>
            self.fail(
                "wrong number of arguments for 'subscribe' command "
                "(expected: SUBSCRIBE <sandboxId> <accessToken>)"
            )
            return
        try:
            sandbox_id = args[0].decode("utf-8")
            token = args[1].decode("ascii")
        except UnicodeDecodeError:
            self.fail("Invalid sandbox id or access token encoding")
            return
        try:
            claims = self._server.auth.verify_token(token)
        except EventsAuthError as exc:
            self.fail(exc.message)
            return
        if claims.sandbox_id != sandbox_id:
            self.fail("Access token is not valid for this sandbox")
            return
        key = (claims.workspace_id, sandbox_id)
        # Subscribe, then answer: a client that has read +OK is already subscribed.
        # No push can come between the two, since the broker delivers on this loop
        # and this callback runs to its end first; so +OK still precedes the first
        # push, which the client needs (it takes the first reply as the answer).
        if key not in self._keys:
            self._keys[key] = None
            pending = self._server.broker.subscribe(key, self)
            if pending is not None:
                if self._held is None:
                    self._held = deque()
                self._held.append(pending)
                pending.add_done_callback(self._release)
                return
        self._write(_OK)

    def _release(self, _: object = None) -> None:
        """Send held output up to the first subscription still pending."""
        held = self._held
        while held:
            item = held[0]
            if isinstance(item, bytes):
                held.popleft()
                self._held_bytes -= len(item)
                self._send(item)
                continue
            if not item.done():
                return
            held.popleft()
            if item.cancelled() or item.exception() is not None:
                failure = item.exception() if not item.cancelled() else None
                self.fail(str(failure or "subscription cancelled"))
                return
            self._send(_OK)
        self._held = None
        self._held_bytes = 0

    def _unsubscribe(self, sandbox_ids: list[bytes]) -> None:
        if not sandbox_ids:
            self._unsubscribe_all()
            return
        wanted = {raw.decode("utf-8", "replace") for raw in sandbox_ids}
        for key in [k for k in self._keys if k[1] in wanted]:
            del self._keys[key]
            self._server.broker.unsubscribe(key, self)

    def _unsubscribe_all(self) -> None:
        keys, self._keys = self._keys, {}
        for key in keys:
            self._server.broker.unsubscribe(key, self)

    # output and closing

    def _write(self, data: bytes) -> None:
        held = self._held
        if held is None:
            self._send(data)
            return
        if self._closing:
            return
        held.append(data)
        self._held_bytes += len(data)
        if self._held_bytes > self._server.limits.subscriber_buffer_bytes:
            self._server._note_cutoff(self._peer(), self._held_bytes)
            self.abort()

    def _peer(self) -> object:
        return (
            None
            if self._transport is None
            else self._transport.get_extra_info("peername")
        )

    def _send(self, data: bytes) -> None:
        transport = self._transport
        if self._closing or transport is None:
            return
        transport.write(data)
        # write() hands to the kernel what fits and keeps the rest; what it keeps is
        # exactly the output this client has fallen behind by. Checking after the
        # write (not before) never cuts off a reader whose kernel buffer had room, at
        # the price of overshooting the cap by at most one frame.
        pending = transport.get_write_buffer_size()
        if pending > self._server.limits.subscriber_buffer_bytes:
            self._server._note_cutoff(transport.get_extra_info("peername"), pending)
            # Abort, not close: close() would wait, forever, for this client to read.
            self.abort()

    def fail(self, message: str) -> None:
        """Reply ``-ERR message`` and close once it is sent; held output is dropped."""
        self._held = None
        self._held_bytes = 0
        self._write(encode_error(message))
        self.close()

    def close(self) -> None:
        """Unsubscribe now; close the transport once its output is flushed."""
        if self._closing:
            return
        self._closing = True
        self._unsubscribe_all()
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        """Unsubscribe and drop the connection and any unsent output at once."""
        self._closing = True
        self._held = None
        self._unsubscribe_all()
        if self._transport is not None:
            self._transport.abort()
