"""
The application-thread snapshot of an ended span.

See docs/protocol.md#protocol-trace-span.

``SpanSnapshot.of`` copies what the ``trace.span`` data needs out of the SDK's
``ReadableSpan`` (about three microseconds in a warm loop; with the size estimate, about
six in a burst of spans, ``bench/otel_floor.py``), so that the span itself is freed when
it ends instead of waiting in the engine's queue. A queued ``ReadableSpan`` holds a
dozen objects the garbage collector scans again and again while a burst queues up (its
attribute and event containers, their locks, its context and status); a snapshot is one
tuple and a plain copy of the attributes, plus the SDK's own ``Event`` and ``Link``
objects when the span has any (they are immutable). The worker reads it without the
SDK's property calls and locks. ``_span_encode`` writes the data from it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final, NamedTuple

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanKind, StatusCode, TraceState

__all__ = ["SpanSnapshot", "copy_attributes"]

_NO_DROPS: Final = (0, 0, 0)
"""One shared tuple for the spans that dropped nothing (nearly all)."""


def copy_attributes(attributes: Mapping[str, object] | None) -> dict[str, object]:
    """
    Return a plain dict of *attributes*; the values are shared, not copied.

    The span is ended and its attributes immutable. ``BoundedAttributes`` (also behind
    the ``MappingProxyType`` of ``ReadableSpan.attributes``) copies its dict in C,
    where ``dict(mapping)`` would call ``__getitem__`` per key.
    """
    if not attributes:
        return {}
    try:
        # A MappingProxyType has copy() even when the mapping behind it has none.
        copied = attributes.copy()  # type: ignore[attr-defined]  # Mapping has none
    except Exception:  # any other mapping: the generic way below
        copied = None
    return copied if type(copied) is dict else dict(attributes)


class SpanSnapshot(NamedTuple):
    """What the ``trace.span`` data of an ended span is written from."""

    name: str
    trace_id: int
    """0 for a span without a context (the data then carries zero ids)."""
    span_id: int
    trace_state: TraceState | None
    """None for a span without a context; the encoders write an empty one as ``""``."""
    parent_span_id: int | None
    start_time: int
    end_time: int
    kind: SpanKind
    status_code: StatusCode
    status_description: str | None
    attributes: dict[str, object]
    """A plain copy (``copy_attributes``)."""
    events: Sequence[Event]
    links: Sequence[Link]
    resource: Resource
    scope: InstrumentationScope | None
    dropped: tuple[int, int, int]
    """Attributes, events and links the SDK dropped at its limits."""

    @classmethod
    def of(cls, span: ReadableSpan) -> SpanSnapshot:
        """Copy what the data needs out of an ended *span*; safe from any thread."""
        context, parent, status = span.context, span.parent, span.status
        dropped = (span.dropped_attributes, span.dropped_events, span.dropped_links)
        # tuple.__new__ straight: the generated __new__ is one more Python call that
        # binds sixteen arguments.
        return tuple.__new__(
            cls,
            (
                span.name,
                context.trace_id if context is not None else 0,
                context.span_id if context is not None else 0,
                context.trace_state if context is not None else None,
                parent.span_id if parent is not None else None,
                span.start_time or 0,
                span.end_time or 0,
                span.kind,
                status.status_code,
                status.description,
                copy_attributes(span.attributes),
                span.events,
                span.links,
                span.resource,
                span.instrumentation_scope,
                dropped if any(dropped) else _NO_DROPS,
            ),
        )
