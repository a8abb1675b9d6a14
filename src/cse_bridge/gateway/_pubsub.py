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
  So is the one whose output takes every stalled subscriber's together past
  ``subscriber_buffers_total_bytes``.
- Past ``max_connections`` open connections, a new one gets ``-ERR max number of
  clients reached`` and is closed (as Redis says it; with TLS it is closed at once,
  unanswered, since the count includes the handshakes); one that has not subscribed
  within ``idle_timeout`` seconds (or again, once it left every sandbox) gets ``-ERR``
  and is closed; one access token holds at most ``max_subscriptions_per_token``
  subscriptions at once.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as _ssl
from collections import deque
from collections.abc import Callable
from typing import Final, cast

from ..errors import EventsAuthError
from ._auth import Authenticator
from ._limits import GatewayLimits
from ._log_throttle import LogThrottle
from ._rejections import Cause, Rejections
from ._resp import CommandReader, encode_bulk, encode_error, encode_message
from ._tls_port import TlsPort
from .stores import Broker, SandboxKey, StoredEvent

__all__ = ["PubSubServer"]

logger = logging.getLogger(__name__)

_CLOSE_GRACE: Final = 1.0
"""Seconds ``close()`` lets connections flush their output before aborting them."""
_MAX_CLIENTS: Final = b"-ERR max number of clients reached\r\n"


class PubSubServer:
    """
    Serves SUBSCRIBE/PING/UNSUBSCRIBE/QUIT and pushes stored events to subscribers.

    Runs on the event loop that calls ``start``; not thread-safe, like the broker it
    serves. Each event is encoded once, however many connections it goes to.

    Args:
        broker: The fan-out that calls each subscriber's ``deliver``.
        auth: Verifies the access tokens of ``SUBSCRIBE``.
        limits: The command, output, connection, subscription and idle limits.
        rejections: Where refusals are counted; a private counter by default.
        log: Rate-limited warnings; a private one by default.
    """

    def __init__(
        self,
        broker: Broker,
        auth: Authenticator,
        limits: GatewayLimits,
        *,
        rejections: Rejections | None = None,
        log: LogThrottle | None = None,
    ) -> None:
        self.broker = broker
        self.auth = auth
        self.limits = limits
        self.rejections = rejections if rejections is not None else Rejections()
        self.log = log if log is not None else LogThrottle(logger)
        self.buffered_bytes = 0
        """Unsent output of the subscribers that stalled (their transports paused)."""
        self.port = 0
        """The bound port, once ``start`` has returned."""
        self._server: asyncio.Server | None = None
        self._closed = False
        self._connections: set[_Connection] = set()
        self._tls: TlsPort | None = None
        self._all_gone: asyncio.Event | None = None
        # One-entry cache: the broker hands one event to every subscriber before the
        # next, so the previous event is the only one worth keeping the frame of.
        self._last_event: StoredEvent | None = None
        self._last_frame = b""
        self._per_token: dict[str, int] = {}
        # Plain counters for the gateway's /metrics, read when Prometheus scrapes
        # (refusals count in ``rejections``).
        self.pushes = 0
        """Event pushes written to subscribers."""
        self.slow_disconnects = 0
        """Subscribers cut off for a full output buffer."""

    @property
    def connection_count(self) -> int:
        """How many client connections are open, TLS handshakes included."""
        handshakes = 0 if self._tls is None else self._tls.handshakes
        return len(self._connections) + handshakes

    @property
    def subscriber_count(self) -> int:
        """How many connections are subscribed to at least one sandbox; O(n)."""
        return sum(1 for conn in self._connections if conn.subscribed)

    @property
    def serving(self) -> bool:
        """True while the port accepts connections."""
        return self._server is not None and self._server.is_serving()

    async def start(
        self,
        host: str,
        port: int,
        *,
        reuse_port: bool = False,
        ssl: _ssl.SSLContext | None = None,
    ) -> None:
        """
        Listen on *host*:*port* (0 picks a free port); return once it accepts.

        *reuse_port* sets ``SO_REUSEPORT`` (Linux): several gateway processes then
        share the port and the kernel spreads connections over them. With *ssl*,
        clients speak TLS (like ``rediss://``) and must finish the handshake within
        ``idle_timeout``; a socket counts against ``max_connections`` from accept,
        and one over it is closed at once, before any handshake.

        Raises:
            RuntimeError: Already started or closed.
            OSError: The address cannot be bound.
        """
        if self._server is not None or self._closed:
            raise RuntimeError("the pub/sub server was already started")
        loop = asyncio.get_running_loop()
        self._all_gone = asyncio.Event()
        self._all_gone.set()

        def factory() -> asyncio.Protocol:
            return _Connection(self)

        accept: Callable[[], asyncio.Protocol] = factory
        if ssl is not None:
            # Plain TCP underneath: each socket counts against the cap from accept,
            # through its handshake (asyncio's would hide it until it is done).
            self._tls = TlsPort(
                ssl,
                port="pubsub",
                handshake_timeout=self.limits.idle_timeout,
                max_connections=self.limits.max_connections,
                open_count=lambda: len(self._connections),
                refuse=self._note_connection_cap,
                rejections=self.rejections,
                log=self.log,
            )
            accept = self._tls.protocol_factory(factory)
        self._server = await loop.create_server(
            accept, host, port, reuse_port=reuse_port or None
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
        if self._tls is not None:
            await self._tls.abort_all()
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

    def _attach(self, conn: _Connection) -> bytes | None:
        """Admit *conn* (None), or return what to tell it before closing it."""
        if self._closed:
            return b""  # closing: it would never be closed later
        if self.connection_count >= self.limits.max_connections:
            self._note_connection_cap()
            return _MAX_CLIENTS
        self._connections.add(conn)
        assert self._all_gone is not None  # noqa: S101 - set by start()
        self._all_gone.clear()
        return None

    def _note_connection_cap(self) -> None:
        self.rejections.add("pubsub", "connection_cap")
        self.log.report(
            "pubsub:connection_cap",
            "refusing pub/sub connections: %d open (--max-connections %d)",
            self.connection_count,
            self.limits.max_connections,
        )

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
        self.rejections.add("pubsub", "slow_subscriber")
        self.log.report(
            "pubsub:slow_subscriber",
            "disconnected slow pub/sub subscriber %s: %d bytes unsent (limits: %d "
            "each, %d for all stalled subscribers)",
            peer,
            pending,
            self.limits.subscriber_buffer_bytes,
            self.limits.subscriber_buffers_total_bytes,
        )

    def _note_refusal(self, cause: Cause, message: str) -> None:
        """Count a refused client or an expired deadline; log it, rate-limited."""
        self.rejections.add("pubsub", cause)
        self.log.report("pubsub:" + cause, "refused a pub/sub client: %s", message)

    def _take_token(self, token: str) -> bool:
        """Count one more subscription for *token*; False past the per-token cap."""
        held = self._per_token.get(token, 0)
        if held >= self.limits.max_subscriptions_per_token:
            return False
        self._per_token[token] = held + 1
        return True

    def _release_token(self, token: str) -> None:
        held = self._per_token.get(token, 0) - 1
        if held > 0:
            self._per_token[token] = held
        else:
            self._per_token.pop(token, None)

    def _account(self, delta: int) -> bool:
        """Add *delta* bytes of stalled output; False once the total passes its cap."""
        self.buffered_bytes += delta
        return self.buffered_bytes <= self.limits.subscriber_buffers_total_bytes


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
        self._keys: dict[SandboxKey, str] = {}
        """The sandboxes subscribed to, each with the token that subscribed it."""
        self._closing = False
        self._deadline: asyncio.TimerHandle | None = None
        """Closes the connection unless it subscribes in time; None once it has."""
        self._paused = False
        self._stalled = 0
        """Bytes of this connection counted in the server's ``buffered_bytes``."""
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
        refusal = self._server._attach(self)
        if refusal is None:
            self._arm_deadline()
            return
        self._closing = True
        if refusal:
            self._transport.write(refusal)
            self._transport.close()
        else:
            self._transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._disarm_deadline()
        self._set_stalled(0)
        self._unsubscribe_all()
        self._server._detach(self)
        # Python 3.10's TLS transport stays "open" when the peer closed first, and
        # warns (ResourceWarning) when collected: close it; a no-op otherwise.
        transport = self._transport
        if transport is not None:
            transport.close()

    def pause_writing(self) -> None:
        # Past the transport's high-water mark: from now on this subscriber's
        # unsent output counts toward the total of all stalled subscribers.
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._set_stalled(0)

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self._reader.feed(data)
        while not self._closing:
            try:
                command = self._reader.next_command()
            except ValueError as exc:
                cause: Cause = "size" if "too big" in str(exc) else "invalid"
                self._server._note_refusal(cause, str(exc))
                self.fail(str(exc))
                return
            if command is None:
                return
            self._dispatch(command)

    def eof_received(self) -> bool:
        # The client half-closed: nothing more will be asked, so unsubscribe now and
        # close once the replies already queued are sent. True: we closed it ourselves
        # (a TLS transport closes by itself, and warns about a True).
        self.close()
        transport = self._transport
        return transport is not None and transport.get_extra_info("sslcontext") is None

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
            if not self._keys:
                self._arm_deadline()
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
            self._refuse("auth", "Invalid sandbox id or access token encoding")
            return
        try:
            claims = self._server.auth.verify_token(token)
        except EventsAuthError as exc:
            self._refuse("auth", exc.message)
            return
        if claims.sandbox_id != sandbox_id:
            self._refuse("auth", "Access token is not valid for this sandbox")
            return
        key = (claims.workspace_id, sandbox_id)
        # Subscribe, then answer: a client that has read +OK is already subscribed.
        # No push can come between the two, since the broker delivers on this loop
        # and this callback runs to its end first; so +OK still precedes the first
        # push, which the client needs (it takes the first reply as the answer).
        if key not in self._keys:
            if not self._server._take_token(token):
                self._refuse(
                    "subscription_cap",
                    "Too many subscriptions with this access token (limit "
                    f"{self._server.limits.max_subscriptions_per_token})",
                )
                return
            self._keys[key] = token
            self._disarm_deadline()
            pending = self._server.broker.subscribe(key, self)
            if pending is not None:
                if self._held is None:
                    self._held = deque()
                self._held.append(pending)
                pending.add_done_callback(self._release)
                return
        self._write(_OK)

    def _refuse(self, cause: Cause, message: str) -> None:
        self._server._note_refusal(cause, message)
        self.fail(message)

    def _arm_deadline(self) -> None:
        if self._deadline is None and not self._closing:
            self._deadline = asyncio.get_running_loop().call_later(
                self._server.limits.idle_timeout, self._expire
            )

    def _disarm_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self._closing or self._keys:
            return
        self._refuse(
            "timeout",
            "Timed out: no SUBSCRIBE within "
            f"{self._server.limits.idle_timeout:g} seconds",
        )

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
            self._server._release_token(self._keys.pop(key))
            self._server.broker.unsubscribe(key, self)

    def _unsubscribe_all(self) -> None:
        keys, self._keys = self._keys, {}
        for key, token in keys.items():
            self._server._release_token(token)
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
        if pending > self._server.limits.subscriber_buffer_bytes or (
            (self._paused or self._stalled)
            and not self._set_stalled(pending if self._paused else 0)
        ):
            self._server._note_cutoff(transport.get_extra_info("peername"), pending)
            # Abort, not close: close() would wait, forever, for this client to read.
            self.abort()

    def _set_stalled(self, pending: int) -> bool:
        """Count *pending* bytes toward the total; False once it is over its cap."""
        delta, self._stalled = pending - self._stalled, pending
        return self._server._account(delta)

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
        self._disarm_deadline()
        self._set_stalled(0)
        self._held = None
        self._unsubscribe_all()
        if self._transport is not None:
            self._transport.abort()
