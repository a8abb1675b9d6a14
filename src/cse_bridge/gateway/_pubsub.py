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
from typing import Final

from ._auth import Authenticator
from ._limits import GatewayLimits
from ._pubsub_connection import _Connection
from ._resp import encode_message
from .stores import Broker, StoredEvent

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

    @property
    def connection_count(self) -> int:
        """How many client connections are open."""
        return len(self._connections)

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

    async def close(self) -> None:
        """
        Stop accepting, unsubscribe and close every connection. Idempotent.

        Connections get ``_CLOSE_GRACE`` seconds to flush what is queued for them; the
        ones still sending after that are aborted, so this returns in bounded time.
        """
        if self._closed:
            return
        self._closed = True
        if self._server is None:
            return
        self._server.close()
        for conn in list(self._connections):
            conn.close()
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
