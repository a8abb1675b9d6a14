"""
From ``message`` pushes to ``SandboxEvent``: the socket thread's per-event work.

``decode_push`` does for one push what ``decode_payloads`` does for a read's worth of
payloads at a time, with the same results and the same errors: the JSON text goes
straight to the C scanner of the ``json`` module (``json.loads`` adds an encoding
guess, a ``str`` check and two regex matches per call) and the object to
``SandboxEvent.from_wire``. Whatever the fast path does not take (non-UTF-8 input,
surrounding whitespace, malformed JSON) goes through ``json.loads`` itself, so the
error messages are those of ``json``. Pure functions; safe from any thread.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

from ..errors import EventsPubSubError
from ..models import SandboxEvent
from ._resp import Frame

__all__ = ["decode_payload", "decode_push"]

# The C scanner behind json.loads: it clears its memo after every call and holds the
# GIL throughout, so one instance serves every socket thread.
_scan: Final[Callable[[str, int], tuple[Any, int]]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # not in typeshed
_build: Final = SandboxEvent.from_wire


def _loads(payload: bytes) -> Any:
    try:
        text = payload.decode()
        obj, end = _scan(text, 0)
    except (UnicodeDecodeError, StopIteration, ValueError):
        pass
    else:
        if end == len(text):
            return obj
    try:
        return json.loads(payload)
    except ValueError as exc:
        raise EventsPubSubError(f"pub/sub message is not JSON: {exc}") from None


def decode_payload(payload: bytes) -> SandboxEvent:
    """
    Return the event a ``message`` push carries as its *payload*.

    Raises:
        EventsError: The payload is not a SandboxEvent JSON object.
    """
    return _build(_loads(payload))


def decode_push(frame: list[Frame]) -> SandboxEvent:
    """
    Return the event of a ``message`` push.

    Raises:
        EventsError: The payload is not a SandboxEvent JSON object.
    """
    payload = frame[2]
    if not isinstance(payload, bytes):
        raise EventsPubSubError("Protocol error: message payload is not a bulk string")
    return decode_payload(payload)
