"""
Encoding finished spans as ``trace.span`` data; ``spans`` is the public face.

See docs/protocol.md#protocol-trace-span.

Runs in two places: ``estimate_span_size`` on the application thread (a microsecond or
two), ``encode_span`` through ``SpanData`` on the engine's worker. Both read the SDK's
attribute mappings through their C-level ``copy()`` rather than item by item, and the
resource's attributes, the same for every span of a provider, are copied once per
``Resource``. Needs the ``otel`` extra.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind, StatusCode, TraceState

from ..engine import MAX_EVENT_BYTES
from ._lazy import LazyData, json_value

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

_BASE_SIZE: Final = 512
_VALUE_SIZE: Final = 48
_EVENT_SIZE: Final = 96


_RESOURCE_CACHE_SIZE: Final = 64
# Resource -> its encoded attributes. A provider has one immutable Resource for all its
# spans, so this is built once instead of copying the same attributes for every span.
# Keyed by identity (the Resource is kept alive by its entry, so the id cannot be
# reused while it is cached); plain dict operations are atomic, so threads may race to
# fill an entry at worst.
_resources: dict[int, tuple[Resource, dict[str, object]]] = {}
_KIND_NAMES: Final = {kind: kind.name for kind in SpanKind}
_STATUS_NAMES: Final = {code: code.name for code in StatusCode}
_NO_TRACE: Final = "0" * 32
_NO_SPAN: Final = "0" * 16


def _attributes(attributes: Mapping[str, object] | None) -> dict[str, object]:
    # Values are shared, not copied: the span is ended and its attributes immutable.
    # BoundedAttributes (also behind the MappingProxyType of ReadableSpan.attributes)
    # copies its dict in C, where dict(mapping) would call __getitem__ per key.
    if not attributes:
        return {}
    try:
        # A MappingProxyType has copy() even when the mapping behind it has none.
        copied = attributes.copy()  # type: ignore[attr-defined]  # Mapping has none
    except Exception:  # any other mapping: the generic way below
        copied = None
    return copied if type(copied) is dict else dict(attributes)


def _resource(resource: Resource) -> dict[str, object]:
    cached = _resources.get(id(resource))
    if cached is None or cached[0] is not resource:
        if len(_resources) >= _RESOURCE_CACHE_SIZE:
            _resources.clear()
        cached = (resource, _attributes(resource.attributes))
        _resources[id(resource)] = cached
    return cached[1].copy()  # a copy: callers may change what they get


def _dropped_attributes(obj: object) -> int:
    dropped = getattr(obj, "dropped_attributes", 0)
    return dropped if isinstance(dropped, int) else 0


def _state_header(state: TraceState | None) -> str:
    return state.to_header() if state else ""


def _events(span: ReadableSpan) -> list[dict[str, object]]:
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
    return events


def _links(span: ReadableSpan) -> list[dict[str, object]]:
    links: list[dict[str, object]] = []
    for link in span.links:
        context = link.context
        encoded: dict[str, object] = {
            "traceId": format(context.trace_id, "032x"),
            "spanId": format(context.span_id, "016x"),
            "attributes": _attributes(link.attributes),
        }
        if context.trace_state:
            encoded["traceState"] = context.trace_state.to_header()
        if dropped := _dropped_attributes(link):
            encoded["droppedAttributes"] = dropped
        links.append(encoded)
    return links


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
    context, parent = span.context, span.parent
    start, end = span.start_time or 0, span.end_time or 0
    status = span.status
    scope = span.instrumentation_scope
    kind = span.kind
    code = status.status_code
    data: dict[str, object] = {
        "name": span.name,
        "kind": _KIND_NAMES.get(kind) or kind.name,
        "traceId": format(context.trace_id, "032x") if context else _NO_TRACE,
        "spanId": format(context.span_id, "016x") if context else _NO_SPAN,
        "parentSpanId": format(parent.span_id, "016x") if parent is not None else None,
        "traceState": _state_header(context.trace_state) if context else "",
        "startTimeUnixNano": start,
        "endTimeUnixNano": end,
        "durationMs": (end - start) / 1e6,
        "status": {
            "code": _STATUS_NAMES.get(code) or code.name,
            "description": status.description,
        },
        "attributes": _attributes(span.attributes),
        "events": _events(span) if span.events else [],
        "links": _links(span) if span.links else [],
        "resource": _resource(span.resource),
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


def _attributes_size(attributes: Mapping[str, object] | None) -> int:
    if not attributes:
        return 0
    size = 0
    # Over a plain copy (C-level, see _attributes): iterating the SDK's mapping
    # itself costs a Python __getitem__ call per value.
    for value in _attributes(attributes).values():
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

    Counts string lengths of the span's and its events' attributes (a recorded
    exception's stack trace is one) plus fixed overheads; links count as fixed size.
    Runs on the application thread: about a microsecond for a typical span.
    """
    size = _BASE_SIZE + len(span.name) + _attributes_size(span.attributes)
    events = span.events
    if events:
        for event in events:
            size += _EVENT_SIZE + _attributes_size(event.attributes)
    links = span.links
    return size + _EVENT_SIZE * len(links) if links else size


class SpanData(LazyData):
    """
    The ``data`` of a ``trace.span`` event, encoded from an ended span on first read.

    The engine's worker reads it; the span is ended, so nothing changes meanwhile.
    Read it like a dict; thread-safe (at worst two threads encode it once each).
    """

    __slots__ = ("_span", "size_hint")

    def __init__(self, span: ReadableSpan, size_hint: int) -> None:
        self._span = span
        self._data: dict[str, object] | None = None
        self.size_hint = size_hint
        """The estimated encoded size in bytes (``estimate_span_size``)."""

    @property
    def oversized(self) -> bool:
        """True if the estimate is over the body limit (the engine will truncate it)."""
        return self.size_hint > MAX_EVENT_BYTES

    def _build(self) -> dict[str, object]:
        return encode_span(self._span)

    def build_json(self, encode: Callable[[object], str]) -> str:
        """
        Return the JSON text of ``build()``'s dict, written straight from the span.

        The engine's per-span step: no intermediate dicts; ids, names, times and
        strings are written here, the attributes by *encode* (the engine's JSON
        encoder), which raises for what it cannot write (NaN, a circular value) so
        the caller can fall back. The same JSON content as ``encode(build())``.
        """
        data = self._data
        if data is not None:  # already built (and readable by anyone): write that
            return encode(data)
        return _span_json(self._span, encode)


# --- JSON straight from the span (SpanData.build_json) --------------------------------
# Mirrors encode_span key for key (a test holds the two to the same content).

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
    return encode(_attributes(attributes)) if attributes else "{}"


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


def _events_json(span: ReadableSpan, encode: Callable[[object], str]) -> str:
    parts = []
    for event in span.events:
        part = (
            f'{{"name":{json_value(event.name, encode)}'
            f',"timeUnixNano":{json_value(event.timestamp, encode)}'
            f',"attributes":{_attributes_json(event.attributes, encode)}'
        )
        if dropped := _dropped_attributes(event):
            part += f',"droppedAttributes":{json_value(dropped, encode)}'
        parts.append(part + "}")
    return "[" + ",".join(parts) + "]"


def _links_json(span: ReadableSpan, encode: Callable[[object], str]) -> str:
    parts = []
    for link in span.links:
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


def _span_json(span: ReadableSpan, encode: Callable[[object], str]) -> str:
    context, parent = span.context, span.parent
    start, end = span.start_time or 0, span.end_time or 0
    status = span.status
    kind = span.kind
    code = status.status_code
    code_name = _STATUS_NAMES.get(code) or code.name
    if context:
        ids = f',"traceId":"{context.trace_id:032x}","spanId":"{context.span_id:016x}"'
        state = context.trace_state
        state_json = json_value(state.to_header(), encode) if state else '""'
    else:
        ids, state_json = f',"traceId":"{_NO_TRACE}","spanId":"{_NO_SPAN}"', '""'
    parent_json = f'"{parent.span_id:016x}"' if parent is not None else "null"
    events, links = span.events, span.links
    text = (
        f'{{"name":{json_value(span.name, encode)}'
        f',"kind":{json_value(_KIND_NAMES.get(kind) or kind.name, encode)}'
        f'{ids},"parentSpanId":{parent_json},"traceState":{state_json}'
        f',"startTimeUnixNano":{json_value(start, encode)}'
        f',"endTimeUnixNano":{json_value(end, encode)}'
        f',"durationMs":{json_value((end - start) / 1e6, encode)}'
        f',"status":{{"code":{json_value(code_name, encode)}'
        f',"description":{json_value(status.description, encode)}}}'
        f',"attributes":{_attributes_json(span.attributes, encode)}'
        f',"events":{_events_json(span, encode) if events else "[]"}'
        f',"links":{_links_json(span, encode) if links else "[]"}'
        f"{_tail_json(span.resource, span.instrumentation_scope, encode)}"
    )
    counts = (span.dropped_attributes, span.dropped_events, span.dropped_links)
    if any(counts):
        dropped_attributes, dropped_events, dropped_links = counts
        text += (
            f',"dropped":{{"attributes":{json_value(dropped_attributes, encode)}'
            f',"events":{json_value(dropped_events, encode)}'
            f',"links":{json_value(dropped_links, encode)}}}'
        )
    return text + "}"


def snapshot_span(span: ReadableSpan) -> SpanData:
    """Return the lazily encoded data of an ended *span*, with its size estimate."""
    return SpanData(span, estimate_span_size(span))
