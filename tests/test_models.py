"""Models of the events API (cse_bridge.models)."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import pytest

from cse_bridge import EventsError, EventType, SandboxEvent, StoreEventResult

WIRE_EVENT: dict[str, Any] = {
    "id": "evt_1",
    "sandboxId": "sandbox-1",
    "workspaceId": 7,
    "type": "execution.completed",
    "data": {"exitCode": 0, "nested": {"a": [1, None]}},
    "timestamp": 1732780000123,
}
WIRE_RESULT: dict[str, Any] = {
    "eventId": "evt_1",
    "sandboxId": "sandbox-1",
    "type": "custom",
    "timestamp": 1732780000123,
}
# docs/protocol.md#protocol-event-types, in the order it lists them.
STANDARD_TYPES = [
    "execution.started",
    "execution.completed",
    "execution.failed",
    "execution.timeout",
    "file.created",
    "file.updated",
    "file.deleted",
    "file.read",
    "terminal.created",
    "terminal.output",
    "terminal.input",
    "terminal.closed",
    "process.started",
    "process.exited",
    "process.signal",
    "http.request",
    "http.response",
    "system.ready",
    "system.shutdown",
    "system.error",
    "custom",
]
BRIDGE_TYPES = [
    "log.debug",
    "log.info",
    "log.warning",
    "log.error",
    "log.critical",
    "trace.span",
]


def without(obj: dict[str, Any], key: str) -> dict[str, Any]:
    """A copy of *obj* without *key*."""
    return {k: v for k, v in obj.items() if k != key}


class TestSandboxEvent:
    """SandboxEvent: the wire form of docs/protocol.md#protocol-sandbox-event."""

    def test_from_json(self) -> None:
        """camelCase wire keys become snake_case fields."""
        expected = SandboxEvent(
            id="evt_1",
            sandbox_id="sandbox-1",
            workspace_id=7,
            type="execution.completed",
            data={"exitCode": 0, "nested": {"a": [1, None]}},
            timestamp=1732780000123,
        )
        assert expected == SandboxEvent.from_json(WIRE_EVENT)

    def test_round_trip(self) -> None:
        """to_json gives back exactly the wire object, JSON-encodable."""
        event = SandboxEvent.from_json(WIRE_EVENT)
        expected = WIRE_EVENT
        assert expected == json.loads(json.dumps(event.to_json()))

    @pytest.mark.parametrize("key", list(WIRE_EVENT))
    def test_missing_field(self, key: str) -> None:
        """Every field is required."""
        with pytest.raises(EventsError, match=key):
            SandboxEvent.from_json(without(WIRE_EVENT, key))

    @pytest.mark.parametrize(
        ("key", "value"),
        [
            ("id", 1),
            ("sandboxId", None),
            ("workspaceId", "7"),
            ("workspaceId", True),
            ("workspaceId", 7.0),
            ("type", ["custom"]),
            ("data", []),
            ("data", "text"),
            ("timestamp", 1.5),
            ("timestamp", False),
        ],
    )
    def test_wrong_field_type(self, key: str, value: object) -> None:
        """A field of the wrong JSON type is an invalid response."""
        with pytest.raises(EventsError, match="Invalid response from server"):
            SandboxEvent.from_json({**WIRE_EVENT, key: value})

    @pytest.mark.parametrize("obj", [None, [], "event", 5])
    def test_not_an_object(self, obj: object) -> None:
        """Anything but a JSON object is an invalid response."""
        with pytest.raises(EventsError, match="Invalid response from server"):
            SandboxEvent.from_json(obj)

    def test_frozen(self) -> None:
        """Fields cannot be reassigned."""
        event = SandboxEvent.from_json(WIRE_EVENT)
        with pytest.raises(dataclasses.FrozenInstanceError):
            event.type = "other"  # type: ignore[misc]

    def test_slotted(self) -> None:
        """Instances have no __dict__ (slots keep thousands of events small)."""
        assert not hasattr(SandboxEvent.from_json(WIRE_EVENT), "__dict__")

    def test_hash_ignores_data(self) -> None:
        """Events hash by their scalar fields, so the dict in data is no obstacle."""
        a = SandboxEvent.from_json(WIRE_EVENT)
        b = SandboxEvent.from_json(WIRE_EVENT)
        expected = 1
        assert expected == len({a, b})


class TestStoreEventResult:
    """StoreEventResult parses the data of a POST /events answer."""

    def test_from_json(self) -> None:
        """camelCase wire keys become snake_case fields."""
        expected = StoreEventResult("evt_1", "sandbox-1", "custom", 1732780000123)
        assert expected == StoreEventResult.from_json(WIRE_RESULT)

    @pytest.mark.parametrize("key", list(WIRE_RESULT))
    def test_missing_field(self, key: str) -> None:
        """Every field is required."""
        with pytest.raises(EventsError, match=key):
            StoreEventResult.from_json(without(WIRE_RESULT, key))

    @pytest.mark.parametrize("obj", [None, [WIRE_RESULT], "ok"])
    def test_not_an_object(self, obj: object) -> None:
        """Anything but a JSON object is an invalid response."""
        with pytest.raises(EventsError, match="Invalid response from server"):
            StoreEventResult.from_json(obj)

    def test_frozen_and_slotted(self) -> None:
        """Results are immutable and slotted."""
        result = StoreEventResult.from_json(WIRE_RESULT)
        with pytest.raises(dataclasses.FrozenInstanceError):
            result.timestamp = 0  # type: ignore[misc]
        assert not hasattr(result, "__dict__")


def _constants() -> dict[str, str]:
    return {k: v for k, v in vars(EventType).items() if re.fullmatch(r"[A-Z_]+", k)}


class TestEventType:
    """The standard type constants."""

    def test_standard_and_bridge_types(self) -> None:
        """EventType names exactly the standard types plus the bridge's own."""
        expected = sorted(STANDARD_TYPES + BRIDGE_TYPES)
        assert expected == sorted(_constants().values())

    def test_names_match_values(self) -> None:
        """Each constant's name is its value in upper case with underscores."""
        expected = {v.upper().replace(".", "_"): v for v in _constants().values()}
        assert expected == _constants()
