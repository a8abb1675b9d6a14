"""
Finished OpenTelemetry spans as ``trace.span`` events, and back.

See docs/protocol.md#protocol-trace-span.

``encode_span`` maps a ``ReadableSpan`` to the event's ``data``; ``decode_span``
rebuilds a ``ReadableSpan`` from it (same ids, parent, trace state, kind, times, status,
attributes, events, links, resource, scope and dropped counts), ready for any
``SpanExporter`` such as the OTLP one; ``decode_spans`` does so for every span of a
``trace.span`` or a packed ``trace.batch`` event. ``snapshot_span`` is what producers
submit: the application thread copies what the data needs into a ``SpanSnapshot`` (so
the SDK's span is freed when it ends) and estimates its size; the mapping is built
lazily on the engine's worker. The encoding half lives in ``_span_encode`` (re-exported
here); this module adds the decoding.

Attribute values keep their JSON type: str, bool, int, float, None, and sequences and
mappings of them (sequences come back as tuples, as the SDK stores them). What JSON
cannot hold arrives as a string: bytes as their ``repr``, NaN and infinities as
``"nan"``/``"inf"``. A span over the gateway's body limit is truncated by the engine's
size rule (``cse_bridge.engine._encode``): long strings are cut first, and the data
then carries ``truncated: true``.

Needs the ``otel`` extra; ``import cse_bridge`` never imports this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

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

from ._span_encode import (
    SPAN_BATCH_TYPE,
    SPAN_EVENT_TYPE,
    SpanData,
    encode_span,
    estimate_span_size,
    snapshot_span,
)
from ._span_snapshot import SpanSnapshot

__all__ = [
    "SPAN_BATCH_TYPE",
    "SPAN_EVENT_TYPE",
    "SpanData",
    "SpanSnapshot",
    "decode_attributes",
    "decode_span",
    "decode_spans",
    "encode_span",
    "estimate_span_size",
    "snapshot_span",
]

_T = TypeVar("_T")


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
    the span is marked sampled and local, as the event carries no trace flags
    (docs/protocol.md#protocol-round-trip).
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


def decode_spans(event_type: str, data: Mapping[str, object]) -> list[ReadableSpan]:
    """
    Rebuild every span an event carries: one for ``trace.span``, each record of a
    packed ``trace.batch`` (docs/protocol.md#protocol-trace-batch), none otherwise.

    A malformed entry of a batch (not a ``trace.span`` record with a data object) is
    skipped; never raises.
    """
    if event_type == SPAN_EVENT_TYPE:
        return [decode_span(data)]
    if event_type != SPAN_BATCH_TYPE:
        return []
    entries = data.get("records")
    return [
        decode_span(entry["data"])
        for entry in (entries if isinstance(entries, list) else ())
        if isinstance(entry, Mapping)
        and entry.get("type") == SPAN_EVENT_TYPE
        and isinstance(entry.get("data"), Mapping)
    ]
