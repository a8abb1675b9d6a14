"""
Refusals reach ``/metrics`` as they happen, each once, and malformed requests too.

Every cause here is produced for real on real sockets (a rate limit, the connection
cap, an idle deadline, requests aiohttp cannot parse) and read back by scraping.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

import pytest
import requests

from cse_bridge.gateway import GatewayLimits, GatewayThread

from ..conftest import make_gateway_config
from ..helpers import sample, scrape, wait_until

REJECTED = "cse_gateway_rejected_requests_total"


def _gateway(**limits: Any) -> GatewayThread:
    return GatewayThread(make_gateway_config(limits=GatewayLimits(**limits)))


def _rejected(gw: GatewayThread, port: str, cause: str) -> float:
    return sample(scrape(gw.http_url + "/metrics"), REJECTED, port=port, cause=cause)


def _post(gw: GatewayThread, token: str) -> int:
    answer = requests.post(
        gw.http_url + "/events",
        json={"type": "custom", "data": {}},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    return answer.status_code


def test_rate_limit_refusals_are_scraped_once_each() -> None:
    """Burst 3 at 1/s: 10 quick posts give 3 stored and 7 x 429, counted 7."""
    with _gateway(rate_limit=1.0, rate_burst=3) as gw:
        token = gw.issue_token("sb-rate")
        statuses = [_post(gw, token) for _ in range(10)]
        refused = statuses.count(429)
        assert refused >= 6, statuses  # 3 stored at once; a slow post may earn one
        assert refused == _rejected(gw, "http", "rate_limit")


def test_cap_and_idle_refusals_are_scraped_once_each(
    sockets: list[socket.socket],
) -> None:
    """Two held connections at cap 2: a third is refused; idle ones time out."""
    with _gateway(max_connections=3, idle_timeout=0.5) as gw:
        host, port = gw.http_url.removeprefix("http://").split(":")
        for _ in range(3):
            sockets.append(socket.create_connection((host, int(port))))
        wait_until(
            lambda: 3 == gw.gateway.open_connections()["http"], "three connections"
        )
        with socket.create_connection((host, int(port))) as refused:
            assert refused.recv(100).startswith(b"HTTP/1.1 503")
        # The three held ones send nothing and are closed at the idle deadline.
        wait_until(lambda: 0 == gw.gateway.open_connections()["http"], "idle closed")
        page = scrape(gw.http_url + "/metrics")
        assert 3 == sample(page, "cse_gateway_max_connections", port="http")
        assert 1 == _rejected(gw, "http", "connection_cap")
        assert 3 == _rejected(gw, "http", "timeout")


def test_malformed_requests_are_counted_and_logged_once_per_cause(
    gateway: GatewayThread, caplog: pytest.LogCaptureFixture
) -> None:
    """aiohttp's 400s: counted by cause, one log line each, no traceback."""
    host, port = gateway.http_url.removeprefix("http://").split(":")
    long_line = b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n"
    garbage = b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: nan\r\n\r\n"
    caplog.set_level(logging.DEBUG)
    for request in [long_line] * 20 + [garbage] * 20:
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(request)
            sock.settimeout(10)
            assert sock.recv(100).startswith(b"HTTP/1.")  # a 400 of aiohttp's
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _rejected(gateway, "http", "invalid") < 20:
        time.sleep(0.02)
    assert 20 == _rejected(gateway, "http", "size")
    assert 20 == _rejected(gateway, "http", "invalid")
    said = [r for r in caplog.records if "malformed HTTP requests" in r.getMessage()]
    assert 2 == len(said), [r.getMessage() for r in said]
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert not [r for r in tracebacks if r.name.startswith("aiohttp")]
