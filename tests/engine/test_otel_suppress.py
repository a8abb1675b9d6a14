"""The engine's threads suppress OpenTelemetry instrumentation of their own sends."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.instrumentation.utils import (
    is_http_instrumentation_enabled,
    is_instrumentation_enabled,
)
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

from cse_bridge.engine import EncodedEvent, InMemorySink, SendResult

from .conftest import EngineFactory, item


class Recorder(SpanProcessor):
    """Keeps the name of every span that ends."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.names.append(span.name)


class InstrumentedSink(InMemorySink):
    """Sends as an instrumented HTTP client would: a span unless suppressed."""

    def __init__(self, provider: TracerProvider) -> None:
        super().__init__()
        self.tracer = provider.get_tracer("fake-http-instrumentation")
        self.enabled: list[bool] = []

    def send(self, batch: Sequence[EncodedEvent], deadline: float) -> SendResult:
        """Record whether instrumentation is on, span like requests' would."""
        enabled = is_instrumentation_enabled() and is_http_instrumentation_enabled()
        self.enabled.append(enabled)
        if enabled:
            with self.tracer.start_as_current_span("POST /events"):
                return super().send(batch, deadline)
        return super().send(batch, deadline)


class TestOtelSuppression:
    """mark_engine_thread attaches OTel's suppress keys when OTel is imported."""

    def test_engine_sends_make_no_spans(self, make_engine: EngineFactory) -> None:
        """The worker's sends make no span; the same call elsewhere makes one."""
        provider = TracerProvider()
        recorder = Recorder()
        provider.add_span_processor(recorder)
        sink = InstrumentedSink(provider)
        engine = make_engine(sink)
        for index in range(20):
            engine.submit(item(index))
        assert engine.flush(10)
        assert sink.enabled
        assert not any(sink.enabled)
        assert [] == recorder.names
        sink.send([EncodedEvent("log.info", b"{}")], 0.0)  # the application thread
        assert ["POST /events"] == recorder.names
