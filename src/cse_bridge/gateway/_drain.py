"""
The gateway's drain state: draining or not, and the HTTP requests still in flight.

A drain (SIGTERM) turns ``/readyz`` to 503 so that load balancers route around this
process, then waits for the requests it already took to finish: a client that got a
200 got it from a gateway that had stored the event.
See docs/how-to/operate.md#operate-drain.
"""

from __future__ import annotations

import asyncio

__all__ = ["Drain"]


class Drain:
    """
    Counts requests in flight and says whether the gateway is draining.

    Lives on the gateway's loop, like everything it counts: no lock is needed, since
    ``enter``/``leave`` and ``wait_idle`` run there only.
    """

    def __init__(self) -> None:
        self.draining = False
        """True once ``begin`` was called: ``/readyz`` answers 503 from then on."""
        self.in_flight = 0
        """HTTP requests taken and not yet answered."""
        self._idle: asyncio.Event | None = None

    def begin(self) -> None:
        """Start draining; idempotent."""
        self.draining = True

    def enter(self) -> None:
        """A request was taken."""
        self.in_flight += 1

    def leave(self) -> None:
        """A request was answered (or failed)."""
        self.in_flight -= 1
        if self.in_flight == 0 and self._idle is not None:
            self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        """
        Wait until no request is in flight; blocks at most *timeout* seconds.

        Returns:
            True if every request in flight was answered in time.
        """
        if self.in_flight == 0:
            return True
        self._idle = asyncio.Event()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except asyncio.TimeoutError:
            return self.in_flight == 0
        finally:
            self._idle = None
        return True
