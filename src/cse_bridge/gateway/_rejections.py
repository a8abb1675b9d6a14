"""Counts of what the gateway refused, by port and cause, for operators and metrics."""

from __future__ import annotations

from collections import Counter
from typing import Final, Literal, TypeAlias, get_args

__all__ = ["Cause", "Port", "Rejections"]

Port: TypeAlias = Literal["http", "pubsub"]
"""Which of the gateway's two ports refused."""
Cause: TypeAlias = Literal[
    "auth",
    "invalid",
    "size",
    "rate_limit",
    "connection_cap",
    "timeout",
    "subscription_cap",
    "slow_subscriber",
]
"""Why it refused: a bad credential (401 or ``-ERR``), a malformed request (400,
``-ERR Protocol error``), a body, frame or push too large (413), the per-sandbox
event rate (429), the per-port connection cap (503 or ``-ERR max number of clients
reached``), a connection idle past its deadline, the per-token subscription cap,
and a subscriber disconnected because its unsent output passed a limit."""

CAUSES: Final[tuple[Cause, ...]] = get_args(Cause)
"""Every cause, in the order above (metrics start a series at 0 for each)."""


class Rejections:
    """
    Monotonic counters of refused requests and connections.

    Runs on the gateway's loop (no lock: increments happen there only); reading a
    count from another thread sees a recent value, which is all a metric needs.
    """

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: Counter[tuple[Port, Cause]] = Counter()

    def add(self, port: Port, cause: Cause) -> None:
        """Count one refusal."""
        self._counts[port, cause] += 1

    def count(self, cause: Cause, port: Port | None = None) -> int:
        """Refusals for *cause*, on *port* or on both."""
        if port is not None:
            return self._counts[port, cause]
        return self._counts["http", cause] + self._counts["pubsub", cause]

    def snapshot(self) -> dict[tuple[Port, Cause], int]:
        """Every non-zero count, keyed by ``(port, cause)``."""
        return dict(self._counts)
