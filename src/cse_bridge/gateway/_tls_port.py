"""
The connections of a TLS port that are still in their handshake, under the port's cap.

Both ports count their connections from ``accept``
(docs/protocol.md#protocol-gateway-connections): with TLS, a socket in its
handshake holds a descriptor like any other, so it takes a slot of
``--max-connections`` until the handshake ends; one over the cap is closed at once,
before any handshake (a TLS client cannot read a plaintext refusal).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Final

from ._log_throttle import LogThrottle
from ._rejections import Cause, Port, Rejections
from ._tls_connection import TlsConnection

__all__ = ["TlsPort"]

_ABORT_WAIT: Final = 1.0
"""Seconds ``abort_all`` waits for the aborted handshakes' tasks to end."""
_NAMES: Final[dict[Port, str]] = {"http": "an HTTP", "pubsub": "a pub/sub"}


class TlsPort:
    """
    Admits the accepted sockets of one TLS port and counts their handshakes.

    ``protocol_factory`` gives ``loop.create_server`` (plain TCP) a
    ``TlsConnection`` per socket. Runs on the gateway's loop only.

    Args:
        context: The server's TLS context.
        port: The port's name in the rejection counts and the log.
        handshake_timeout: Seconds a client has to finish the handshake.
        max_connections: The port's cap, handshakes and open connections together.
        open_count: The port's connections past their handshake.
        refuse: Counts and logs a socket refused for the cap.
        rejections: Where failed handshakes are counted.
        log: Rate-limited warnings about failed handshakes.
    """

    def __init__(
        self,
        context: ssl.SSLContext,
        *,
        port: Port,
        handshake_timeout: float,
        max_connections: int,
        open_count: Callable[[], int],
        refuse: Callable[[], None],
        rejections: Rejections,
        log: LogThrottle,
    ) -> None:
        self._context = context
        self._port: Port = port
        self.handshake_timeout = handshake_timeout
        self._max_connections = max_connections
        self._open_count = open_count
        self._refuse = refuse
        self._rejections = rejections
        self._log = log
        self._shaking: set[TlsConnection] = set()

    @property
    def handshakes(self) -> int:
        """Sockets admitted and still in their handshake."""
        return len(self._shaking)

    def protocol_factory(
        self, make_app: Callable[[], asyncio.Protocol]
    ) -> Callable[[], asyncio.Protocol]:
        """Return the factory of a plain TCP server whose sockets then speak TLS."""

        def accept() -> asyncio.Protocol:
            return TlsConnection(
                self._context,
                self.handshake_timeout,
                admit=self._admit,
                done=self._done,
                make_app=make_app,
            )

        return accept

    async def abort_all(self) -> None:
        """Drop every socket still in its handshake and wait for their tasks."""
        shaking, self._shaking = self._shaking, set()
        tasks = [task for conn in shaking if (task := conn.abort()) is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=_ABORT_WAIT)

    def _admit(self, connection: TlsConnection) -> bool:
        if self._open_count() + len(self._shaking) >= self._max_connections:
            self._refuse()
            return False
        self._shaking.add(connection)
        return True

    def _done(self, connection: TlsConnection, failure: Cause | None) -> None:
        if connection not in self._shaking:
            return  # aborted by abort_all: the port is closing
        self._shaking.discard(connection)
        if failure is None:
            return
        self._rejections.add(self._port, failure)
        what = (
            f"did not finish its TLS handshake in {self.handshake_timeout:g} s "
            "(--idle-timeout)"
            if failure == "timeout"
            else "failed its TLS handshake"
        )
        self._log.report(
            f"{self._port}:{failure}",
            "closed %s connection that %s",
            _NAMES[self._port],
            what,
        )
