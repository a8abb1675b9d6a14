"""
Typed, immutable models of the events API and the standard event types.

See docs/protocol.md#protocol-sandbox-event and docs/protocol.md#protocol-event-types.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from .errors import EventsError

__all__ = ["EventType", "SandboxEvent", "StoreEventResult"]


def _field(obj: Mapping[str, Any], name: str, kind: type) -> Any:
    value = obj.get(name)
    # bool is an int subclass, but never a valid id, count or timestamp.
    if isinstance(value, bool) or not isinstance(value, kind):
        raise EventsError(
            f"Invalid response from server: {name!r} is missing or not {kind.__name__}"
        )
    return value


@dataclass(frozen=True, slots=True)
class SandboxEvent:
    """
    One stored event, as the gateway returns and pushes it.

    ``data`` is the event's JSON object; treat it as read-only.
    """

    id: str
    sandbox_id: str
    workspace_id: int
    type: str
    data: dict[str, Any] = field(hash=False)
    timestamp: int
    """Milliseconds since the epoch; unique and increasing per sandbox (our gateway)."""

    @classmethod
    def from_json(cls, obj: object) -> SandboxEvent:
        """
        Build an event from its wire form (camelCase keys).

        Raises:
            EventsError: The object does not have the SandboxEvent shape.
        """
        if not isinstance(obj, Mapping):
            raise EventsError("Invalid response from server: an event is not an object")
        return cls(
            id=_field(obj, "id", str),
            sandbox_id=_field(obj, "sandboxId", str),
            workspace_id=_field(obj, "workspaceId", int),
            type=_field(obj, "type", str),
            data=_field(obj, "data", dict),
            timestamp=_field(obj, "timestamp", int),
        )

    @classmethod
    def from_wire(cls, obj: object) -> SandboxEvent:
        """
        Build an event from a freshly parsed JSON object; ``from_json``, but faster.

        The same result and the same errors as ``from_json`` for any input: a ``dict``
        whose six fields have exactly the expected types (what ``json.loads`` makes of
        a valid event) is built without the per-field checks and keyword call;
        anything else goes through ``from_json``. For receive loops (the pub/sub
        client's socket thread).

        Raises:
            EventsError: The object does not have the SandboxEvent shape.
        """
        if type(obj) is dict:
            get = obj.get
            id_, sandbox, workspace = get("id"), get("sandboxId"), get("workspaceId")
            type_, data, timestamp = get("type"), get("data"), get("timestamp")
            if (
                type(id_) is str
                and type(sandbox) is str
                and type(workspace) is int
                and type(type_) is str
                and type(data) is dict
                and type(timestamp) is int
            ):
                event = _new_event(cls)
                _set_id(event, id_)
                _set_sandbox_id(event, sandbox)
                _set_workspace_id(event, workspace)
                _set_type(event, type_)
                _set_data(event, data)
                _set_timestamp(event, timestamp)
                return event
        return cls.from_json(obj)

    def to_json(self) -> dict[str, Any]:
        """Return the wire form (camelCase keys), ready for ``json.dumps``."""
        return {
            "id": self.id,
            "sandboxId": self.sandbox_id,
            "workspaceId": self.workspace_id,
            "type": self.type,
            "data": self.data,
            "timestamp": self.timestamp,
        }


# from_wire's setters: the slots' own descriptors, as the frozen dataclass's __init__
# would set them (through object.__setattr__), minus the keyword call per event.
_new_event = object.__new__
_slots = SandboxEvent.__dict__
_set_id = _slots["id"].__set__
_set_sandbox_id = _slots["sandbox_id"].__set__
_set_workspace_id = _slots["workspace_id"].__set__
_set_type = _slots["type"].__set__
_set_data = _slots["data"].__set__
_set_timestamp = _slots["timestamp"].__set__


@dataclass(frozen=True, slots=True)
class StoreEventResult:
    """What the gateway answers to a stored event."""

    event_id: str
    sandbox_id: str
    type: str
    timestamp: int

    @classmethod
    def from_json(cls, obj: object) -> StoreEventResult:
        """
        Build the result from the ``data`` of a ``POST /events`` answer.

        Raises:
            EventsError: The object does not have the expected shape.
        """
        if not isinstance(obj, Mapping):
            raise EventsError("Invalid response from server: result is not an object")
        return cls(
            event_id=_field(obj, "eventId", str),
            sandbox_id=_field(obj, "sandboxId", str),
            type=_field(obj, "type", str),
            timestamp=_field(obj, "timestamp", int),
        )


class EventType:
    """The standard event types of the official SDK, plus this bridge's own."""

    EXECUTION_STARTED: Final = "execution.started"
    EXECUTION_COMPLETED: Final = "execution.completed"
    EXECUTION_FAILED: Final = "execution.failed"
    EXECUTION_TIMEOUT: Final = "execution.timeout"
    FILE_CREATED: Final = "file.created"
    FILE_UPDATED: Final = "file.updated"
    FILE_DELETED: Final = "file.deleted"
    FILE_READ: Final = "file.read"
    TERMINAL_CREATED: Final = "terminal.created"
    TERMINAL_OUTPUT: Final = "terminal.output"
    TERMINAL_INPUT: Final = "terminal.input"
    TERMINAL_CLOSED: Final = "terminal.closed"
    PROCESS_STARTED: Final = "process.started"
    PROCESS_EXITED: Final = "process.exited"
    PROCESS_SIGNAL: Final = "process.signal"
    HTTP_REQUEST: Final = "http.request"
    HTTP_RESPONSE: Final = "http.response"
    SYSTEM_READY: Final = "system.ready"
    SYSTEM_SHUTDOWN: Final = "system.shutdown"
    SYSTEM_ERROR: Final = "system.error"
    CUSTOM: Final = "custom"
    # This bridge's types (docs/protocol.md#protocol-bridge-types).
    LOG_DEBUG: Final = "log.debug"
    LOG_INFO: Final = "log.info"
    LOG_WARNING: Final = "log.warning"
    LOG_ERROR: Final = "log.error"
    LOG_CRITICAL: Final = "log.critical"
    TRACE_SPAN: Final = "trace.span"
