"""Gateway fixtures: the API on either embedded store, a requests session, sockets."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import requests

from cse_bridge.gateway import GatewayThread


@pytest.fixture(params=["memory", "sqlite"])
def any_gateway(request: pytest.FixtureRequest) -> GatewayThread:
    """A running gateway, once with the memory store and once with sqlite."""
    name = "gateway" if request.param == "memory" else "sqlite_gateway"
    gateway: GatewayThread = request.getfixturevalue(name)
    return gateway


@pytest.fixture
def session() -> Iterator[requests.Session]:
    """A keep-alive HTTP session, closed after the test."""
    with requests.Session() as http:
        yield http


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    """Sockets a test opens; every one is closed after it."""
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()
