"""Fixtures of the forwarder tests: sandboxes on the real gateway, a real receiver."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

from cse_bridge.gateway import GatewayThread

from ..helpers import API_KEY
from .rotel import Received, RotelReceiver


class Capture(logging.Handler):
    """Keeps records; ``wait(n)`` blocks until *n* arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self._cond = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self._cond:
            self.records.append(record)
            self._cond.notify_all()

    def wait(self, count: int, timeout: float = 10.0) -> list[logging.LogRecord]:
        with self._cond:
            self._cond.wait_for(lambda: len(self.records) >= count, timeout)
            return list(self.records)


@pytest.fixture
def capture() -> Iterator[Capture]:
    """A handler on the ``sandbox`` logger (DEBUG) for the records a sink re-emits."""
    handler = Capture()
    target = logging.getLogger("sandbox")
    level = target.level
    target.addHandler(handler)
    target.setLevel(logging.DEBUG)
    yield handler
    target.removeHandler(handler)
    target.setLevel(level)


@pytest.fixture
def options(gateway: GatewayThread) -> dict[str, object]:
    """Forwarder keyword arguments that reach the test gateway."""
    return {
        "api_key": API_KEY,
        "gateway_url": gateway.http_url,
        "host": gateway.pubsub_host,
        "port": gateway.pubsub_port,
    }


@pytest.fixture
def received() -> Iterator[Received]:
    """What the rotel receiver decoded, one JSON object per span or log record."""
    listener = Received()
    yield listener
    listener.close()


@pytest.fixture
def rotel(received: Received) -> Iterator[RotelReceiver]:
    """A running rotel collector on free ports."""
    receiver = RotelReceiver(received)
    receiver.start()
    yield receiver
    receiver.stop()
