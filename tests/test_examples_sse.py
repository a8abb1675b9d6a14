"""
examples/sse_app.py on a real uvicorn, read by a real HTTP client (requests), with
the events coming from a real local gateway.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
import requests
import uvicorn

from cse_bridge import EventsClient
from cse_bridge.testing import LocalGateway

from .aio.conftest import connections_to
from .helpers import EXAMPLES

WAIT = 10.0


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "sse_app_example", EXAMPLES / "sse_app.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _until(check: Callable[[], bool], timeout: float = WAIT) -> bool:
    """Poll *check* until true; False after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not check():
        if time.monotonic() > deadline:
            return False
        pause.wait(0.02)
    return True


@pytest.fixture
def gateway() -> Iterator[LocalGateway]:
    """The local gateway the app follows."""
    with LocalGateway("sb-web") as gw:
        yield gw


@pytest.fixture
def app_url(gateway: LocalGateway) -> Iterator[str]:
    """The example app on uvicorn on a free port, in a thread; yields its URL."""
    app = _load_example().create_app(
        tokens=lambda sandbox: gateway.access_token if sandbox == "sb-web" else None,
        host=gateway.pubsub_host,
        port=gateway.pubsub_port,
        api_key=gateway.api_key,
        gateway_url=gateway.http_url,
    )
    listener = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="off", ws="none")
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [listener]}, name="uvicorn"
    )
    thread.start()
    try:
        assert _until(lambda: server.started), "uvicorn did not start"
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(WAIT)
        listener.close()


def _read_events(lines: Iterator[str], count: int) -> list[dict[str, Any]]:
    """Parse *count* SSE events (id, event, data) from a response's lines."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    for line in lines:
        if not line:
            if current:
                events.append(current)
                current = {}
                if len(events) == count:
                    return events
            continue
        field, _, value = line.partition(": ")
        if field in ("id", "event"):
            current[field] = value
        elif field == "data":
            current["data"] = json.loads(value)
    return events


class TestSseExample:
    """The app streams a sandbox's events as Server-Sent Events."""

    def test_streams_stored_events_and_closes_when_the_browser_leaves(
        self, gateway: LocalGateway, app_url: str
    ) -> None:
        """Events stored arrive as SSE, in order; leaving closes the pub/sub link."""
        with (
            EventsClient(
                gateway_url=gateway.http_url, access_token=gateway.access_token
            ) as producer,
            requests.get(
                f"{app_url}/sandboxes/sb-web/events", stream=True, timeout=WAIT
            ) as response,
        ):
            lines = response.iter_lines(decode_unicode=True)
            assert ": connected" == next(lines)  # subscribed: store now
            stored = [producer.store_event("custom", {"n": n}) for n in range(3)]
            got = _read_events(lines, 3)
            linked = connections_to(gateway.pubsub_port)
        closed = _until(lambda: connections_to(gateway.pubsub_port) == 0)
        assert (
            "text/event-stream; charset=utf-8",
            [
                (str(r.timestamp), "custom", r.event_id, {"n": n})
                for n, r in enumerate(stored)
            ],
            1,
            True,
        ) == (
            response.headers["content-type"],
            [(e["id"], e["event"], e["data"]["id"], e["data"]["data"]) for e in got],
            linked,
            closed,
        )

    def test_last_event_id_resumes_without_a_gap(
        self, gateway: LocalGateway, app_url: str
    ) -> None:
        """A reconnect with Last-Event-ID gets the events stored after it first."""
        with EventsClient(
            gateway_url=gateway.http_url, access_token=gateway.access_token
        ) as producer:
            stored = [producer.store_event("custom", {"n": n}) for n in range(4)]
            with requests.get(
                f"{app_url}/sandboxes/sb-web/events",
                headers={"Last-Event-ID": str(stored[1].timestamp)},
                stream=True,
                timeout=WAIT,
            ) as response:
                got = _read_events(response.iter_lines(decode_unicode=True), 2)
        assert [r.event_id for r in stored[2:]] == [e["data"]["id"] for e in got]

    def test_unknown_sandbox_is_404(self, app_url: str) -> None:
        """A sandbox the app has no token for answers 404 without subscribing."""
        response = requests.get(f"{app_url}/sandboxes/other/events", timeout=WAIT)
        assert 404 == response.status_code
