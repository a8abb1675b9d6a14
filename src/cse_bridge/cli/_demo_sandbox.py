"""
The "sandbox" of ``cse-bridge demo``: logs and traces through the bridge, then exits.

Run as ``python -m cse_bridge.cli._demo_sandbox`` with ``COMPUTESDK_*`` pointing
at a gateway. structlog and OpenTelemetry parts run when they are installed.
"""

from __future__ import annotations

import logging

from ..integrations.logging import EventsHandler

__all__ = ["main"]


def _traced(log: logging.Logger) -> None:
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        from ..integrations.otel import EventsSpanExporter
    except ImportError:
        log.warning("OpenTelemetry is not installed: no spans in this demo")
        return
    provider = TracerProvider()
    # The exporter only enqueues (the engine batches): SimpleSpanProcessor suffices.
    provider.add_span_processor(SimpleSpanProcessor(EventsSpanExporter()))
    tracer = provider.get_tracer("demo.checkout")
    with (
        tracer.start_as_current_span("checkout", attributes={"cart.items": 3}),
        tracer.start_as_current_span("charge card") as span,
    ):
        span.add_event("card.authorized", {"amount": 42.5})
        log.info("charged the card inside a span (trace ids ride along)")
    provider.shutdown()


def _structured() -> None:
    try:
        import structlog

        from ..integrations.structlog import EventsProcessor
    except ImportError:
        logging.getLogger("demo").warning("structlog is not installed: skipped")
        return
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            EventsProcessor(),
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.ReturnLoggerFactory(),
    )
    log = structlog.get_logger().bind(logger="demo.worker")
    log.info("job finished", job_id=7, seconds=0.42)


def main() -> None:
    """Log a few records, a structlog event and a small trace; flush at exit."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(EventsHandler(service_name="demo-sandbox"))
    log = logging.getLogger("demo.app")
    log.info("sandbox started")
    log.warning("disk almost full", extra={"disk": "/", "percent": 91})
    try:
        settings: dict[str, str] = {}
        print(settings["missing"])  # raises: a real exception for the demo
    except KeyError:
        log.exception("lookup failed")
    _structured()
    _traced(log)
    log.info("sandbox done")


if __name__ == "__main__":
    main()
