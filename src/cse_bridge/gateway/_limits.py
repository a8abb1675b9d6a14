"""The gateway's protective limits, shared by its HTTP and pub/sub servers."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GatewayLimits"]


@dataclass(frozen=True, slots=True)
class GatewayLimits:
    """Bounds that keep one bad client from hurting the others."""

    max_body_bytes: int = 1024 * 1024
    """Largest ``POST /events`` body; a larger one answers 413."""
    max_data_bytes: int = 1024 * 1024 - 4096
    """Largest ``data`` once stored (UTF-8 JSON); a larger one answers 413. Below the
    body limit so that every pushed frame (the event's id, sandbox id, timestamp and
    RESP framing around ``data``) fits the 1 MiB that pub/sub subscribers accept."""
    max_type_length: int = 256
    """Longest event type."""
    max_command_bytes: int = 64 * 1024
    """Largest pub/sub command line or RESP frame a client may send."""
    subscriber_buffer_bytes: int = 8 * 1024 * 1024
    """Unsent output a subscriber may fall behind by before it is disconnected."""
