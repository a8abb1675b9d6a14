"""The gateway's protective limits, shared by its HTTP and pub/sub servers."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["GatewayLimits"]


@dataclass(frozen=True, slots=True)
class GatewayLimits:
    """
    Bounds that keep one bad client from hurting the others.

    The defaults follow nginx and Redis in spirit: no normal client meets them, and a
    client that holds connections open, never reads, or floods one sandbox is cut off
    without taking memory or file descriptors from the others.

    Raises:
        ValueError: A limit is not a positive number (``rate_limit`` may be None).
    """

    max_body_bytes: int = 1024 * 1024
    """Largest ``POST /events`` body; a larger one answers 413."""
    max_data_bytes: int = 1024 * 1024 - 4096
    """Largest ``data`` once stored (UTF-8 JSON); a larger one answers 413. Below the
    body limit so that every pushed frame (the event's id, sandbox id, timestamp and
    RESP framing around ``data``) fits the 1 MiB that pub/sub subscribers accept."""
    max_push_bytes: int = 1024 * 1024
    """Largest pub/sub push, the 1 MiB a subscriber accepts. An event whose push
    would be larger (a long non-ASCII sandbox id or type near the ``data`` limit)
    answers 413 instead of being stored."""
    max_type_length: int = 256
    """Longest event type."""
    max_command_bytes: int = 64 * 1024
    """Largest pub/sub command line or RESP frame a client may send."""
    subscriber_buffer_bytes: int = 8 * 1024 * 1024
    """Unsent output a subscriber may fall behind by before it is disconnected."""
    subscriber_buffers_total_bytes: int = 128 * 1024 * 1024
    """Unsent output of all stalled subscribers together. The subscriber whose
    output passes it is disconnected, so memory stays bounded however many never
    read."""
    max_subscriptions_per_token: int = 32
    """Subscriptions one access token may hold at once, over every connection."""
    idle_timeout: float = 60.0
    """Seconds a connection may wait for its first complete HTTP request head (and
    TLS handshake), between two keep-alive requests, or on pub/sub until it
    subscribes (again once it left every sandbox). Subscribed connections never
    time out, since a quiet sandbox is normal."""
    max_connections: int = 10_000
    """Open connections per port; the next one is refused (HTTP 503 with
    ``Retry-After``, pub/sub ``-ERR max number of clients reached``). Lowered at
    start when the file descriptor limit cannot hold both ports' worth."""
    rate_limit: float | None = None
    """Events per second each sandbox may store, as a token bucket, or None for no
    limit. Past it, ``POST /events`` answers 429 with ``Retry-After``."""
    rate_burst: int | None = None
    """Events a sandbox may store at once before ``rate_limit`` applies, or None for
    two seconds' worth (at least 1)."""

    def __post_init__(self) -> None:
        for name in (
            "max_body_bytes",
            "max_data_bytes",
            "max_push_bytes",
            "max_type_length",
            "max_command_bytes",
            "subscriber_buffer_bytes",
            "subscriber_buffers_total_bytes",
            "max_subscriptions_per_token",
            "max_connections",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer: {value!r}")
        for name in ("idle_timeout", "rate_limit"):
            value = getattr(self, name)
            if value is None and name == "rate_limit":
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not (math.isfinite(value) and value > 0)
            ):
                raise ValueError(f"{name} must be a positive number: {value!r}")
        burst = self.rate_burst
        if burst is not None and (
            isinstance(burst, bool) or not isinstance(burst, int) or burst < 1
        ):
            raise ValueError(f"rate_burst must be a positive integer: {burst!r}")

    @property
    def burst(self) -> int:
        """The token bucket's size, ``rate_burst`` or else two seconds of the rate."""
        if self.rate_burst is not None:
            return self.rate_burst
        return max(1, math.ceil(2 * (self.rate_limit or 0)))
