"""Gateway fixtures: the HTTP API on either embedded store, and a requests session."""

from __future__ import annotations

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
