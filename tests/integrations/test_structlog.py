"""EventsProcessor and the ProcessorFormatter recipe: structlog events as log events."""

from __future__ import annotations

import io
import logging
import threading
from typing import Any

import structlog

from cse_bridge.engine._lifecycle import mark_engine_thread
from cse_bridge.integrations.logging import EventsHandler
from cse_bridge.integrations.structlog import EventsProcessor
from cse_bridge.testing import LocalGateway


class FakeEngine:
    """Records what was submitted."""

    exit_timeout = 1.0

    def __init__(self) -> None:
        self.items: list[Any] = []

    def submit(self, item: Any) -> None:
        """Keep *item*."""
        self.items.append(item)

    def flush(self, timeout: float = 5.0) -> bool:
        """Nothing to wait for."""
        return True


class TestEventsProcessor:
    """``EventsProcessor.__call__``."""

    def test_returns_event_dict_unchanged(self) -> None:
        """The processor hands the very same dict, unchanged, to the next one."""
        processor = EventsProcessor(engine=FakeEngine())  # type: ignore[arg-type]
        event = {"event": "hi", "user": "ann"}
        result = processor(None, "info", event)
        assert event is result
        assert {"event": "hi", "user": "ann"} == result

    def test_ships_a_snapshot(self) -> None:
        """Changing the dict after the call does not change what was shipped."""
        fake = FakeEngine()
        processor = EventsProcessor(engine=fake, service_name="svc")  # type: ignore[arg-type]
        event = {"event": "hi", "user": "ann"}
        processor(None, "warning", event)
        event["user"] = "bob"
        (item,) = fake.items
        assert "log.warning" == item.type
        assert ("hi", {"user": "ann"}) == (
            item.data["message"],
            item.data["attributes"],
        )
        assert {"service.name": "svc"} == item.data["resource"]

    def test_logger_name_from_wrapped_logger(self) -> None:
        """A stdlib logger's name becomes the event's logger."""
        fake = FakeEngine()
        EventsProcessor(engine=fake)(
            logging.getLogger("svc.db"), "info", {"event": "x"}
        )  # type: ignore[arg-type]
        assert "svc.db" == fake.items[0].data["logger"]

    def test_not_shipped_on_engine_thread(self) -> None:
        """Events processed on an engine thread are not shipped (no feedback loop)."""
        fake = FakeEngine()
        processor = EventsProcessor(engine=fake)  # type: ignore[arg-type]

        def on_engine() -> None:
            mark_engine_thread()
            processor(None, "info", {"event": "ours"})

        thread = threading.Thread(target=on_engine)
        thread.start()
        thread.join()
        assert [] == fake.items

    def test_failure_never_raises(self) -> None:
        """A broken engine does not break the application's logging."""

        class Broken(FakeEngine):
            def submit(self, item: Any) -> None:
                raise RuntimeError("broken")

        event = {"event": "x"}
        assert event is EventsProcessor(engine=Broken())(None, "info", event)  # type: ignore[arg-type]

    def test_console_output_keeps_working(self, local_gateway: LocalGateway) -> None:
        """The documented structlog setup renders to the console and ships events."""
        out = io.StringIO()
        processor = EventsProcessor(
            gateway_url=local_gateway.http_url,
            access_token=local_gateway.access_token,
            service_name="worker",
        )
        structlog.configure(
            processors=[
                structlog.contextvars.merge_contextvars,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso"),
                processor,
                structlog.dev.ConsoleRenderer(colors=False),
            ],
            logger_factory=structlog.PrintLoggerFactory(out),
        )
        log = structlog.get_logger()
        log.info("order placed", order=42)
        try:
            int("card declined")
        except ValueError:
            log.exception("payment failed", order=42)
        assert "order placed" in out.getvalue()
        assert "card declined" in out.getvalue()
        info, error = local_gateway.read_events()
        assert ("log.info", "order placed", {"order": 42}) == (
            info.type, info.data["message"], info.data["attributes"],
        )  # fmt: skip
        expected = (
            "ValueError",
            "invalid literal for int() with base 10: 'card declined'",
        )
        exception = error.data["exception"]
        assert expected == (exception["type"], exception["message"])
        assert {"service.name": "worker"} == info.data["resource"]


class TestProcessorFormatterRecipe:
    """structlog through the standard library, shipped by EventsHandler."""

    def test_structlog_and_foreign_records_ship_once(
        self, local_gateway: LocalGateway
    ) -> None:
        """structlog events and plain stdlib records each arrive once, mapped alike."""
        structlog.configure(
            processors=[
                structlog.stdlib.add_log_level,
                structlog.processors.TimeStamper(fmt="iso"),
                structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
            ],
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
        )
        out = io.StringIO()
        console = logging.StreamHandler(out)
        console.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                processor=structlog.dev.ConsoleRenderer(colors=False)
            )
        )
        events = EventsHandler(
            gateway_url=local_gateway.http_url, access_token=local_gateway.access_token
        )
        logging.basicConfig(level=logging.INFO, handlers=[console, events], force=True)
        structlog.get_logger("svc").warning("cache miss", key="user:1")
        logging.getLogger("legacy").info("plain %s", "record")
        first, second = local_gateway.read_events()
        assert ("log.warning", "cache miss", "svc", {"key": "user:1"}) == (
            first.type, first.data["message"], first.data["logger"],
            first.data["attributes"],
        )  # fmt: skip
        assert ("log.info", "plain record", "legacy") == (
            second.type, second.data["message"], second.data["logger"],
        )  # fmt: skip
        assert "cache miss" in out.getvalue()
