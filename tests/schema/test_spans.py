"""
The span codec: ReadableSpan -> trace.span data -> JSON -> ReadableSpan.

See docs/protocol.md#protocol-trace-span.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable, Iterator, Mapping

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import Link, SpanContext, SpanKind, TraceFlags, TraceState

from cse_bridge.engine import MAX_EVENT_BYTES, EventItem, encode_item
from cse_bridge.schema._span_encode import estimate_span_size
from cse_bridge.schema.spans import (
    SpanData,
    decode_attributes,
    decode_span,
    encode_span,
    snapshot_span,
)

ALL_TYPES = {
    "str": "value",
    "empty": "",
    "bool": True,
    "int": -(2**62),
    "float": 1.5,
    "whole_float": 2.0,
    "strs": ("a", "b"),
    "bools": (True, False),
    "ints": (1, 2, 3),
    "floats": (0.5, 3.0),
    "unicode": "héllo ✓",
}
LINKED = SpanContext(
    0x0AF7651916CD43DD8448EB211C80319C,
    0x00F067AA0BA902B7,
    is_remote=True,
    trace_flags=TraceFlags(TraceFlags.SAMPLED),
    trace_state=TraceState([("vendor", "value"), ("other", "x")]),
)

Tracing = Callable[..., tuple[trace.Tracer, InMemorySpanExporter]]


@pytest.fixture
def tracing() -> Iterator[Tracing]:
    """Real SDK tracers whose finished spans land in an InMemorySpanExporter."""
    providers: list[TracerProvider] = []

    def make(**options: object) -> tuple[trace.Tracer, InMemorySpanExporter]:
        provider = TracerProvider(
            resource=Resource.create({"service.name": "codec", "deploy.n": 3}),
            **options,  # type: ignore[arg-type]
        )
        exporter = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        providers.append(provider)
        return provider.get_tracer("codec.tests", "2.1"), exporter

    yield make
    for provider in providers:
        provider.shutdown()


def fail(exc: Exception) -> None:
    """Raise *exc* (from a frame of its own, so the traceback has one)."""
    raise exc


def full_trace(tracer: trace.Tracer) -> None:
    """Server -> internal -> client, with every attribute type, events, an error."""
    with tracer.start_as_current_span(
        "GET /orders", kind=SpanKind.SERVER, attributes=ALL_TYPES
    ) as server:
        server.add_event("accepted", {"queue": "fast", "depth": 3})
        with (
            tracer.start_as_current_span(
                "load", links=[Link(LINKED, {"reason": "batch", "n": 2})]
            ),
            tracer.start_as_current_span("db", kind=SpanKind.CLIENT) as client,
        ):
            client.set_attribute("db.rows", (1, 2))
            try:
                fail(KeyError("order 7"))
            except KeyError as exc:
                client.record_exception(exc)
                client.set_status(trace.Status(trace.StatusCode.ERROR, "lost"))
        server.set_status(trace.StatusCode.OK)


def assert_same_span(expected: ReadableSpan, actual: ReadableSpan) -> None:
    """Every field docs/protocol.md#protocol-trace-span lists is equal in both spans."""
    assert expected.context is not None
    assert actual.context is not None
    assert (expected.context.trace_id, expected.context.span_id) == (
        actual.context.trace_id,
        actual.context.span_id,
    )
    assert expected.context.trace_state == actual.context.trace_state
    assert (expected.parent.span_id if expected.parent else None) == (
        actual.parent.span_id if actual.parent else None
    )
    assert (expected.name, expected.kind) == (actual.name, actual.kind)
    assert (expected.start_time, expected.end_time) == (
        actual.start_time,
        actual.end_time,
    )
    assert (expected.status.status_code, expected.status.description) == (
        actual.status.status_code,
        actual.status.description,
    )
    assert dict(expected.attributes or {}) == dict(actual.attributes or {})
    assert [
        (e.name, e.timestamp, dict(e.attributes or {})) for e in expected.events
    ] == [(e.name, e.timestamp, dict(e.attributes or {})) for e in actual.events]
    assert [
        (ln.context.trace_id, ln.context.span_id, ln.context.trace_state, ln.attributes)
        for ln in expected.links
    ] == [
        (ln.context.trace_id, ln.context.span_id, ln.context.trace_state, ln.attributes)
        for ln in actual.links
    ]
    assert dict(expected.resource.attributes) == dict(actual.resource.attributes)
    expected_scope, actual_scope = (
        expected.instrumentation_scope,
        actual.instrumentation_scope,
    )
    assert expected_scope is not None
    assert actual_scope is not None
    assert (expected_scope.name, expected_scope.version) == (
        actual_scope.name,
        actual_scope.version,
    )
    assert (
        expected.dropped_attributes,
        expected.dropped_events,
        expected.dropped_links,
    ) == (actual.dropped_attributes, actual.dropped_events, actual.dropped_links)


def over_json(data: object) -> dict[str, object]:
    """*data* as it comes back from the gateway: through JSON text."""
    return json.loads(json.dumps(data))


class TestEncodeSpan:
    """``encode_span``: the fields of docs/protocol.md#protocol-trace-span."""

    def test_ids_parent_kind_times(self, tracing: Tracing) -> None:
        """Ids are lowercase hex of the right length; parents, kinds, times match."""
        tracer, memory = tracing()
        full_trace(tracer)
        client, internal, server = memory.get_finished_spans()
        data = encode_span(client)
        assert client.context is not None
        assert internal.context is not None
        assert format(client.context.trace_id, "032x") == data["traceId"]
        assert format(client.context.span_id, "016x") == data["spanId"]
        assert format(internal.context.span_id, "016x") == data["parentSpanId"]
        assert None is encode_span(server)["parentSpanId"]
        assert ("CLIENT", "INTERNAL", "SERVER") == tuple(
            encode_span(span)["kind"] for span in (client, internal, server)
        )
        assert (client.start_time, client.end_time) == (
            data["startTimeUnixNano"],
            data["endTimeUnixNano"],
        )
        assert client.end_time is not None
        assert client.start_time is not None
        assert (client.end_time - client.start_time) / 1e6 == data["durationMs"]

    def test_span_without_context_or_times(self) -> None:
        """Zero ids, no parent, an empty trace state and zero times, as documented."""
        data = encode_span(ReadableSpan(name="bare"))
        assert ("0" * 32, "0" * 16, None, "", 0, 0, {"name": "", "version": None}) == (
            data["traceId"],
            data["spanId"],
            data["parentSpanId"],
            data["traceState"],
            data["startTimeUnixNano"],
            data["endTimeUnixNano"],
            data["scope"],
        )

    def test_status_events_exception(self, tracing: Tracing) -> None:
        """The error status and the recorded exception are in the data."""
        tracer, memory = tracing()
        full_trace(tracer)
        client, _, server = memory.get_finished_spans()
        data = encode_span(client)
        assert {"code": "ERROR", "description": "lost"} == data["status"]
        assert {"code": "OK", "description": None} == encode_span(server)["status"]
        (event,) = data["events"]  # type: ignore[misc]
        assert "exception" == event["name"]
        assert "KeyError" == event["attributes"]["exception.type"]
        assert "KeyError: 'order 7'" in event["attributes"]["exception.stacktrace"]

    def test_link_resource_scope(self, tracing: Tracing) -> None:
        """Links keep ids, trace state and attributes; resource and scope are set."""
        tracer, memory = tracing()
        full_trace(tracer)
        _, internal, _ = memory.get_finished_spans()
        data = encode_span(internal)
        assert [
            {
                "traceId": "0af7651916cd43dd8448eb211c80319c",
                "spanId": "00f067aa0ba902b7",
                "attributes": {"reason": "batch", "n": 2},
                "traceState": "vendor=value,other=x",
            }
        ] == data["links"]
        assert {"name": "codec.tests", "version": "2.1"} == data["scope"]
        assert "" == data["traceState"]  # the span's own state is empty
        resource = data["resource"]
        assert isinstance(resource, dict)
        assert ("codec", 3) == (resource["service.name"], resource["deploy.n"])

    def test_dropped_only_when_non_zero(self, tracing: Tracing) -> None:
        """Dropped counts appear when the SDK's limits dropped something."""
        tracer, memory = tracing(
            span_limits=SpanLimits(max_span_attributes=2, max_events=1, max_links=1)
        )
        with tracer.start_as_current_span(
            "limited", links=[Link(LINKED), Link(LINKED)]
        ) as span:
            span.set_attributes({"a": 1, "b": 2, "c": 3})
            span.add_event("one")
            span.add_event("two")
        with tracer.start_as_current_span("plain"):
            pass
        limited, plain = memory.get_finished_spans()
        assert {"attributes": 1, "events": 1, "links": 1} == encode_span(limited)[
            "dropped"
        ]
        assert "dropped" not in encode_span(plain)

    def test_oversized_span_is_truncated_by_the_engine(self, tracing: Tracing) -> None:
        """A span over the body limit is cut to fit, keeps its ids and says so."""
        tracer, memory = tracing()
        with tracer.start_as_current_span("huge") as span:
            span.set_attributes({f"blob.{i}": "x" * 400_000 for i in range(4)})
        (huge,) = memory.get_finished_spans()
        data = snapshot_span(huge)
        event = encode_item(EventItem("trace.span", data, data.size_hint))
        body = json.loads(event.body)
        assert (True, True) == (data.oversized, len(event.body) <= MAX_EVENT_BYTES)
        assert (True, encode_span(huge)["spanId"]) == (
            body["data"]["truncated"],
            body["data"]["spanId"],
        )


class TestSpanRoundTrip:
    """encode -> JSON -> ``decode_span`` gives the SDK's span back."""

    @pytest.mark.parametrize("which", ["client", "internal", "server"])
    def test_lossless(self, tracing: Tracing, which: str) -> None:
        """
        Every field survives, attribute types included (lists as tuples).

        See docs/protocol.md#protocol-round-trip.
        """
        tracer, memory = tracing()
        full_trace(tracer)
        spans = dict(
            zip(
                ["client", "internal", "server"],
                memory.get_finished_spans(),
                strict=True,
            )
        )
        original = spans[which]
        data = over_json(encode_span(original))
        decoded = decode_span(data)
        assert_same_span(original, decoded)
        assert data == over_json(encode_span(decoded))

    def test_dropped_counts_survive(self, tracing: Tracing) -> None:
        """Dropped counts come back as the rebuilt span's dropped counts."""
        tracer, memory = tracing(
            span_limits=SpanLimits(max_span_attributes=1, max_events=1, max_links=1)
        )
        with tracer.start_as_current_span(
            "limited", links=[Link(LINKED), Link(LINKED), Link(LINKED)]
        ) as span:
            span.set_attributes({"a": 1, "b": 2})
            span.add_event("one")
            span.add_event("two")
        (limited,) = memory.get_finished_spans()
        assert_same_span(limited, decode_span(over_json(encode_span(limited))))

    def test_attribute_types(self) -> None:
        """JSON lists become tuples, nested ones too; scalars keep their type."""
        decoded = decode_attributes(over_json({**ALL_TYPES, "nested": {"k": [1]}}))
        assert {**ALL_TYPES, "nested": {"k": (1,)}} == decoded
        assert [type(value) for value in ALL_TYPES.values()] == [
            type(decoded[key]) for key in ALL_TYPES
        ]

    def test_garbage_gives_defaults(self) -> None:
        """Missing or mistyped fields decode to defaults instead of raising."""
        span = decode_span(
            {"kind": "SIDEWAYS", "status": {"code": 7}, "traceId": "zz", "events": 3}
        )
        assert ("", SpanKind.INTERNAL, trace.StatusCode.UNSET, 0, ()) == (
            span.name,
            span.kind,
            span.status.status_code,
            span.context.trace_id if span.context else None,
            span.events,
        )


class TestSpanData:
    """``snapshot_span``: the lazily built mapping the producers submit."""

    def test_reads_like_the_encoded_dict(self, tracing: Tracing) -> None:
        """The mapping equals ``encode_span`` and is built once."""
        tracer, memory = tracing()
        full_trace(tracer)
        (client, _, _) = memory.get_finished_spans()
        data = snapshot_span(client)
        assert isinstance(data, SpanData)
        assert encode_span(client) == dict(data)
        assert data.build() is data.build()

    def test_lets_the_span_go(self, tracing: Tracing) -> None:
        """
        The data holds a snapshot, not the SDK's span, and still writes it all.

        A queued span would keep its attribute and event containers, their locks,
        context and status alive for the garbage collector to scan.
        """
        tracer, memory = tracing(span_limits=SpanLimits(max_attributes=3))
        full_trace(tracer)
        spans = memory.get_finished_spans()
        checked = [snapshot_span(span) for span in spans]
        for span, item in zip(spans, checked, strict=True):  # decoding is separate
            assert_same_span(span, decode_span(over_json(dict(item))))
        assert any("dropped" in item for item in checked)  # the counts travel too
        later = [snapshot_span(span) for span in spans]
        gone = [weakref.ref(span) for span in spans]
        memory.clear()
        del spans, span
        assert [None, None, None] == [ref() for ref in gone]
        assert [dict(item) for item in checked] == [dict(item) for item in later]

    def test_size_hint_counts_long_strings(self, tracing: Tracing) -> None:
        """The estimate grows with attribute strings and a recorded stack trace."""
        tracer, memory = tracing()
        with tracer.start_as_current_span("small"):
            pass
        with tracer.start_as_current_span("big", attributes={"s": "x" * 10_000}):
            pass
        with tracer.start_as_current_span(
            "linked", links=[Link(LINKED, {"s": "x" * 10_000})]
        ):
            pass
        small, big, linked = (snapshot_span(s) for s in memory.get_finished_spans())
        assert (False, True, True) == (
            small.size_hint > 10_000,
            big.size_hint > 10_000,
            linked.size_hint > 10_000,
        )
        for data in (big, linked):
            assert len(json.dumps(dict(data))) <= data.size_hint + 1024


class TestEncodeFastPaths:
    """The shortcuts of ``encode_span``: same data as the slow way, never shared."""

    def test_resource_copied_once_but_never_shared(self, tracing: Tracing) -> None:
        """Spans of one provider get equal resource dicts that are not one object."""
        tracer, memory = tracing()
        full_trace(tracer)
        first, second = (encode_span(span) for span in memory.get_finished_spans()[:2])
        assert first["resource"] == second["resource"]
        assert first["resource"] is not second["resource"]
        first["resource"]["service.name"] = "changed"  # type: ignore[index]
        (client, _, _) = memory.get_finished_spans()
        assert "codec" == encode_span(client)["resource"]["service.name"]  # type: ignore[index]

    def test_plain_mappings_without_copy(self) -> None:
        """Attributes in any Mapping (no ``copy``, or an odd one) encode the same."""

        class Bare(Mapping[str, object]):
            """A read-only mapping with neither ``copy`` nor a dict inside."""

            def __init__(self, **items: object) -> None:
                self._items = items

            def __getitem__(self, key: str) -> object:
                return self._items[key]

            def __iter__(self) -> Iterator[str]:
                return iter(self._items)

            def __len__(self) -> int:
                return len(self._items)

        class OddCopy(Bare):
            """A mapping whose ``copy`` returns something other than a dict."""

            def copy(self) -> list[str]:
                return list(self._items)

        span = ReadableSpan(
            name="plain",
            context=LINKED,
            attributes=Bare(a=1, s="x"),  # type: ignore[arg-type]
            events=[Event("e", OddCopy(k=("v", "w")), 5)],  # type: ignore[arg-type]
            resource=Resource({"service.name": "plain"}),
        )
        data = encode_span(span)
        assert {"a": 1, "s": "x"} == data["attributes"]
        assert [{"name": "e", "timeUnixNano": 5, "attributes": {"k": ("v", "w")}}] == (
            data["events"]
        )
        assert estimate_span_size(span) >= len(json.dumps(data)) - 1024

    def test_worker_body_equals_the_dict(self, tracing: Tracing) -> None:
        """What the engine sends for a snapshot is the JSON of ``encode_span``."""
        tracer, memory = tracing()
        full_trace(tracer)
        for span in memory.get_finished_spans():
            data = snapshot_span(span)
            body = encode_item(EventItem("trace.span", data, data.size_hint)).body
            assert over_json(encode_span(span)) == json.loads(body)["data"]


class _Opaque:
    """A value JSON cannot write: both paths fall back to its ``repr``."""

    def __repr__(self) -> str:
        return "<opaque>"


def _manual_span(**fields: object) -> ReadableSpan:
    """A ``ReadableSpan`` made directly: shapes the SDK's own spans never have."""
    options: dict[str, object] = {"name": "manual", "context": LINKED}
    options.update(fields)
    return ReadableSpan(**options)  # type: ignore[arg-type]


def _sdk_spans(tracing: Tracing, shape: str) -> list[ReadableSpan]:
    """The finished spans of one *shape*, made with the real SDK."""
    limits = SpanLimits(
        max_span_attributes=2,
        max_events=1,
        max_links=1,
        max_event_attributes=1,
        max_link_attributes=1,
    )
    tracer, memory = tracing(span_limits=limits) if shape == "dropped" else tracing()
    if shape == "full":
        full_trace(tracer)
    elif shape == "plain":
        with tracer.start_as_current_span("plain"):
            pass
    elif shape == "all_types":
        with tracer.start_as_current_span("types", attributes=ALL_TYPES) as span:
            span.add_event("typed", ALL_TYPES, timestamp=17)
    elif shape == "dropped":
        with tracer.start_as_current_span(
            "limited",
            links=[Link(LINKED, {"a": 1, "b": 2}), Link(LINKED)],
        ) as span:
            span.set_attributes({"a": 1, "b": 2, "c": 3})
            span.add_event("one", {"x": 1, "y": 2})
            span.add_event("two")
    elif shape == "links":
        plain = SpanContext(7, 9, is_remote=False)
        with tracer.start_as_current_span(
            "linked",
            links=[Link(LINKED, {"reason": "batch", "ns": (1, 2)}), Link(plain)],
        ):
            pass
    elif shape == "exception":
        with tracer.start_as_current_span("boom") as span:
            try:
                fail(ValueError('bad "value" \n\t ✓'))
            except ValueError as exc:
                span.record_exception(exc, {"extra": (True, False)})
            span.set_status(trace.Status(trace.StatusCode.ERROR))
    elif shape == "error_described":
        with tracer.start_as_current_span("err", kind=SpanKind.PRODUCER) as span:
            span.set_status(trace.Status(trace.StatusCode.ERROR, 'it "broke" ✗'))
    elif shape == "remote_parent":
        context = trace.set_span_in_context(trace.NonRecordingSpan(LINKED))
        with tracer.start_as_current_span(
            "child", context=context, kind=SpanKind.CONSUMER
        ):
            pass
    elif shape == "non_finite":
        with tracer.start_as_current_span(
            "nan", attributes={"nan": float("nan"), "inf": float("-inf"), "ok": 1}
        ):
            pass
    elif shape == "odd_strings":
        with tracer.start_as_current_span(
            "lone \udc80 surrogate \x00 \u2028",
            attributes={"k\udc80": "v\x7f", "big": 2**80, "neg": -0.0},
        ):
            pass
    else:
        raise AssertionError(shape)
    return list(memory.get_finished_spans())


def _manual_spans(shape: str) -> list[ReadableSpan]:
    """The spans of a *shape* the SDK does not make but ``ReadableSpan`` allows."""
    if shape == "bare":
        return [ReadableSpan(name="bare")]  # no context, times, scope or resource
    if shape == "opaque_values":
        return [
            _manual_span(
                attributes={"b": b"x", "o": _Opaque(), "m": {"k": [1]}},
                events=[Event("e", {"s": {1, 2}}, 5)],
                resource=Resource({"r": b"y"}),
            )
        ]
    if shape == "circular":
        loop: list[object] = []
        loop.append(loop)
        return [_manual_span(attributes={"loop": loop})]
    if shape == "nan_resource":
        return [_manual_span(resource=Resource({"nan": float("nan")}))]
    raise AssertionError(shape)


SDK_SHAPES = [
    "full",
    "plain",
    "all_types",
    "dropped",
    "links",
    "exception",
    "error_described",
    "remote_parent",
    "non_finite",
    "odd_strings",
]
MANUAL_SHAPES = ["bare", "opaque_values", "circular", "nan_resource"]


def _old_body(span: ReadableSpan) -> bytes:
    """The body of ``encode_span``'s dict (what the engine writes once built)."""
    return encode_item(EventItem("trace.span", encode_span(span), 0)).body


def _new_body(span: ReadableSpan) -> bytes:
    """The body the engine sends for a snapshot (``SpanData.build_json``)."""
    data = snapshot_span(span)
    return encode_item(EventItem("trace.span", data, data.size_hint)).body


def _ordered(body: bytes) -> list[object]:
    """*body*'s JSON content with key order kept (a dict compares without it)."""

    def walk(value: object) -> object:
        if isinstance(value, dict):
            return [(key, walk(item)) for key, item in value.items()]
        if isinstance(value, list):
            return [walk(item) for item in value]
        return value

    return walk(json.loads(body))  # type: ignore[return-value]


class TestBuildJson:
    """``SpanData.build_json``: the same JSON as encoding ``encode_span``'s dict."""

    @pytest.mark.parametrize("shape", SDK_SHAPES + MANUAL_SHAPES)
    def test_same_json_as_the_dict(self, tracing: Tracing, shape: str) -> None:
        """Old path and new path give equal content, key order included."""
        spans = (
            _sdk_spans(tracing, shape) if shape in SDK_SHAPES else _manual_spans(shape)
        )
        assert spans
        for span in spans:
            old, new = _old_body(span), _new_body(span)
            assert json.loads(old) == json.loads(new)
            assert _ordered(old) == _ordered(new)

    def test_written_directly_and_after_build(self, tracing: Tracing) -> None:
        """build_json writes the span's JSON, or the built dict once there is one."""
        from cse_bridge.engine._encode import _ENCODE_PART

        tracer, memory = tracing()
        full_trace(tracer)
        for span in memory.get_finished_spans():
            data = snapshot_span(span)
            direct = json.loads(data.build_json(_ENCODE_PART))
            assert data._data is None  # writing the JSON did not build the dict
            assert over_json(encode_span(span)) == direct
            data.build()
            assert direct == json.loads(data.build_json(_ENCODE_PART))

    def test_resource_and_scope_written_per_provider(self, tracing: Tracing) -> None:
        """Spans of two providers each get their own resource and scope."""
        first, first_memory = tracing()
        with first.start_as_current_span("a"):
            pass
        provider = TracerProvider(resource=Resource({"service.name": "other"}))
        memory = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(memory))
        with provider.get_tracer("second", "9").start_as_current_span("b"):
            pass
        provider.shutdown()
        for span in [*first_memory.get_finished_spans(), *memory.get_finished_spans()]:
            assert json.loads(_old_body(span)) == json.loads(_new_body(span))
