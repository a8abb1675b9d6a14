"""
The gateway's pub/sub server (docs/protocol.md#protocol-pubsub): RESP over plain TCP.

A client sends ``SUBSCRIBE <sandboxId> <accessToken>``; the server answers ``+OK`` and
from then on pushes every event stored for that sandbox, in store order, as a RESP
``message`` array whose channel is the sandbox id. Other commands: ``PING [msg]``,
``UNSUBSCRIBE [sandboxId ...]`` and ``QUIT``; anything else gets ``-ERR`` and the
connection stays open. A failed ``SUBSCRIBE`` gets ``-ERR`` and the connection is
closed, which is what the official client expects of a refused ``connect()``.

Choices this server makes that the hosted service does not promise
(docs/protocol.md#protocol-gateway-additions):

- One connection may ``SUBSCRIBE`` to several sandboxes, each with its own token; each
  success answers ``+OK``, and a repeated one is harmless. The channel of each push
  says which sandbox it belongs to.
- ``UNSUBSCRIBE`` without arguments leaves every sandbox of the connection, with
  arguments only those named; either way it answers ``+OK`` and the connection stays
  open. ``QUIT`` answers ``+OK`` and closes.
- With a broker that subscribes asynchronously (Redis), ``+OK`` waits until the
  subscription is active, and replies and pushes after it wait with it, in order; if
  the subscription fails, or the broker later loses its source, the client gets
  ``-ERR`` and the connection is closed (clients reconnect and backfill).
- A subscriber whose unsent output passes ``GatewayLimits.subscriber_buffer_bytes`` is
  unsubscribed and disconnected at once, without an error reply: its buffer is full.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Final, cast

from ..errors import EventsAuthError
from ._auth import Authenticator
from ._limits import GatewayLimits
from ._resp import CommandReader, encode_bulk, encode_error, encode_message
from .stores import Broker, SandboxKey, StoredEvent

__all__ = ["PubSubServer"]

logger = logging.getLogger(__name__)

_CLOSE_GRACE: Final = 1.0
"""Seconds ``close()`` lets connections flush their output before aborting them."""
_CUTOFF_LOG_INTERVAL: Final = 10.0
"""Seconds between two log lines about slow subscribers being disconnected."""


class PubSubServer:
    """
    Serves SUBSCRIBE/PING/UNSUBSCRIBE/QUIT and pushes stored events to subscribers.

    Runs on the event loop that calls ``start``; not thread-safe, like the broker it
    serves. Each event is encoded once, however many connections it goes to.

    Args:
        broker: The fan-out that calls each subscriber's ``deliver``.
        auth: Verifies the access tokens of ``SUBSCRIBE``.
        limits: ``max_command_bytes`` and ``subscriber_buffer_bytes`` apply here.
    """

    def __init__(
        self, broker: Broker, auth: Authenticator, limits: GatewayLimits
    ) -> None:
        self.broker = broker
        self.auth = auth
        self.limits = limits
        self.port = 0
        """The bound port, once ``start`` has returned."""
        self._server: asyncio.Server | None = None
        self._closed = False
        self._connections: set[_Connection] = set()
        self._all_gone: asyncio.Event | None = None
        # One-entry cache: the broker hands one event to every subscriber before the
        # next, so the previous event is the only one worth keeping the frame of.
        self._last_event: StoredEvent | None = None
        self._last_frame = b""
        self._cutoffs_unlogged = 0
        self._cutoff_logged_at = -_CUTOFF_LOG_INTERVAL
        # Plain counters for the gateway's /metrics, read when Prometheus scrapes.
        self.pushes = 0
        """Event pushes written to subscribers."""
        self.slow_disconnects = 0
        """Subscribers cut off for a full output buffer."""
        self.refused_subscriptions = 0
        """``SUBSCRIBE`` commands refused for a bad or foreign access token."""

    @property
    def connection_count(self) -> int:
        """How many client connections are open."""
        return len(self._connections)

    @property
    def subscriber_count(self) -> int:
        """How many connections are subscribed to at least one sandbox; O(n)."""
        return sum(1 for conn in self._connections if conn.subscribed)

    @property
    def serving(self) -> bool:
        """True while the port accepts connections."""
        return self._server is not None and self._server.is_serving()

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> None:
        """
        Listen on *host*:*port* (0 picks a free port); return once it accepts.

        *reuse_port* sets ``SO_REUSEPORT`` (Linux): several gateway processes then
        share the port and the kernel spreads connections over them.

        Raises:
            RuntimeError: Already started or closed.
            OSError: The address cannot be bound.
        """
        if self._server is not None or self._closed:
            raise RuntimeError("the pub/sub server was already started")
        loop = asyncio.get_running_loop()
        self._all_gone = asyncio.Event()
        self._all_gone.set()
        self._server = await loop.create_server(
            lambda: _Connection(self), host, port, reuse_port=reuse_port or None
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self, reason: str | None = None) -> None:
        """
        Stop accepting, unsubscribe and close every connection. Idempotent.

        With a *reason*, each connection gets ``-ERR reason`` first (a drain: the
        client reconnects elsewhere at once). Connections get ``_CLOSE_GRACE``
        seconds to flush what is queued for them; the ones still sending after that
        are aborted, so this returns in bounded time.
        """
        if self._closed:
            return
        self._closed = True
        if self._server is None:
            return
        self._server.close()
        for conn in list(self._connections):
            if reason is None:
                conn.close()
            else:
                conn.fail(reason)
        assert self._all_gone is not None  # noqa: S101 - set by start()
        gone = asyncio.ensure_future(self._all_gone.wait())
        try:
            await asyncio.wait({gone}, timeout=_CLOSE_GRACE)
            if not gone.done():
                for conn in list(self._connections):
                    conn.abort()
                # abort() reports connection_lost on the next loop iteration.
                await gone
        finally:
            gone.cancel()
        await self._server.wait_closed()

    def frame_for(self, event: StoredEvent) -> bytes:
        """Return the RESP push of *event*, encoding it only when it is a new one."""
        self.pushes += 1  # once per connection: the broker calls this for each one
        if event is not self._last_event:
            self._last_frame = encode_message(event.sandbox_id, event.json)
            self._last_event = event
        return self._last_frame

    def _attach(self, conn: _Connection) -> bool:
        if self._closed:
            return False
        self._connections.add(conn)
        assert self._all_gone is not None  # noqa: S101 - set by start()
        self._all_gone.clear()
        return True

    def _detach(self, conn: _Connection) -> None:
        self._connections.discard(conn)
        if not self._connections and self._all_gone is not None:
            self._all_gone.set()

    def _note_delivery_failure(self, exc: BaseException) -> None:
        # Logged here, not by the connection: one logger for the server's diagnostics.
        logger.error("pub/sub delivery failed; dropping the connection", exc_info=exc)

    def _note_cutoff(self, peer: object, pending: int) -> None:
        self.slow_disconnects += 1
        # Rate-limited: a stalled consumer farm must not flood the gateway's log.
        now = time.monotonic()
        if now - self._cutoff_logged_at < _CUTOFF_LOG_INTERVAL:
            self._cutoffs_unlogged += 1
            return
        logger.warning(
            "disconnected slow pub/sub subscriber %s: %d bytes unsent (limit %d); "
            "%d more since the last report",
            peer,
            pending,
            self.limits.subscriber_buffer_bytes,
            self._cutoffs_unlogged,
        )
        self._cutoff_logged_at = now
        self._cutoffs_unlogged = 0


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

    @property
    def subscribed(self) -> bool:
        """True while the connection is subscribed to at least one sandbox."""
        return bool(self._keys)

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
            self._server.refused_subscriptions += 1
            self.fail(exc.message)
            return
        if claims.sandbox_id != sandbox_id:
            self._server.refused_subscriptions += 1
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
