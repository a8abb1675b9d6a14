"""
The pub/sub client's protocol rules, without sockets, threads or an event loop.

What to send (``SUBSCRIBE``, ``PING``, ``UNSUBSCRIBE``), what the answers mean, how a
read's frames split into events, pongs and an ending error, when a (re)connect needs
a backfill, and how long a failing backfill waits. ``PubSubClient`` (threads) and
``cse_bridge.aio.AsyncPubSubClient`` (asyncio) both follow these functions, so the
two clients cannot drift apart (docs/protocol.md#protocol-pubsub-client).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Final

from ..errors import EventsError, EventsPubSubError
from ..models import SandboxEvent
from ._decode import decode_payload, decode_push
from ._resp import ErrorReply, Frame

__all__ = [
    "BACKFILL_RETRY_CAP",
    "PING",
    "SHUTTING_DOWN",
    "UNSUBSCRIBE",
    "FrameBatch",
    "backfill_retry_delay",
    "backfill_start",
    "first_reconnect_delay",
    "sort_frames",
    "subscribe_answer",
    "subscribe_command",
]

PING: Final = b"PING\r\n"
UNSUBSCRIBE: Final = b"UNSUBSCRIBE\r\n"
BACKFILL_RETRY_CAP: Final = 30.0
"""Longest wait, in seconds, between two attempts of a failing backfill."""
SHUTTING_DOWN: Final = "gateway is shutting down"
"""How a draining gateway's ``-ERR`` to its subscribers begins: the gateway is going
away on purpose and another one (behind the same balancer) is ready now."""
_MESSAGE: Final = b"message"
_PONG: Final = b"PONG"


def subscribe_command(sandbox_id: str, token: str) -> bytes:
    """
    Return the ``SUBSCRIBE <sandbox> <token>`` command.

    Inline, as the official client sends it, unless an argument could not survive
    the inline form; then RESP multibulk, which the gateway accepts too.
    """
    args = ("SUBSCRIBE", sandbox_id, token)
    if all(arg and not any(c.isspace() for c in arg) for arg in args):
        return (" ".join(args) + "\r\n").encode()
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        raw = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(parts)


def subscribe_answer(frame: object, where: str) -> ErrorReply | None:
    """
    Judge the server's first answer: None for ``+OK``, the ``-ERR`` as a value.

    Raises:
        EventsPubSubError: Any other answer (not a pub/sub server).
    """
    if isinstance(frame, ErrorReply):
        return frame
    if frame != b"OK":
        raise EventsPubSubError(f"pub/sub server {where} answered {frame!r}")
    return None


def first_reconnect_delay(ended_by: EventsError | None, delay: float) -> float:
    """
    The wait before the first reconnect after a connection ended by *ended_by*.

    0 when the gateway said it is shutting down (a drain): its peers behind the same
    balancer take the subscriber at once, and the backfill covers the gap. Otherwise
    *delay*, the backoff's first step.
    """
    if ended_by is None:
        return delay
    text = ended_by.message
    if text.startswith("ERR "):  # the error reply's full text: "ERR <message>"
        text = text[4:]
    return 0.0 if text.startswith(SHUTTING_DOWN) else delay


@dataclass(slots=True)
class FrameBatch:
    """What one read's frames hold, in the order they came."""

    events: list[SandboxEvent] = field(default_factory=list)
    """The events of the ``message`` pushes that decoded."""
    errors: list[EventsError] = field(default_factory=list)
    """One per push that did not decode; recoverable, the stream goes on."""
    pongs: int = 0
    """``PONG`` answers: each answers the oldest ``PING`` still waiting."""
    ended: EventsPubSubError | None = None
    """The ``-ERR`` that ends a live subscription; later frames are dropped."""


def sort_frames(frames: list[Frame]) -> FrameBatch:
    """Split one read's frames into events, decode errors, pongs and an ending error."""
    # The hot loop: most frames are message pushes of three bulk strings.
    batch = FrameBatch()
    append = batch.events.append
    for frame in frames:
        if type(frame) is list:
            if len(frame) == 3 and frame[0] == _MESSAGE:  # noqa: PLR2004 - kind, channel, data
                payload = frame[2]
                try:
                    append(
                        decode_payload(payload)
                        if type(payload) is bytes
                        else decode_push(frame)
                    )
                except EventsError as exc:
                    batch.errors.append(exc)
            continue
        if frame == _PONG:
            batch.pongs += 1
        elif isinstance(frame, ErrorReply):
            # The server ends a live subscription with -ERR (its broker lost the
            # source); it closes next, and the client reconnects and backfills.
            batch.ended = EventsPubSubError(frame.message)
            break
    return batch


def backfill_start(
    last_timestamp: int | None, *, resumed: bool, history_wanted: bool
) -> tuple[int, bool]:
    """
    Decide whether a subscription that just became active needs a backfill.

    A first connect needs one only for ``since``; a reconnect always does, from the
    newest event delivered. When nothing was seen yet, the cursor starts at this
    connect (the gateway's clock and ours are assumed to roughly agree).

    Args:
        last_timestamp: The sequencer's cursor (None: nothing seen, no ``since``).
        resumed: This is a reconnect, not the first connect.
        history_wanted: The client was built with ``since`` and has not backfilled.

    Returns:
        The cursor to keep (and to backfill from), and whether to backfill.
    """
    if last_timestamp is None:
        return int(time.time() * 1000), resumed
    return last_timestamp, resumed or history_wanted


def backfill_retry_delay(failures: int, base: float) -> float:
    """Seconds before retry *failures* (1-based) of a backfill: doubling, jittered."""
    delay = min(BACKFILL_RETRY_CAP, base * 2 ** min(failures - 1, 32))
    return float(delay * random.uniform(0.75, 1.0))  # noqa: S311
