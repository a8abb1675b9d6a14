"""
Encoding finished spans as ``trace.span`` data; ``spans`` is the public face.

See docs/protocol.md#protocol-trace-span.

Runs in two places: ``snapshot_span`` on the application thread (a ``SpanSnapshot``
and its size estimate, two or three microseconds), the encoding through ``SpanData`` on
the engine's worker, from the snapshot. The SDK's attribute mappings are read through
their C-level ``copy()`` rather than item by item, and the resource's attributes, the
same for every span of a provider, are copied once per ``Resource``. Needs the ``otel``
extra.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanKind, StatusCode

from ..engine import MAX_EVENT_BYTES
from ._lazy import LazyData, json_value
from ._span_snapshot import SpanSnapshot, copy_attributes

__all__ = [
    "SPAN_BATCH_TYPE",
    "SPAN_EVENT_TYPE",
    "SpanData",
    "encode_span",
    "estimate_span_size",
    "snapshot_span",
]

SPAN_EVENT_TYPE: Final = "trace.span"
"""The event type of a finished span."""
SPAN_BATCH_TYPE: Final = "trace.batch"
"""Several ``trace.span`` records in one event (the engine's ``pack_spans``)."""

# The encoded-size estimate (SpanData.size_hint): JSON bytes beyond the strings' own.
_BASE_SIZE: Final = 512
_VALUE_SIZE: Final = 48
_EVENT_SIZE: Final = 96
# Memory a queued span holds beyond size_hint (SpanData.queued_bytes), measured with
# tracemalloc on CPython 3.10 to 3.13 (TestQueuedSpanSize in tests/integrations).
_SNAPSHOT_MEMORY: Final = 256
"""
The ``EventItem``, ``SpanData`` and ``SpanSnapshot``, the attributes' copy and the ids'
and times' ints come to 560-600 bytes for a plain span: 512 of them are in size_hint.
"""
_EVENT_MEMORY: Final = 640
"""An SDK ``Event`` the snapshot keeps: its attributes' mapping, dict and lock."""
_LINK_MEMORY: Final = 640
"""An SDK ``Link`` the snapshot keeps: its context and attributes."""


_RESOURCE_CACHE_SIZE: Final = 64
# Resource -> its encoded attributes. A provider has one immutable Resource for all its
# spans, so this is built once instead of copying the same attributes for every span.
# Keyed by identity (the Resource is kept alive by its entry, so the id cannot be
# reused while it is cached); plain dict operations are atomic, so threads may race to
# fill an entry at worst.
_resources: dict[int, tuple[Resource, dict[str, object]]] = {}
_KIND_NAMES: Final = {kind: kind.name for kind in SpanKind}
_STATUS_NAMES: Final = {code: code.name for code in StatusCode}


def _resource(resource: Resource) -> dict[str, object]:
    cached = _resources.get(id(resource))
    if cached is None or cached[0] is not resource:
        if len(_resources) >= _RESOURCE_CACHE_SIZE:
            _resources.clear()
        cached = (resource, copy_attributes(resource.attributes))
        _resources[id(resource)] = cached
    return cached[1].copy()  # a copy: callers may change what they get


def _dropped_attributes(obj: object) -> int:
    dropped = getattr(obj, "dropped_attributes", 0)
    return dropped if isinstance(dropped, int) else 0


def _events(events: Sequence[Event]) -> list[dict[str, object]]:
    encoded_events: list[dict[str, object]] = []
    for event in events:
        encoded: dict[str, object] = {
            "name": event.name,
            "timeUnixNano": event.timestamp,
            "attributes": copy_attributes(event.attributes),
        }
        if dropped := _dropped_attributes(event):
            encoded["droppedAttributes"] = dropped
        encoded_events.append(encoded)
    return encoded_events


def _links(links: Sequence[Link]) -> list[dict[str, object]]:
    encoded_links: list[dict[str, object]] = []
    for link in links:
        context = link.context
        encoded: dict[str, object] = {
            "traceId": format(context.trace_id, "032x"),
            "spanId": format(context.span_id, "016x"),
            "attributes": copy_attributes(link.attributes),
        }
        if context.trace_state:
            encoded["traceState"] = context.trace_state.to_header()
        if dropped := _dropped_attributes(link):
            encoded["droppedAttributes"] = dropped
        encoded_links.append(encoded)
    return encoded_links


def encode_span(span: ReadableSpan) -> dict[str, object]:
    """
    Return the ``data`` of the ``trace.span`` event of an ended *span*.

    See docs/protocol.md#protocol-trace-span.

    Ids are lowercase hex, times integer nanoseconds, enums their names; ``dropped``
    appears only when a count is non-zero (so does an event's or link's
    ``droppedAttributes``, and a link's ``traceState``). Values are not made JSON-safe
    here (the engine's JSON encoder writes str, bool, int, float, None and tuples of
    them as they are and only falls back to ``repr`` for the rest). One pass over the
    span, a few microseconds; CPU only; safe from any thread.
    """
    return _encode(SpanSnapshot.of(span))


def _encode(snapshot: SpanSnapshot) -> dict[str, object]:
    start, end, scope = snapshot.start_time, snapshot.end_time, snapshot.scope
    kind, code, parent = snapshot.kind, snapshot.status_code, snapshot.parent_span_id
    data: dict[str, object] = {
        "name": snapshot.name,
        "kind": _KIND_NAMES.get(kind) or kind.name,
        "traceId": format(snapshot.trace_id, "032x"),
        "spanId": format(snapshot.span_id, "016x"),
        "parentSpanId": format(parent, "016x") if parent is not None else None,
        "traceState": snapshot.trace_state.to_header() if snapshot.trace_state else "",
        "startTimeUnixNano": start,
        "endTimeUnixNano": end,
        "durationMs": (end - start) / 1e6,
        "status": {
            "code": _STATUS_NAMES.get(code) or code.name,
            "description": snapshot.status_description,
        },
        "attributes": snapshot.attributes.copy(),
        "events": _events(snapshot.events) if snapshot.events else [],
        "links": _links(snapshot.links) if snapshot.links else [],
        "resource": _resource(snapshot.resource),
        "scope": {
            "name": scope.name if scope is not None else "",
            "version": scope.version if scope is not None else None,
        },
    }
    if any(snapshot.dropped):
        data["dropped"] = dict(
            zip(("attributes", "events", "links"), snapshot.dropped, strict=True)
        )
    return data


def _value_size(value: object) -> int:
    if isinstance(value, str):
        return len(value) + _VALUE_SIZE
    if isinstance(value, tuple):
        return _VALUE_SIZE + sum(_value_size(item) for item in value)
    return _VALUE_SIZE


def _attributes_size(attributes: Mapping[str, object] | None) -> int:
    # Over a plain copy (C-level, see copy_attributes): iterating the SDK's mapping
    # itself costs a Python __getitem__ call per value.
    return _values_size(copy_attributes(attributes).values()) if attributes else 0


def _values_size(values: Iterable[object]) -> int:
    size = 0
    for value in values:
        if type(value) is str:
            size += len(value) + _VALUE_SIZE
        elif type(value) is tuple:
            size += _value_size(value)
        else:
            size += _VALUE_SIZE
    return size


def estimate_span_size(span: ReadableSpan) -> int:
    """
    Return a cheap guess of the encoded size of *span*'s event in bytes.

    Counts string lengths of the attributes of the span, its events (a recorded
    exception's stack trace is one) and its links, plus fixed overheads.
    """
    return _estimate(SpanSnapshot.of(span))


def _estimate(snapshot: SpanSnapshot) -> int:
    # The snapshot's attributes are a plain dict already.
    size = _BASE_SIZE + len(snapshot.name) + _values_size(snapshot.attributes.values())
    for event in snapshot.events:
        size += _EVENT_SIZE + _attributes_size(event.attributes)
    for link in snapshot.links:
        size += _EVENT_SIZE + _attributes_size(link.attributes)
    return size


class SpanData(LazyData):
    """
    The ``data`` of a ``trace.span`` event, encoded from a snapshot on first read.

    The engine's worker reads it; the snapshot does not change. Read it like a dict;
    thread-safe (at worst two threads encode it once each). Unlike a log record's
    data, whose ``size_hint`` is the memory it holds, a span's has two sizes: the
    encoded size decides truncation, and ``queued_bytes`` adds the SDK events and
    links the snapshot keeps, which are much larger in memory than in JSON.
    """

    __slots__ = ("_snapshot", "queued_bytes", "size_hint")

    def __init__(self, snapshot: SpanSnapshot, size_hint: int) -> None:
        self._snapshot = snapshot
        self._data: dict[str, object] | None = None
        self.size_hint = size_hint
        """The estimated encoded size in bytes (``estimate_span_size``)."""
        self.queued_bytes = (
            size_hint
            + _SNAPSHOT_MEMORY
            + _EVENT_MEMORY * len(snapshot.events)
            + _LINK_MEMORY * len(snapshot.links)
        )
        """
        What it counts against the engine's queue byte bound, which is its memory.

        The strings count by ``size_hint``, whose fixed part also covers the tuple,
        the dict and the ints of a plain snapshot.
        """

    @property
    def oversized(self) -> bool:
        """True if the estimate is over the body limit (the engine will truncate it)."""
        return self.size_hint > MAX_EVENT_BYTES

    def _build(self) -> dict[str, object]:
        return _encode(self._snapshot)

    def build_json(self, encode: Callable[[object], str]) -> str:
        """
        Return the JSON text of ``build()``'s dict, written straight from the snapshot.

        The engine's per-span step: no intermediate dicts; ids, names, times and
        strings are written here, the attributes by *encode* (the engine's JSON
        encoder), which raises for what it cannot write (NaN, a circular value) so
        the caller can fall back. The same JSON content as ``encode(build())``.
        """
        data = self._data
        if data is not None:  # already built (and readable by anyone): write that
            return encode(data)
        return _span_json(self._snapshot, encode)


# --- JSON straight from the snapshot (SpanData.build_json) ----------------------------
# Mirrors _encode key for key (a test holds the two to the same content).

# (Resource, scope) -> the span's JSON tail ',"resource":{...},"scope":{...}': the same
# for every span of a tracer. Keyed and guarded like _resources; keeps the encoder
# that wrote it, so another encoder never gets a tail it did not write.
_tails: dict[
    tuple[int, int],
    tuple[Resource, InstrumentationScope | None, Callable[[object], str], str],
] = {}


def _attributes_json(
    attributes: Mapping[str, object] | None, encode: Callable[[object], str]
) -> str:
    return encode(copy_attributes(attributes)) if attributes else "{}"


def _tail_json(
    resource: Resource,
    scope: InstrumentationScope | None,
    encode: Callable[[object], str],
) -> str:
    key = (id(resource), id(scope))
    cached = _tails.get(key)
    if (
        cached is not None
        and cached[0] is resource
        and cached[1] is scope
        and cached[2] is encode
    ):
        return cached[3]
    # Raises as encode does (e.g. a NaN resource attribute): nothing is cached then.
    name, version = ("", None) if scope is None else (scope.name, scope.version)
    text = (
        f',"resource":{encode(_resource(resource))}'
        f',"scope":{{"name":{json_value(name, encode)}'
        f',"version":{json_value(version, encode)}}}'
    )
    if len(_tails) >= _RESOURCE_CACHE_SIZE:
        _tails.clear()
    _tails[key] = (resource, scope, encode, text)
    return text


def _events_json(events: Sequence[Event], encode: Callable[[object], str]) -> str:
    parts = []
    for event in events:
        part = (
            f'{{"name":{json_value(event.name, encode)}'
            f',"timeUnixNano":{json_value(event.timestamp, encode)}'
            f',"attributes":{_attributes_json(event.attributes, encode)}'
        )
        if dropped := _dropped_attributes(event):
            part += f',"droppedAttributes":{json_value(dropped, encode)}'
        parts.append(part + "}")
    return "[" + ",".join(parts) + "]"


def _links_json(links: Sequence[Link], encode: Callable[[object], str]) -> str:
    parts = []
    for link in links:
        context = link.context
        part = (
            f'{{"traceId":"{context.trace_id:032x}"'
            f',"spanId":"{context.span_id:016x}"'
            f',"attributes":{_attributes_json(link.attributes, encode)}'
        )
        if context.trace_state:
            part += ',"traceState":' + json_value(
                context.trace_state.to_header(), encode
            )
        if dropped := _dropped_attributes(link):
            part += f',"droppedAttributes":{json_value(dropped, encode)}'
        parts.append(part + "}")
    return "[" + ",".join(parts) + "]"


def _span_json(snapshot: SpanSnapshot, encode: Callable[[object], str]) -> str:
    start, end = snapshot.start_time, snapshot.end_time
    kind, code = snapshot.kind, snapshot.status_code
    state, parent, events, links = (
        snapshot.trace_state,
        snapshot.parent_span_id,
        snapshot.events,
        snapshot.links,
    )
    attributes = snapshot.attributes
    parent_json = f'"{parent:016x}"' if parent is not None else "null"
    state_json = json_value(state.to_header(), encode) if state else '""'
    text = (
        f'{{"name":{json_value(snapshot.name, encode)}'
        f',"kind":{json_value(_KIND_NAMES.get(kind) or kind.name, encode)}'
        f',"traceId":"{snapshot.trace_id:032x}","spanId":"{snapshot.span_id:016x}"'
        f',"parentSpanId":{parent_json},"traceState":{state_json}'
        f',"startTimeUnixNano":{json_value(start, encode)}'
        f',"endTimeUnixNano":{json_value(end, encode)}'
        f',"durationMs":{json_value((end - start) / 1e6, encode)}'
        f',"status":{{"code":{json_value(_STATUS_NAMES.get(code) or code.name, encode)}'
        f',"description":{json_value(snapshot.status_description, encode)}}}'
        f',"attributes":{encode(attributes) if attributes else "{}"}'
        f',"events":{_events_json(events, encode) if events else "[]"}'
        f',"links":{_links_json(links, encode) if links else "[]"}'
        f"{_tail_json(snapshot.resource, snapshot.scope, encode)}"
    )
    if any(snapshot.dropped):
        dropped_attributes, dropped_events, dropped_links = snapshot.dropped
        text += (
            f',"dropped":{{"attributes":{json_value(dropped_attributes, encode)}'
            f',"events":{json_value(dropped_events, encode)}'
            f',"links":{json_value(dropped_links, encode)}}}'
        )
    return text + "}"


def snapshot_span(span: ReadableSpan) -> SpanData:
    """
    Return the lazily encoded data of an ended *span*, with its size estimate.

    Holds a ``SpanSnapshot``, not the span: the SDK's span is freed when it ends.
    """
    snapshot = SpanSnapshot.of(span)
    return SpanData(snapshot, _estimate(snapshot))
