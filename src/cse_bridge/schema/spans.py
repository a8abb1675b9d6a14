"""
Finished OpenTelemetry spans as ``trace.span`` events (SPEC §2), and back.

``encode_span`` maps a ``ReadableSpan`` to the event's ``data``; ``decode_span``
rebuilds a ``ReadableSpan`` from it (same ids, parent, trace state, kind, times, status,
attributes, events, links, resource, scope and dropped counts), ready for any
``SpanExporter`` such as the OTLP one. ``snapshot_span`` is what producers submit: an
ended span does not change any more, so the mapping is built lazily on the engine's
worker and the application thread only pays for a size estimate.

Attribute values keep their JSON type: str, bool, int, float, None, and sequences and
mappings of them (sequences come back as tuples, as the SDK stores them). What JSON
cannot hold arrives as a string: bytes as their ``repr``, NaN and infinities as
``"nan"``/``"inf"``. A span over the gateway's body limit is truncated by the engine's
size rule (``cse_bridge.engine._encode``): long strings are cut first, and the data
then carries ``truncated: true``.

Needs the ``otel`` extra; ``import cse_bridge`` never imports this module.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Final, TypeVar

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)
from opentelemetry.util.types import AnyValue

from ..engine import MAX_EVENT_BYTES

__all__ = [
    "SPAN_EVENT_TYPE",
    "SpanData",
    "decode_attributes",
    "decode_span",
    "encode_span",
    "estimate_span_size",
    "snapshot_span",
]

SPAN_EVENT_TYPE: Final = "trace.span"
"""The event type of a finished span."""

_T = TypeVar("_T")
_BASE_SIZE: Final = 512
_VALUE_SIZE: Final = 48
_EVENT_SIZE: Final = 96


def _hex_trace(value: int) -> str:
    return format(value, "032x")


def _hex_span(value: int) -> str:
    return format(value, "016x")


def _attributes(attributes: Mapping[str, object] | None) -> dict[str, object]:
    # Values are shared, not copied: the span is ended and its attributes immutable.
    return dict(attributes) if attributes else {}


def _dropped_attributes(obj: object) -> int:
    dropped = getattr(obj, "dropped_attributes", 0)
    return dropped if isinstance(dropped, int) else 0


def encode_span(span: ReadableSpan) -> dict[str, object]:
    """
    Return the ``data`` of the ``trace.span`` event of an ended *span* (SPEC §2).

    Ids are lowercase hex, times integer nanoseconds, enums their names; ``dropped``
    appears only when a count is non-zero (so does an event's or link's
    ``droppedAttributes``, and a link's ``traceState``). Values are not made JSON-safe
    here (the engine does it). CPU only; safe from any thread.
    """
    context, parent = span.context, span.parent
    start, end = span.start_time or 0, span.end_time or 0
    status = span.status
    events: list[dict[str, object]] = []
    for event in span.events:
        encoded: dict[str, object] = {
            "name": event.name,
            "timeUnixNano": event.timestamp,
            "attributes": _attributes(event.attributes),
        }
        if dropped := _dropped_attributes(event):
            encoded["droppedAttributes"] = dropped
        events.append(encoded)
    links: list[dict[str, object]] = []
    for link in span.links:
        link_context = link.context
        encoded = {
            "traceId": _hex_trace(link_context.trace_id),
            "spanId": _hex_span(link_context.span_id),
            "attributes": _attributes(link.attributes),
        }
        if link_context.trace_state:
            encoded["traceState"] = link_context.trace_state.to_header()
        if dropped := _dropped_attributes(link):
            encoded["droppedAttributes"] = dropped
        links.append(encoded)
    scope = span.instrumentation_scope
    data: dict[str, object] = {
        "name": span.name,
        "kind": span.kind.name,
        "traceId": _hex_trace(context.trace_id) if context else "0" * 32,
        "spanId": _hex_span(context.span_id) if context else "0" * 16,
        "parentSpanId": _hex_span(parent.span_id) if parent is not None else None,
        "traceState": context.trace_state.to_header() if context else "",
        "startTimeUnixNano": start,
        "endTimeUnixNano": end,
        "durationMs": (end - start) / 1e6,
        "status": {
            "code": status.status_code.name,
            "description": status.description,
        },
        "attributes": _attributes(span.attributes),
        "events": events,
        "links": links,
        "resource": _attributes(span.resource.attributes),
        "scope": {
            "name": scope.name if scope is not None else "",
            "version": scope.version if scope is not None else None,
        },
    }
    counts = (span.dropped_attributes, span.dropped_events, span.dropped_links)
    if any(counts):
        names = ("attributes", "events", "links")
        data["dropped"] = dict(zip(names, counts, strict=True))
    return data


def _value_size(value: object) -> int:
    if isinstance(value, str):
        return len(value) + _VALUE_SIZE
    if isinstance(value, tuple):
        return _VALUE_SIZE + sum(_value_size(item) for item in value)
    return _VALUE_SIZE


def estimate_span_size(span: ReadableSpan) -> int:
    """
    Return a cheap guess of the encoded size of *span*'s event in bytes.

    Counts string lengths of the span's and its events' attributes (a recorded
    exception's stack trace is one) plus fixed overheads; links count as fixed size.
    A few hundred nanoseconds for a typical span.
    """
    size = _BASE_SIZE + len(span.name)
    for value in (span.attributes or {}).values():
        size += _value_size(value)
    for event in span.events:
        size += _EVENT_SIZE
        for value in (event.attributes or {}).values():
            size += _value_size(value)
    return size + _EVENT_SIZE * len(span.links)


class SpanData(Mapping[str, object]):
    """
    The ``data`` of a ``trace.span`` event, encoded from an ended span on first read.

    The engine's worker reads it; the span is ended, so nothing changes meanwhile.
    Read it like a dict; thread-safe (at worst two threads encode it once each).
    """

    __slots__ = ("_data", "_span", "size_hint")

    def __init__(self, span: ReadableSpan, size_hint: int) -> None:
        self._span = span
        self._data: dict[str, object] | None = None
        self.size_hint = size_hint
        """The estimated encoded size in bytes (``estimate_span_size``)."""

    @property
    def oversized(self) -> bool:
        """True if the estimate is over the body limit: the engine will truncate it."""
        return self.size_hint > MAX_EVENT_BYTES

    def build(self) -> dict[str, object]:
        """Return the event data as a plain dict (built once, then shared)."""
        data = self._data
        if data is None:
            data = self._data = encode_span(self._span)
        return data

    def __getitem__(self, key: str) -> object:
        return self.build()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.build())

    def __len__(self) -> int:
        return len(self.build())

    def __repr__(self) -> str:
        return f"SpanData({self.build()!r})"


def snapshot_span(span: ReadableSpan) -> SpanData:
    """Return the lazily encoded data of an ended *span*, with its size estimate."""
    return SpanData(span, estimate_span_size(span))


# --- decoding ---------------------------------------------------------------------


def _decode_value(value: object) -> AnyValue:
    if isinstance(value, list):
        return tuple(_decode_value(item) for item in value)
    if isinstance(value, Mapping):
        return {str(key): _decode_value(item) for key, item in value.items()}
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    return repr(value)


def decode_attributes(value: object) -> dict[str, AnyValue]:
    """
    Return OTel attributes from their JSON form: lists become tuples; never raises.

    Anything but a mapping gives ``{}``.
    """
    if not isinstance(value, Mapping):
        return {}
    return {str(key): _decode_value(item) for key, item in value.items()}


def _int(obj: object, key: str, default: int = 0) -> int:
    value = obj.get(key) if isinstance(obj, Mapping) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _str(obj: object, key: str) -> str | None:
    value = obj.get(key) if isinstance(obj, Mapping) else None
    return value if isinstance(value, str) else None


def _hex(obj: object, key: str) -> int:
    text = _str(obj, key)
    try:
        return int(text, 16) if text else 0
    except ValueError:
        return 0


def _trace_state(text: str | None) -> TraceState:
    return TraceState.from_header([text]) if text else TraceState()


def _context(obj: object, *, state_key: str = "traceState") -> SpanContext:
    return SpanContext(
        _hex(obj, "traceId"),
        _hex(obj, "spanId"),
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=_trace_state(_str(obj, state_key)),
    )


def _bounded(items: Sequence[_T], dropped: int) -> BoundedList[_T]:
    bounded = BoundedList.from_seq(None, items)
    bounded.dropped = dropped
    return bounded


def _attrs_with_dropped(value: object, dropped: int) -> Mapping[str, AnyValue]:
    attributes = BoundedAttributes(attributes=decode_attributes(value))
    attributes.dropped = dropped
    return attributes


def _list(obj: object, key: str) -> list[Mapping[str, object]]:
    value = obj.get(key) if isinstance(obj, Mapping) else None
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def _enum_name(names: Mapping[str, object], text: str | None, default: str) -> str:
    return text if text is not None and text in names else default


def decode_span(data: Mapping[str, object]) -> ReadableSpan:
    """
    Rebuild the ``ReadableSpan`` that a ``trace.span`` event's *data* describes.

    Ids, parent, trace state, kind, times, status, attributes (lists as tuples),
    events, links, resource, scope and dropped counts come back as they were encoded;
    the span is marked sampled and local, as SPEC §2 does not carry trace flags.
    Missing or mistyped fields get defaults; never raises.
    """
    parent_id = _str(data, "parentSpanId")
    context = _context(data)
    parent = None
    if parent_id is not None:
        parent = SpanContext(
            context.trace_id,
            _hex(data, "parentSpanId"),
            is_remote=False,
            trace_flags=context.trace_flags,
            trace_state=context.trace_state,
        )
    status = data.get("status")
    code = StatusCode[_enum_name(StatusCode.__members__, _str(status, "code"), "UNSET")]
    # The SDK only keeps (and warns about) a description on an ERROR status.
    description = _str(status, "description") if code is StatusCode.ERROR else None
    kind = _enum_name(SpanKind.__members__, _str(data, "kind"), "INTERNAL")
    dropped = data.get("dropped")
    events = [
        Event(
            _str(event, "name") or "",
            _attrs_with_dropped(
                event.get("attributes"), _int(event, "droppedAttributes")
            ),
            _int(event, "timeUnixNano"),
        )
        for event in _list(data, "events")
    ]
    links = [
        Link(
            _context(link),
            _attrs_with_dropped(
                link.get("attributes"), _int(link, "droppedAttributes")
            ),
        )
        for link in _list(data, "links")
    ]
    scope = data.get("scope")
    return ReadableSpan(
        name=_str(data, "name") or "",
        context=context,
        parent=parent,
        resource=Resource(decode_attributes(data.get("resource"))),
        attributes=_attrs_with_dropped(
            data.get("attributes"), _int(dropped, "attributes")
        ),
        events=_bounded(events, _int(dropped, "events")),
        links=_bounded(links, _int(dropped, "links")),
        kind=SpanKind[kind],
        status=Status(code, description),
        start_time=_int(data, "startTimeUnixNano"),
        end_time=_int(data, "endTimeUnixNano"),
        instrumentation_scope=InstrumentationScope(
            _str(scope, "name") or "", _str(scope, "version")
        ),
    )
