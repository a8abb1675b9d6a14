"""The socket thread's fast decoding: same events and same errors as the slow way."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cse_bridge.errors import EventsError
from cse_bridge.models import SandboxEvent
from cse_bridge.subscriber._decode import decode_payload, decode_push

GOOD: dict[str, Any] = {
    "id": "evt_1",
    "sandboxId": "sb",
    "workspaceId": 1,
    "type": "log.info",
    "data": {"message": "héllo", "n": [1, 2.5, None, True]},
    "timestamp": 1_732_780_000_000,
}
BAD_OBJECTS: list[object] = [
    [],
    "text",
    7,
    None,
    {k: v for k, v in GOOD.items() if k != "id"},
    {**GOOD, "workspaceId": True},
    {**GOOD, "workspaceId": "1"},
    {**GOOD, "timestamp": 1.5},
    {**GOOD, "data": []},
    {**GOOD, "type": None},
    {**GOOD, "sandboxId": 3},
]
BAD_TEXT: list[bytes] = [b"", b"{", b"{} x", b"nul", b"\xff\xfe", b"[1,", b"NaNa"]


def slow(payload: bytes) -> SandboxEvent:
    """The reference: ``json.loads`` then ``SandboxEvent.from_json``."""
    return SandboxEvent.from_json(json.loads(payload))


def outcome(func: Any, arg: object) -> object:
    """The result of ``func(arg)``, or the type and text of the error it raised."""
    try:
        return func(arg)
    except Exception as exc:  # the comparison is the point
        return (type(exc), str(exc))


class TestFromWire:
    """``SandboxEvent.from_wire`` against ``from_json``."""

    def test_same_event(self) -> None:
        """A valid object gives an event equal to ``from_json``'s, hash included."""
        fast, reference = SandboxEvent.from_wire(GOOD), SandboxEvent.from_json(GOOD)
        assert (reference, hash(reference)) == (fast, hash(fast))

    @pytest.mark.parametrize("obj", BAD_OBJECTS)
    def test_same_errors(self, obj: object) -> None:
        """Every bad shape raises the very error ``from_json`` raises."""
        assert outcome(SandboxEvent.from_json, obj) == outcome(
            SandboxEvent.from_wire, obj
        )
        with pytest.raises(EventsError):
            SandboxEvent.from_wire(obj)

    def test_frozen(self) -> None:
        """The event built on the fast path is as immutable as any other."""
        event = SandboxEvent.from_wire(GOOD)
        with pytest.raises(AttributeError):
            event.id = "other"  # type: ignore[misc]


class TestDecodePayload:
    """``decode_payload`` against ``json.loads`` + ``from_json``."""

    @pytest.mark.parametrize(
        "payload",
        [
            json.dumps(GOOD).encode(),
            json.dumps(GOOD, ensure_ascii=False).encode(),
            b"  " + json.dumps(GOOD).encode() + b"\n",
            b"\xef\xbb\xbf" + json.dumps(GOOD).encode(),
            json.dumps(GOOD).encode("utf-16"),
        ],
    )
    def test_same_event(self, payload: bytes) -> None:
        """Whitespace, a BOM or another UTF encoding give the same event."""
        assert slow(payload) == decode_payload(payload)

    @pytest.mark.parametrize(
        "payload", [json.dumps(obj).encode() for obj in BAD_OBJECTS] + BAD_TEXT
    )
    def test_bad_payloads_raise(self, payload: bytes) -> None:
        """What the slow way refuses, the fast way refuses with an EventsError."""
        with pytest.raises(Exception):  # noqa: B017, PT011 - the slow way's own errors
            slow(payload)
        with pytest.raises(EventsError):
            decode_payload(payload)

    def test_json_errors_keep_their_text(self) -> None:
        """Malformed JSON is reported with ``json``'s own message."""
        with pytest.raises(ValueError, match=r".*") as expected:
            json.loads(b"{")
        with pytest.raises(EventsError) as actual:
            decode_payload(b"{")
        assert f"pub/sub message is not JSON: {expected.value}" == str(actual.value)

    def test_push_payload_not_bytes(self) -> None:
        """A push whose payload is not a bulk string is a protocol error."""
        with pytest.raises(EventsError, match="not a bulk string"):
            decode_push([b"message", b"sb", 7])
