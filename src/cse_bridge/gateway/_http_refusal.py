"""An HTTP connection over the cap: answered 503, then closed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final, cast

__all__ = ["HttpRefusal"]

_REFUSAL_LINGER: Final = 1.0
"""Seconds a refused connection waits for the client's request before closing, so
the client reads the 503 instead of a reset."""


class HttpRefusal(asyncio.Protocol):
    """
    A connection over the cap: answer 503, wait briefly for EOF, close.

    Args:
        answer: The 503 to write.
        linger: Takes a lingering place; False when too many refusals linger, and
            this one closes at once.
        unlinger: Gives the place back.
    """

    __slots__ = (
        "_answer",
        "_linger",
        "_lingering",
        "_timer",
        "_transport",
        "_unlinger",
    )

    def __init__(
        self,
        answer: bytes,
        *,
        linger: Callable[[], bool],
        unlinger: Callable[[], None],
    ) -> None:
        self._answer = answer
        self._linger = linger
        self._unlinger = unlinger
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._lingering = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream = cast(asyncio.Transport, transport)
        self._transport = stream
        stream.write(self._answer)
        if not self._linger():
            stream.close()
            return
        # Closing with the client's request unread would reset the connection and
        # could destroy the 503 before the client reads it: linger for its request.
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
            self._unlinger()
            self._lingering = False
