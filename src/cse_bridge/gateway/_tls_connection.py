"""
One accepted socket of a TLS port, from ``accept`` to the end of its handshake.

asyncio's ``create_server(ssl=...)`` calls the application's ``connection_made`` only
once the handshake is done, so a cap counted there cannot see, nor refuse before
the handshake, the sockets still shaking hands. The ports therefore listen on plain
TCP and hand each admitted socket to ``TlsConnection``, which counts from
``connection_made`` of the raw socket, runs ``loop.start_tls`` under a deadline, and
then gives the TLS stream to the application's protocol.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Final

from ._rejections import Cause

__all__ = ["TlsConnection"]

_BACKSTOP: Final = 2.0
"""Factor of the deadline given to asyncio's own handshake timeout, which only
backs up ours: ours fires first and counts a timeout."""


class TlsConnection(asyncio.Protocol):
    """
    The protocol of one raw socket until its TLS handshake ends, then a stand-in.

    ``connection_made`` asks *admit* for a slot: refused, the socket is aborted at
    once (no handshake, no answer). Admitted, a task runs the handshake within
    *timeout* seconds. On success, *make_app* builds the
    application's protocol, which gets ``connection_made`` with the TLS transport
    and from then on every callback directly (``set_protocol``); whatever the TLS
    layer reported before that (data that came with the end of the handshake, an
    early EOF or loss) is replayed to it in order. On failure the socket is aborted.
    Either way *done* is called once, with the cause of a failure (``timeout``,
    ``invalid``) or None: the slot then passes to the application's own count.

    Args:
        context: The server's TLS context.
        timeout: Seconds the client has to finish the handshake.
        admit: Takes a slot for this connection; False if the port is full.
        done: Gives the slot back, with the cause of a failure.
        make_app: Builds the application's protocol once the handshake is done.
    """

    def __init__(
        self,
        context: ssl.SSLContext,
        timeout: float,
        *,
        admit: Callable[[TlsConnection], bool],
        done: Callable[[TlsConnection, Cause | None], None],
        make_app: Callable[[], asyncio.Protocol],
    ) -> None:
        self._context = context
        self._timeout = timeout
        self._admit = admit
        self._done = done
        self._make_app = make_app
        self._raw: asyncio.Transport | None = None
        self._task: asyncio.Task[None] | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._expired = False
        self._early: list[Callable[[asyncio.Protocol], object]] = []
        """What the TLS layer reported before the application's protocol existed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # noqa: S101 - a TCP socket
        if not self._admit(self):
            transport.abort()
            return
        self._raw = transport
        loop = asyncio.get_running_loop()
        # Not pause_reading() here: Python 3.10 would start reading anyway, and then
        # ignore start_tls's pause. None is needed: the task's first step, where
        # start_tls pauses the socket and takes it over, runs before any read.
        self._task = loop.create_task(self._handshake())
        self._deadline = loop.call_later(self._timeout, self._expire)

    async def _handshake(self) -> None:
        raw = self._raw
        assert raw is not None  # noqa: S101 - set by connection_made
        try:
            # Awaited directly (no wait_for, which on Python 3.10 and 3.11 would
            # start it one loop iteration later, after the ClientHello was read).
            stream = await asyncio.get_running_loop().start_tls(
                raw,
                self,
                self._context,
                server_side=True,
                ssl_handshake_timeout=self._timeout * _BACKSTOP,
            )
        except asyncio.CancelledError:
            self._fail("timeout" if self._expired else None)
            if not self._expired:
                raise  # the port closes
            return
        except Exception:  # any failed handshake: not TLS, a reset, a bad version
            self._fail("invalid")
            return
        if stream is None:  # lost at the end of the handshake (Python 3.11+)
            self._fail("invalid")
            return
        self._disarm()
        self._done(self, None)
        app = self._make_app()
        stream.set_protocol(app)
        app.connection_made(stream)
        early, self._early = self._early, []
        for callback in early:
            callback(app)

    def _expire(self) -> None:
        self._deadline = None
        self._expired = True
        if self._task is not None:
            self._task.cancel()

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _fail(self, cause: Cause | None) -> None:
        self._disarm()
        self._early.clear()
        if self._raw is not None:
            self._raw.abort()
        self._done(self, cause)

    def abort(self) -> asyncio.Task[None] | None:
        """Stop the handshake and drop the socket; return the handshake's task."""
        self._disarm()
        self._early.clear()
        if self._raw is not None:
            self._raw.abort()
        if self._task is not None:
            self._task.cancel()
        return self._task

    # Called by the TLS layer only between the handshake and the hand-over.

    def data_received(self, data: bytes) -> None:
        self._early.append(lambda app: app.data_received(data))

    def eof_received(self) -> bool | None:
        self._early.append(lambda app: app.eof_received())
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._early.append(lambda app: app.connection_lost(exc))

    def pause_writing(self) -> None:
        self._early.append(lambda app: app.pause_writing())

    def resume_writing(self) -> None:
        self._early.append(lambda app: app.resume_writing())
