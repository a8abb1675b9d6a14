"""EventsSink against the real gateway, directly and behind a fault proxy."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from cse_bridge.engine import DROPPED_TYPE, EventItem, EventsSink
from cse_bridge.gateway import GatewayThread

from ..conftest import make_gateway_config
from .conftest import EngineFactory, item, read_events
from .fault_proxy import FaultProxy


class TestEventsSinkDelivery:
    """Everything submitted arrives at the gateway, intact."""

    def test_ten_thousand_events_from_four_threads_arrive(
        self, gateway: GatewayThread, make_engine: EngineFactory
    ) -> None:
        """10 000 events from 4 threads all arrive, each exactly once, with content."""
        sink = EventsSink(gateway.http_url, gateway.issue_token("sb-many"))
        engine = make_engine(sink)

        def produce(thread: int) -> None:
            for index in range(2500):
                engine.submit(item(index, thread=thread))

        threads = [threading.Thread(target=produce, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert engine.flush(40)
        events = read_events(gateway, "sb-many")
        keys = sorted((e["data"]["thread"], e["data"]["i"]) for e in events)
        assert [(t, i) for t in range(4) for i in range(2500)] == keys
        assert (
            "record 7"
            == next(e for e in events if e["data"]["i"] == 7)["data"]["message"]
        )

    def test_unjsonable_values_arrive_as_strings(
        self, gateway: GatewayThread, make_engine: EngineFactory
    ) -> None:
        """Objects, bytes, sets and recursive dicts arrive as their repr."""
        recursive: dict[str, object] = {"name": "loop"}
        recursive["self"] = recursive
        sink = EventsSink(gateway.http_url, gateway.issue_token("sb-odd"))
        engine = make_engine(sink)
        engine.submit(
            EventItem(
                "log.info",
                {"b": b"\x00x", "s": {3}, "o": Path("/x"), "r": recursive},
            )
        )
        assert engine.flush(10)
        data = read_events(gateway, "sb-odd")[0]["data"]
        assert ("b'\\x00x'", "{3}", "PosixPath('/x')", "loop") == (
            data["b"],
            data["s"],
            data["o"],
            data["r"]["name"],
        )
        assert isinstance(data["r"]["self"], str)

    def test_event_over_one_mebibyte_is_truncated_not_dropped(
        self, gateway: GatewayThread, make_engine: EngineFactory
    ) -> None:
        """A 3 MB message arrives cut, marked truncated, with its other fields."""
        sink = EventsSink(gateway.http_url, gateway.issue_token("sb-big"))
        engine = make_engine(sink)
        engine.submit(EventItem("log.error", {"message": "x" * 3_000_000, "n": 5}))
        assert engine.flush(10)
        data = read_events(gateway, "sb-big")[0]["data"]
        assert (True, 5) == (data["truncated"], data["n"])
        assert data["message"].endswith("3000000 chars")
        assert 1024 * 1024 > len(json.dumps(data))


class TestEventsSinkFaults:
    """Retries, Retry-After, rejections and auth, with injected failures."""

    def test_500_and_429_are_retried_and_400_drops_one(
        self, gateway: GatewayThread, make_engine: EngineFactory
    ) -> None:
        """Injected 500s and a 429 are retried; only the 400-provoking event is lost."""

        def rule(number: int, body: bytes) -> tuple[int, dict[str, str]] | None:
            if b'"message":"poison"' in body:
                return 400, {}
            if number in (0, 1):
                return 500, {}
            if number == 2:
                return 429, {"Retry-After": "0.2"}
            return None

        with FaultProxy(gateway.http_url, rule) as proxy:
            sink = EventsSink(
                proxy.url, gateway.issue_token("sb-faults"), connections=1
            )
            engine = make_engine(sink)
            for index in range(6):
                engine.submit(item(index))
            engine.submit(EventItem("log.info", {"message": "poison", "i": 99}))
            assert engine.flush(20)
            assert engine.shutdown(10)  # also sends the pending bridge.dropped report
        events = read_events(gateway, "sb-faults")
        received = [e["data"]["i"] for e in events if e["type"] == "log.info"]
        assert [0, 1, 2, 3, 4, 5] == sorted(received)
        assert {"rejected": 1} == engine.stats().dropped
        reports = [e["data"]["dropped"] for e in events if e["type"] == DROPPED_TYPE]
        assert [{"rejected": 1}] == reports
        assert 3 <= engine.stats().retried

    def test_401_pauses_until_set_access_token(
        self, gateway: GatewayThread, make_engine: EngineFactory
    ) -> None:
        """With a bad token nothing is lost; a good token resumes delivery at once."""
        sink = EventsSink(gateway.http_url, "not-a-valid-token")
        engine = make_engine(sink)
        for index in range(3):
            engine.submit(item(index))
        assert not engine.flush(0.5)
        sink.set_access_token(gateway.issue_token("sb-auth"))
        assert engine.flush(10)
        assert [0, 1, 2] == [e["data"]["i"] for e in read_events(gateway, "sb-auth")]
        reports = [
            e for e in read_events(gateway, "sb-auth") if e["type"] == DROPPED_TYPE
        ]
        assert [] == reports

    def test_gateway_restart_on_the_same_port_loses_nothing(
        self, sqlite_url: str, make_engine: EngineFactory
    ) -> None:
        """Events submitted while the gateway is down arrive after it restarts."""
        first = GatewayThread(make_gateway_config(sqlite_url)).start()
        port = first.gateway.http_port
        token = first.issue_token("sb-restart")
        sink = EventsSink(first.http_url, token)
        engine = make_engine(sink)
        engine.submit(item(0))
        assert engine.flush(10)
        first.stop()
        took: list[float] = []
        for index in range(1, 2001):
            started = time.perf_counter()
            engine.submit(item(index))
            took.append(time.perf_counter() - started)
        assert not engine.flush(2.0)  # down for a few seconds, with backoff
        second = GatewayThread(make_gateway_config(sqlite_url, http_port=port)).start()
        try:
            sink.set_access_token(second.issue_token("sb-restart"))
            assert engine.flush(30)
            received = [e["data"]["i"] for e in read_events(second, "sb-restart")]
        finally:
            second.stop()
        assert list(range(2001)) == received
        # Never waits on the dead gateway (a connect or send timeout: seconds). One
        # call may lose the GIL for a switch interval or two on a loaded machine.
        took.sort()
        assert took[-20] < 0.01, took[-20:]
        assert took[-1] < 0.5, took[-1]
