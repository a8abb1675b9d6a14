"""EventsHandler: records become log.<level> events, cheaply and without loops."""

from __future__ import annotations

import logging
import logging.config
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from cse_bridge.engine import BatchEngine, InMemorySink, mark_engine_thread
from cse_bridge.forwarder import FORWARDED_ATTR
from cse_bridge.integrations.logging import EventsHandler, install_excepthook
from cse_bridge.testing import LocalGateway


class FakeEngine:
    """Records what was submitted; no worker, so nothing is encoded behind our back."""

    exit_timeout = 1.0

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.flushes: list[float] = []

    def submit(self, item: Any) -> None:
        """Keep *item*."""
        self.items.append(item)

    def flush(self, timeout: float = 5.0) -> bool:
        """Record the timeout."""
        self.flushes.append(timeout)
        return True


def logger_with(handler: logging.Handler, name: str = "app") -> logging.Logger:
    """A fresh logger (outside the manager) that only has *handler*."""
    logger = logging.Logger(name, logging.DEBUG)  # noqa: LOG001 - not in the manager
    logger.addHandler(handler)
    return logger


def memory_engine(**options: Any) -> tuple[BatchEngine, InMemorySink]:
    """A real engine delivering to an InMemorySink."""
    sink = InMemorySink()
    return BatchEngine(sink, schedule_delay=0.05, **options), sink


def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TestEventsHandlerEmit:
    """What ``emit`` submits."""

    def test_record_becomes_event(self) -> None:
        """A record carries the fields of docs/protocol.md#protocol-log-records."""
        engine, sink = memory_engine()
        logger_with(EventsHandler(engine=engine, service_name="svc")).warning(
            "disk %s%% full", 91, extra={"disk": "/dev/sda"}
        )
        assert engine.flush(5.0)
        (event,) = sink.decoded()
        assert "log.warning" == event["type"]
        data = event["data"]
        assert "disk 91% full" == data["message"]
        assert ("WARNING", 30, "app") == (
            data["level"],
            data["levelno"],
            data["logger"],
        )
        assert {"disk": "/dev/sda"} == data["attributes"]
        assert {"service.name": "svc"} == data["resource"]
        assert "test_record_becomes_event" == data["source"]["function"]

    def test_event_type_override(self) -> None:
        """``event_type`` replaces ``log.<level>``."""
        fake = FakeEngine()
        logger_with(EventsHandler(engine=fake, event_type="custom")).error("x")
        assert ["custom"] == [item.type for item in fake.items]

    def test_resource_and_service_name(self) -> None:
        """``service_name`` joins the configured resource attributes."""
        fake = FakeEngine()
        handler = EventsHandler(engine=fake, resource={"env": "ci"}, service_name="s")
        logger_with(handler).info("x")
        assert {"env": "ci", "service.name": "s"} == fake.items[0].data["resource"]

    def test_formatter_sets_the_message(self) -> None:
        """A formatter set on the handler renders the shipped message."""
        fake = FakeEngine()
        handler = EventsHandler(engine=fake)
        handler.setFormatter(logging.Formatter("[%(name)s] %(message)s"))
        logger_with(handler).info("hi %s", "there")
        assert "[app] hi there" == fake.items[0].data["message"]

    def test_basic_config_format_is_ignored(self) -> None:
        """``basicConfig()``'s default format does not end up in the message."""
        fake = FakeEngine()
        logging.basicConfig(handlers=[EventsHandler(engine=fake)], force=True)
        logging.getLogger("app.basic").warning("plain")
        assert "plain" == fake.items[0].data["message"]

    def test_args_mutated_after_emit(self) -> None:
        """Mutating the args after the call does not change the shipped message."""
        fake = FakeEngine()
        items = ["a"]
        logger_with(EventsHandler(engine=fake)).info("items %s", items)
        items.append("b")
        assert "items ['a']" == fake.items[0].data["message"]

    def test_level_filters(self) -> None:
        """Records below the handler's level are not shipped."""
        fake = FakeEngine()
        logger = logger_with(EventsHandler(logging.WARNING, engine=fake))
        logger.info("no")
        logger.warning("yes")
        assert ["yes"] == [item.data["message"] for item in fake.items]

    def test_own_loggers_are_dropped(self) -> None:
        """Records of ``cse_bridge`` loggers are not shipped (no feedback loop)."""
        fake = FakeEngine()
        handler = EventsHandler(engine=fake)
        logger_with(handler, "cse_bridge.engine").warning("ours")
        logger_with(handler, "cse_bridge").warning("ours")
        logger_with(handler, "cse_bridged_app").warning("theirs")
        assert ["theirs"] == [item.data["message"] for item in fake.items]

    def test_engine_thread_records_are_dropped(self) -> None:
        """Records logged on an engine thread (urllib3 while sending) are dropped."""
        fake = FakeEngine()
        logger = logger_with(EventsHandler(engine=fake), "urllib3.connectionpool")

        def on_engine() -> None:
            mark_engine_thread()
            logger.debug("Starting new HTTP connection")

        thread = threading.Thread(target=on_engine)
        thread.start()
        thread.join()
        logger.debug("from the application")
        assert ["from the application"] == [i.data["message"] for i in fake.items]

    def test_forwarded_records_are_dropped(self) -> None:
        """A record the forwarder re-emitted (its marker set) is not shipped back."""
        fake = FakeEngine()
        logger = logger_with(EventsHandler(engine=fake), "sandbox.app")
        logger.info("echo", extra={FORWARDED_ATTR: True})
        logger.info("marker not True", extra={FORWARDED_ATTR: "yes"})
        logger.info("local")
        assert ["marker not True", "local"] == [i.data["message"] for i in fake.items]

    def test_bug_goes_to_handle_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A failure inside emit is reported through ``handleError``, not raised."""
        seen: list[logging.LogRecord] = []
        handler = EventsHandler(engine=FakeEngine())
        monkeypatch.setattr(handler, "handleError", seen.append)
        logger_with(handler).info("%d", "not a number")
        assert ["%d"] == [record.msg for record in seen]

    def test_structlog_records_are_mapped(self) -> None:
        """A record carrying a structlog event dict ships its keys as attributes."""
        fake = FakeEngine()
        logger = logger_with(EventsHandler(engine=fake))
        event = {"event": "paid", "amount": 3, "level": "info"}
        logger.info(event, extra={"_logger": logger, "_name": "info"})
        data = fake.items[0].data
        assert ("paid", {"amount": 3}) == (data["message"], data["attributes"])


class TestEventsHandlerLifecycle:
    """flush, close, reuse and shutdown."""

    def test_close_then_reuse(self, local_gateway: LocalGateway) -> None:
        """A closed handler that gets records again ships them (dictConfig reuse)."""
        handler = EventsHandler(
            gateway_url=local_gateway.http_url, access_token=local_gateway.access_token
        )
        logger = logger_with(handler)
        logger.info("before")
        handler.close()
        logger.info("after")
        expected = ["before", "after"]
        assert expected == [e.data["message"] for e in local_gateway.read_events()]

    def test_close_shuts_down_only_an_own_engine(self) -> None:
        """``close`` shuts a private engine down but only flushes a shared one."""
        own = EventsHandler(gateway_url="http://127.0.0.1:9", own_engine=True)
        shared = EventsHandler(gateway_url="http://127.0.0.1:9")
        logger_with(own).info("x")
        logger_with(shared).info("x")
        own_engine, shared_engine = own.engine, shared.engine
        assert own_engine is not None
        assert shared_engine is not None
        own.close_timeout = shared.close_timeout = 0.2
        own.close()
        shared.close()
        assert (True, False) == (own_engine.is_shutdown, shared_engine.is_shutdown)

    def test_given_engine_is_kept(self) -> None:
        """A given engine is flushed on close, never shut down or replaced."""
        fake = FakeEngine()
        handler = EventsHandler(engine=fake, close_timeout=0.5)
        handler.close()
        assert fake is handler.engine
        assert [0.5] == fake.flushes

    def test_flush_is_brief_under_logging_lock(self) -> None:
        """Under logging's module lock (dictConfig) flush waits 0.1 s at most."""
        fake = FakeEngine()
        handler = EventsHandler(engine=fake, flush_timeout=5.0)
        with logging._lock:  # type: ignore[attr-defined]
            handler.flush()
        handler.flush()
        assert [0.1, 5.0] == fake.flushes

    def test_after_shutdown_nothing_starts(self) -> None:
        """After the engine shut down, flush and close return at once, no thread."""
        engine, _ = memory_engine()
        handler = EventsHandler(engine=engine)
        logger_with(handler).info("x")
        engine.shutdown(2.0)
        threads = threading.active_count()
        start = time.monotonic()
        handler.flush()
        handler.close()
        logger_with(handler).info("dropped")
        assert threads == threading.active_count()
        assert time.monotonic() - start < 0.5
        assert 1 == engine.stats().dropped["after_shutdown"]

    def test_dictconfig(self, local_gateway: LocalGateway) -> None:
        """The documented dictConfig builds a working handler from simple values."""
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "handlers": {
                    "events": {
                        "class": "cse_bridge.integrations.logging.EventsHandler",
                        "level": "INFO",
                        "service_name": "worker",
                        "resource": {"deployment.environment": "test"},
                        "gateway_url": local_gateway.http_url,
                        "access_token": local_gateway.access_token,
                        "max_queue_size": 1000,
                    }
                },
                "root": {"level": "DEBUG", "handlers": ["events"]},
            }
        )
        logging.getLogger("app.dict").info("configured")
        logging.getLogger("app.dict").debug("below the handler's level")
        (event,) = local_gateway.read_events()
        expected = {"service.name": "worker", "deployment.environment": "test"}
        assert expected == event.data["resource"]
        assert "configured" == event.data["message"]


class TestEventsHandlerGateway:
    """Against the real local gateway."""

    def handler(self, gateway: LocalGateway, **options: Any) -> EventsHandler:
        """A handler shipping to *gateway*."""
        return EventsHandler(
            gateway_url=gateway.http_url, access_token=gateway.access_token, **options
        )

    def test_10000_records_from_4_threads(self, local_gateway: LocalGateway) -> None:
        """Every record of four busy threads arrives, once, with its content."""
        logger = logger_with(self.handler(local_gateway))

        def work(worker: int) -> None:
            for i in range(2500):
                logger.info(
                    "worker %d record %d", worker, i, extra={"w": worker, "i": i}
                )

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        events = local_gateway.read_events()
        expected = {(w, i) for w in range(4) for i in range(2500)}
        seen = [(e.data["attributes"]["w"], e.data["attributes"]["i"]) for e in events]
        assert 10_000 == len(seen)
        assert expected == set(seen)
        assert all(
            f"worker {e.data['attributes']['w']} record {e.data['attributes']['i']}"
            == e.data["message"]
            for e in events
        )

    def test_overflow_is_counted_and_reported(
        self, local_gateway: LocalGateway
    ) -> None:
        """A full queue drops the oldest, counts it, and ``bridge.dropped`` arrives."""
        handler = self.handler(local_gateway, own_engine=True, max_queue_size=50)
        logger = logger_with(handler)
        for i in range(3000):
            logger.info("burst %d", i)
        engine = handler.engine
        assert engine is not None
        assert engine.flush(30.0)
        stats = engine.stats()
        logs = local_gateway.read_events(type="log.info", flush=False)
        reports = local_gateway.read_events(type="bridge.dropped", flush=False)
        assert 3000 == len(logs) + stats.dropped["queue_full"]
        assert stats.dropped["queue_full"] > 0
        assert stats.dropped["queue_full"] == sum(
            r.data["dropped"].get("queue_full", 0) for r in reports
        )
        # The newest records are kept (drop_oldest); the 16 connections store them
        # in any order, so look for the last one, not at the last place.
        kept = {int(e.data["message"].split()[1]) for e in logs}
        assert 2999 == max(kept)

    def test_unjsonable_extras_arrive_as_strings(
        self, local_gateway: LocalGateway
    ) -> None:
        """Objects, bytes, sets and recursive dicts in extras arrive as their repr."""
        loop: dict[str, Any] = {"name": "loop"}
        loop["self"] = loop

        class Thing:
            def __repr__(self) -> str:
                return "<Thing>"

        extra = {"thing": Thing(), "raw": b"\xff", "tags": {"a"}, "loop": loop}
        logger_with(self.handler(local_gateway)).info("odd", extra=extra)
        (event,) = local_gateway.read_events()
        attributes = event.data["attributes"]
        expected = ("<Thing>", "b'\\xff'", "{'a'}", "loop")
        assert expected == (
            attributes["thing"], attributes["raw"], attributes["tags"],
            attributes["loop"]["name"],
        )  # fmt: skip
        assert isinstance(attributes["loop"]["self"], str)

    def test_urllib3_debug_no_feedback_loop(self, local_gateway: LocalGateway) -> None:
        """With urllib3 DEBUG on the root logger, only the app's own records ship."""
        root = logging.getLogger()
        root.setLevel(logging.DEBUG)
        handler = self.handler(local_gateway)
        root.addHandler(handler)
        for i in range(200):
            logging.getLogger("app").info("record %d", i)
        requests.get(local_gateway.http_url + "/health", timeout=5)  # app's urllib3
        for _ in range(3):  # a loop would keep adding events on every round
            local_gateway.flush()
        events = local_gateway.read_events()
        urllib3 = [e for e in events if e.data["logger"].startswith("urllib3")]
        assert 200 == len([e for e in events if e.data["logger"] == "app"])
        assert {"MainThread"} == {e.data["thread"]["name"] for e in events}
        assert 1 <= len(urllib3) <= 10  # the app's own requests, not the engine's

    def test_thread_exception_is_shipped(self, local_gateway: LocalGateway) -> None:
        """An unhandled exception in a thread arrives as log.critical with traceback."""
        handler = self.handler(local_gateway)
        uninstall = install_excepthook(handler)
        seen: list[Any] = []
        threading.excepthook = lambda args: seen.append(args.exc_type)  # quiet
        uninstall()
        uninstall = install_excepthook(handler)

        def boom() -> None:
            raise RuntimeError("worker died")

        thread = threading.Thread(target=boom, name="worker-1")
        thread.start()
        thread.join()
        uninstall()
        (event,) = local_gateway.read_events(type="log.critical")
        assert (
            "Uncaught RuntimeError in thread worker-1: worker died"
            == (event.data["message"])
        )
        assert event.data["exception"]["stacktrace"].endswith(
            "RuntimeError: worker died"
        )
        assert [RuntimeError] == seen


CHILD = """
import logging, sys
from cse_bridge.integrations.logging import EventsHandler
logging.basicConfig(level=logging.INFO, handlers=[EventsHandler(capture_uncaught=True)])
log = logging.getLogger("child")
for i in range(100):
    log.info("child record %d", i)
mode = sys.argv[1]
if mode == "exit3":
    sys.exit(3)
if mode == "raise":
    raise ValueError("child failed")
"""


class TestProcessExit:
    """A process that logs, then ends, delivers its records and exits promptly."""

    def run_child(self, tmp_path: Path, mode: str, env: dict[str, str]) -> Any:
        """Run the child script; return the completed process and its duration."""
        script = tmp_path / "child.py"
        script.write_text(textwrap.dedent(CHILD))
        start = time.monotonic()
        done = subprocess.run(
            [sys.executable, str(script), mode],
            env={**env, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return done, time.monotonic() - start

    @pytest.mark.parametrize(
        ("mode", "code"), [("normal", 0), ("exit3", 3), ("raise", 1)]
    )
    def test_records_arrive(
        self, local_gateway: LocalGateway, tmp_path: Path, mode: str, code: int
    ) -> None:
        """Records (and an unhandled exception's traceback) arrive before exit."""
        done, _ = self.run_child(tmp_path, mode, local_gateway.environ)
        assert code == done.returncode, done.stderr
        events = local_gateway.read_events(flush=False)
        records = [e for e in events if e.type == "log.info"]
        # Every record exactly once; the engine's 16 connections do not keep order.
        assert [f"child record {i}" for i in range(100)] == sorted(
            (e.data["message"] for e in records),
            key=lambda message: int(message.rsplit(" ", 1)[1]),
        )
        critical = [e for e in events if e.type == "log.critical"]
        if mode == "raise":
            (event,) = critical
            assert event.data["exception"]["stacktrace"].endswith(
                "ValueError: child failed"
            )
            assert "ValueError: child failed" in done.stderr  # the previous hook ran
        else:
            assert [] == critical

    @pytest.mark.parametrize("mode", ["normal", "raise"])
    def test_unreachable_gateway_exits_promptly(
        self, tmp_path: Path, mode: str
    ) -> None:
        """With the gateway unreachable the exit budget (3 s) bounds the exit."""
        env = {
            "COMPUTESDK_GATEWAY_URL": f"http://127.0.0.1:{closed_port()}",
            "COMPUTESDK_ACCESS_TOKEN": "token",
        }
        done, elapsed = self.run_child(tmp_path, mode, env)
        assert (0 if mode == "normal" else 1) == done.returncode
        assert elapsed < 10.0
